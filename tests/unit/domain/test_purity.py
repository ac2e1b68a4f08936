"""syncd/domain stays pure: standard-library imports only (no I/O, no clock, no randomness)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

DOMAIN = Path(__file__).resolve().parents[3] / "syncd" / "domain"

# Pure standard-library modules; anything doing I/O, reading the clock or drawing random numbers
# (os, time, random, logging, asyncio, socket, ...) and every third-party package is refused.
ALLOWED = frozenset(
    {
        "__future__",
        "abc",
        "bisect",
        "collections",
        "collections.abc",
        "dataclasses",
        "datetime",
        "decimal",
        "enum",
        "fractions",
        "functools",
        "hashlib",
        "heapq",
        "itertools",
        "json",
        "math",
        "operator",
        "re",
        "string",
        "types",
        "typing",
        "unicodedata",
    }
)
CLOCK_CALLS = frozenset({"now", "today", "utcnow", "time", "monotonic", "perf_counter"})
MODULES = sorted(DOMAIN.rglob("*.py"))


def _violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the package
                continue
            names = [node.module or ""]
        for name in names:
            if name in ALLOWED or name == "syncd.domain" or name.startswith("syncd.domain."):
                continue
            found.append(f"{path.name}:{node.lineno}: imports {name}")
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in CLOCK_CALLS:
                found.append(f"{path.name}:{node.lineno}: calls {called}() (time is an argument)")
    return found


def test_domain_has_modules() -> None:
    assert {p.name for p in MODULES} >= {"models.py", "plan.py", "merge.py", "match.py"}


@pytest.mark.parametrize("path", MODULES, ids=[p.name for p in MODULES])
def test_module_is_pure(path: Path) -> None:
    assert _violations(path) == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import os\n"
        "from httpx import AsyncClient\n"
        "from datetime import datetime\n"
        "x = datetime.now()\n"
    )
    assert len(_violations(bad)) == 3
