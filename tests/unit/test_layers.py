"""The import rules between syncd's layers, checked on the source (every import, lazy ones too).

- `syncd.domain` imports nothing from the store, the clients, the runtime, the simulators or the
  commands (it is pure: `tests/unit/domain/test_purity.py` also refuses every I/O module);
- `syncd.clients` imports no runtime, store, simulators or commands (the clients are the port:
  the runtime uses them, never the other way round);
- `syncd.runtime` imports no simulators and no commands (the simulators are wired in by
  `syncd.commands`, e.g. for the demo; the daemon never ships a fake by accident).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SYNCD = Path(__file__).resolve().parents[2] / "syncd"

RULES: dict[str, tuple[str, ...]] = {
    "syncd.domain": (
        "syncd.store",
        "syncd.clients",
        "syncd.runtime",
        "syncd.simulators",
        "syncd.commands",
        "syncd.cli",
    ),
    "syncd.clients": (
        "syncd.runtime",
        "syncd.store",
        "syncd.simulators",
        "syncd.commands",
        "syncd.cli",
    ),
    "syncd.runtime": ("syncd.simulators", "syncd.commands", "syncd.cli"),
}


def module_name(path: Path, root: Path = SYNCD) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path, name: str) -> list[tuple[int, list[str]]]:
    """Per import statement of `path` (the module `name`): the modules it may import.

    Relative imports are resolved; `from syncd import runtime` may import `syncd.runtime`.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out: list[tuple[int, list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.extend((node.lineno, [alias.name]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name.split(".")
                if not is_package:
                    package = package[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, *([node.module] if node.module else [])])
            else:
                base = node.module or ""
            out.append((node.lineno, [base, *(f"{base}.{alias.name}" for alias in node.names)]))
    return out


def violations(path: Path, root: Path = SYNCD) -> list[str]:
    name = module_name(path, root)
    found: list[str] = []
    for layer, forbidden in RULES.items():
        if name != layer and not name.startswith(layer + "."):
            continue
        for line, candidates in imported_modules(path, name):
            for bad in forbidden:
                hit = [m for m in candidates if m == bad or m.startswith(bad + ".")]
                if hit:
                    found.append(f"{name}:{line} imports {hit[0]} ({layer} must not use {bad})")
    return found


LAYERED = sorted(p for layer in RULES for p in (SYNCD / layer.split(".", 1)[1]).rglob("*.py"))


def test_every_layer_has_modules() -> None:
    for layer in RULES:
        assert any(module_name(p).startswith(layer) for p in LAYERED), layer


@pytest.mark.parametrize("path", LAYERED, ids=[module_name(p) for p in LAYERED])
def test_module_keeps_the_import_rules(path: Path) -> None:
    assert violations(path) == []


def test_the_check_can_fail(tmp_path: Path) -> None:
    root = tmp_path / "syncd"
    for sub in ("domain", "clients", "runtime"):
        (root / sub).mkdir(parents=True)
    (root / "domain" / "plan.py").write_text(
        "from syncd.store.models import Link\nfrom ..clients import http\n"
    )
    (root / "clients" / "pardot.py").write_text(
        "def f():\n    from syncd.runtime import budget\n    import syncd.runtime.wiring\n"
    )
    (root / "runtime" / "demo.py").write_text(
        "from syncd import simulators\nfrom syncd.simulators.world import World\n"
    )
    (root / "runtime" / "ok.py").write_text(
        "from syncd.clients import http\nfrom syncd.domain import plan\nfrom . import budget\n"
    )
    assert violations(root / "domain" / "plan.py", root) == [
        "syncd.domain.plan:1 imports syncd.store.models (syncd.domain must not use syncd.store)",
        "syncd.domain.plan:2 imports syncd.clients (syncd.domain must not use syncd.clients)",
    ]
    assert len(violations(root / "clients" / "pardot.py", root)) == 2
    assert len(violations(root / "runtime" / "demo.py", root)) == 2
    assert violations(root / "runtime" / "ok.py", root) == []
