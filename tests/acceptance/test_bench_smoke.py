"""`python -m bench` at a tiny size: every scenario runs and the tables are well formed.

A smoke test of the harness (simulator and daemon processes, store watching, result files),
not a benchmark: nothing here asserts on timing. Acceptance tier and `slow` (about 30 s): it runs
the real processes; `make test` runs it, `pytest -m "not slow"` leaves it out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main

pytestmark = pytest.mark.slow

EXPECTED_SECTIONS = ("## 1. Backfill", "## 2. Steady state", "## 3. Growth")


def test_a_tiny_run_writes_well_formed_tables(tmp_path: Path) -> None:
    out = tmp_path / "results"
    code = main(
        [
            "--base", "150", "--scale", "2", "--databases", "sqlite",
            "--steady-s", "3", "--steady-base", "100", "--rate", "4",
            "--poll-interval", "1", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    doc = json.loads((out / "bench.json").read_text())
    markdown = (out / "bench.md").read_text()

    assert doc["machine"]["cores"] and doc["machine"]["python"] and doc["machine"]["sqlite"]
    assert doc["machine"]["cpu"] in markdown
    for section in EXPECTED_SECTIONS:
        assert section in markdown
    (row,) = doc["backfill"]
    assert row["database"] == "sqlite" and row["prospects"] == 150
    assert row["synced_prospects"] == 150 and row["error_queue"] == 0
    assert row["wall_s"] > 0 and row["peak_rss_mb"] > 0
    # Only prospects whose Pardot values change are PATCHed: the link is never written back.
    patches = row["calls_by_route"].get("pardot PATCH /api/v5/objects/prospects/{id}", 0)
    assert 0 < patches < 150
    (steady,) = doc["steady"]
    assert steady["changes"] > 0 and steady["synced"] == steady["changes"]
    assert steady["p50_ms"] <= steady["p95_ms"] <= steady["p99_ms"]
    growth = doc["growth"]
    assert [r["prospects"] for r in growth["rows"]] == [150, 300]
    # Every Markdown table row has as many cells as its header.
    tables = [line for line in markdown.splitlines() if line.startswith("|")]
    assert tables
    header_cells = None
    for line in tables:
        cells = line.count("|")
        if line.startswith("|---"):
            continue
        if header_cells is None or "database" in line:
            header_cells = cells
        assert cells == header_cells
