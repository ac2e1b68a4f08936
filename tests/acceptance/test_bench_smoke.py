"""`python -m bench` at a tiny size: every scenario runs and the tables are well formed.

A smoke test of the harness (simulator and daemon processes, store watching, the worlds, the
per-record script beside `syncd once`, the aims table, result files), not a benchmark: nothing
here asserts on timing. Acceptance tier and `slow` (about a minute): it runs the real processes;
`make test` runs it, `pytest -m "not slow"` leaves it out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.__main__ import main

pytestmark = pytest.mark.slow

EXPECTED_SECTIONS = (
    "## 1. Backfill",
    "## 2. syncd against the per-record script",
    "## 3. Steady state",
    "## 4. Growth",
    "## 6. The aims of issue 13",
    "## 5. Pardot writes: one PATCH a prospect against the Import API",
)


def test_a_tiny_run_writes_well_formed_tables(tmp_path: Path) -> None:
    out = tmp_path / "results"
    code = main(
        [
            "--base", "150", "--scale", "2", "--databases", "sqlite",
            "--steady-s", "3", "--steady-base", "100", "--rates", "4",
            "--poll-interval", "1", "--compare", "40", "--writes", "50", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    doc = json.loads((out / "bench.json").read_text())
    markdown = (out / "bench.md").read_text()

    assert doc["machine"]["cores"] and doc["machine"]["python"] and doc["machine"]["sqlite"]
    assert doc["machine"]["cpu"] in markdown
    for section in EXPECTED_SECTIONS:
        assert section in markdown
    rows = {row["world"]: row for row in doc["backfill"]}
    assert set(rows) == {"today", "writes40", "quiet"}
    for row in rows.values():
        assert row["database"] == "sqlite" and row["prospects"] == 150
        assert row["synced_prospects"] == 150 and row["error_queue"] == 0
        assert row["wall_s"] > 0 and row["peak_rss_mb"] > 0
        assert row["daemon_cpu_ms_per_prospect"] > 0 and row["daemon_processes"] >= 1
    # Only prospects whose Pardot values change are PATCHed: the link is never written back.
    patches = rows["today"]["calls_by_route"].get("pardot PATCH /api/v5/objects/prospects/{id}", 0)
    assert 0 < patches < 150
    # The write-heavy world needs a Pardot write for at least 40% of the prospects, and gets it;
    # the quiet world needs none.
    assert rows["writes40"]["built_pardot_write_share"] >= 0.4
    assert rows["writes40"]["pardot_patches_per_prospect"] >= 0.4
    assert rows["quiet"]["built_pardot_write_share"] == 0
    assert rows["quiet"]["pardot_patches_per_prospect"] < 0.1
    # syncd once and the per-record script ran on the same world and did the same work.
    compare = doc["compare"]
    assert compare["prospects"] == 40 and compare["speedup"] > 0
    assert compare["syncd_once"]["synced"] == 40
    counts = compare["script"]["counts"]
    assert counts["prospects"] == 40 and counts["leads_created"] > 0 and counts["tasks"] > 0
    assert "x the script's speed" in markdown
    writes = doc["pardot_writes"]
    assert writes["patch_rows_applied"] == writes["import_rows_applied"] == 50
    assert writes["patch_pardot_calls"] == 50 and writes["import_pardot_calls"] < 10
    assert writes["import_row_errors"] == 0
    (steady,) = doc["steady"]
    assert steady["changes"] > 0 and steady["synced"] == steady["changes"]
    assert steady["p50_ms"] <= steady["p95_ms"] <= steady["p99_ms"]
    assert steady["aim_p95_ms"] == 2000
    growth = doc["growth"]
    assert [r["prospects"] for r in growth["rows"]] == [150, 300]
    # Every aim of the issue is listed with a verdict; unmeasured ones say so.
    aims = {a["aim"]: a["verdict"] for a in doc["aims"]}
    assert any(a.startswith("backfill >= 1,000 prospects/s (sqlite") for a in aims)
    assert any("per-record script" in a for a in aims)
    assert any(a.startswith("500,000 prospects") and v == "not measured" for a, v in aims.items())
    assert any(a.startswith("steady 100 edits/s") and v == "not measured" for a, v in aims.items())
    assert any("nothing needs a Pardot write (sqlite)" in a for a in aims)
    assert set(aims.values()) <= {"met", "NOT met", "not measured", "stated"}
    assert any(a.startswith("state the calls when 40%") and v == "stated" for a, v in aims.items())
    # Every Markdown table row has as many cells as its header.
    tables = [line for line in markdown.splitlines() if line.startswith("|")]
    assert tables
    header_cells = None
    for line in tables:
        cells = line.count("|")
        if line.startswith("|---"):
            continue
        if header_cells is None or line.startswith(
            ("| world", "| database", "| run", "| aim", "| way")
        ):
            header_cells = cells
        assert cells == header_cells, line


@pytest.mark.postgres
def test_two_instances_back_fill_one_postgres_database(tmp_path: Path, pg_admin_url: str) -> None:
    """`--instances 2`: two `syncd run` on one PostgreSQL database share the backfill (the
    pollers in one, both claiming batches): every prospect synced once, no error, and the CPU
    of both counted."""
    out = tmp_path / "results"
    code = main(
        [
            "--base", "200", "--databases", "postgresql", "--worlds", "writes40",
            "--instances", "2", "--skip", "compare,steady,growth,writes",
            "--poll-interval", "1", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    doc = json.loads((out / "bench.json").read_text())
    one, two = doc["backfill"]
    assert (one["instances"], two["instances"]) == (1, 2)
    for row in (one, two):
        assert row["synced_prospects"] == 200 and row["error_queue"] == 0
    assert two["daemon_processes"] >= 2
    assert two["peak_rss_mb_all"] > two["peak_rss_mb"]
    # The same work, not twice the writes: each prospect that needs one is written once.
    assert two["pardot_patches_per_prospect"] == pytest.approx(
        one["pardot_patches_per_prospect"], abs=0.05
    )
    assert "| instances |" in (out / "bench.md").read_text()
