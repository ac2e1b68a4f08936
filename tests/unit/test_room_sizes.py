"""Rooms stay small enough to change safely: no module in `syncd/runtime/` over 600 lines and no
class there over 400 (issue 12; the pipeline was one 1,430-line class before it was split)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RUNTIME = Path(__file__).resolve().parents[2] / "syncd" / "runtime"
MODULE_MAX = 600
CLASS_MAX = 400
MODULES = sorted(RUNTIME.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(RUNTIME)) for p in MODULES])
def test_runtime_rooms_are_small(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MODULE_MAX, f"{path.name}: split it by responsibility"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.ClassDef):
            size = (node.end_lineno or node.lineno) - node.lineno + 1
            assert size <= CLASS_MAX, f"{path.name}: class {node.name} has {size} lines"
