"""SOQL lives at the client port: no SOQL text and no IN-list building outside `syncd.clients`
(and the simulators, which parse it); the runtime and the commands ask for named operations
(`CrmRecords.records_by_email`, `email_tasks`, ...) and get domain values back."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SYNCD = Path(__file__).resolve().parents[2] / "syncd"
SOQL = re.compile(r"\bSELECT\b.+\bFROM\b", re.IGNORECASE | re.DOTALL)
PORT_ONLY = {"soql_in", "soql_quote", "chunked_in_lists", "query", "query_all", "query_many"}
CALLERS = sorted(
    p
    for p in SYNCD.rglob("*.py")
    if p.relative_to(SYNCD).parts[0] not in ("clients", "simulators", "store")
)


@pytest.mark.parametrize("path", CALLERS, ids=[str(p.relative_to(SYNCD)) for p in CALLERS])
def test_no_soql_outside_the_clients(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings
        ):
            assert not SOQL.search(node.value), f"line {node.lineno}: SOQL text"
        if isinstance(node, ast.ImportFrom) and node.module == "syncd.clients.salesforce":
            used = {a.name for a in node.names} & PORT_ONLY
            assert not used, f"line {node.lineno}: {sorted(used)} belong to the client port"
        if isinstance(node, ast.Attribute) and node.attr in PORT_ONLY:
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            assert name != "salesforce", f"line {node.lineno}: salesforce.{node.attr}: name it"
