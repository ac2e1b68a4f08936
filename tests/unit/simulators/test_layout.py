"""The simulators stay in rooms by concern (issue 12): small modules and classes."""

from __future__ import annotations

import ast
from pathlib import Path

import syncd.simulators

ROOT = Path(syncd.simulators.__file__).parent
MAX_MODULE_LINES = 500
MAX_CLASS_LINES = 400


def _modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if p.parent.name in ("salesforce", "pardot"))


def test_no_simulator_module_or_class_is_too_big() -> None:
    assert _modules(), "the simulator packages are missing"
    too_big = []
    for path in _modules():
        text = path.read_text(encoding="utf-8")
        if len(text.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    too_big.append(f"{path.relative_to(ROOT)}: class {node.name}: {lines} lines")
    assert not too_big


def test_public_import_paths_still_work() -> None:
    from syncd.simulators.pardot import (
        PROSPECT_READ_ONLY,
        WARNING_CHAIN_CAP,
        ApiError,
        PardotSimulator,
    )
    from syncd.simulators.salesforce import SCHEMA, SalesforceError, SalesforceSimulator

    assert PardotSimulator.__module__ == "syncd.simulators.pardot.simulator"
    assert SalesforceSimulator.__module__ == "syncd.simulators.salesforce.simulator"
    assert "grade" in PROSPECT_READ_ONLY and WARNING_CHAIN_CAP.startswith("203;")
    assert issubclass(ApiError, Exception) and issubclass(SalesforceError, Exception)
    assert {"Lead", "Contact", "Task", "User", "Group"} <= set(SCHEMA)
