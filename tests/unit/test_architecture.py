"""Import direction (STYLE.md): lower layers never reach up."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "chenu_cache"


def _imports(path: Path) -> set[str]:
    """Package modules imported by ``path``, as dotted names relative to chenu_cache."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    here = path.relative_to(PACKAGE).with_suffix("").parts[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - node.level + 1])
                module = ".".join([*base, *(node.module.split(".") if node.module else [])])
                found.add(module)
                if not node.module:
                    found.update(".".join([*base, alias.name]) for alias in node.names)
            elif node.module and node.module.startswith("chenu_cache"):
                found.add(node.module.removeprefix("chenu_cache").lstrip("."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("chenu_cache"):
                    found.add(alias.name.removeprefix("chenu_cache").lstrip("."))
    return found


MODULES = {".".join(p.relative_to(PACKAGE).with_suffix("").parts): p for p in PACKAGE.rglob("*.py")}

FORBIDDEN = {
    "exceptions": {"*"},
    "_types": {"*"},
    "_glob": {"backends", "_keys", "_namespaces", "serializers", "_facade", "_default"},
    "serializers": {"backends", "_keys", "_namespaces", "_facade", "_default", "_decorator"},
    "backends": {
        "_keys",
        "_namespaces",
        "serializers",
        "_facade",
        "_default",
        "_decorator",
        "_failover",
        "_freshness",
        "_routes",
        "_loader",
        "_fences",
        "_value_types",
        "_tags",
        "stats",
    },
    "_keys": {"backends", "_facade", "_default", "_decorator", "_failover"},
    "_namespaces": {"backends", "_facade", "_default", "_decorator", "_failover"},
    # Routes are built by the failover, which they know only as a type.
    "_routes": {"_facade", "_default", "_decorator", "_loader", "_statistics"},
    "_failover": {"_facade", "_default", "_decorator", "_loader"},
    "_freshness": {"_facade", "_default", "_decorator"},
    "_loader": {"_facade", "_default", "_decorator", "_failover"},
    "_statistics": {"_facade", "_default", "_decorator"},
    "_values": {"_facade", "_default", "_decorator", "_failover", "_routes", "_loader"},
    "_decorator": {"_facade", "_default", "backends"},
    # What a type makes of JSON, and what a load's write must find: leaves below the
    # decoder and the loader.
    "_value_types": {"backends", "_facade", "_default", "_decorator", "_loader", "_values"},
    "_fences": {"backends", "_facade", "_default", "_decorator", "_loader", "_routes"},
    "_tags": {"backends", "_facade", "_default", "_decorator", "_loader", "_routes", "_values"},
    "_reads": {"backends", "_facade", "_default", "_decorator", "_loader", "_failover"},
    "_facade": {"_default"},
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_imports_only_downward(module: str) -> None:
    imported = _imports(MODULES[module])
    assert not any(i == "contrib" or i.startswith("contrib.") for i in imported) or (
        module.startswith("contrib")
    ), f"{module} imports contrib"
    for layer, banned in FORBIDDEN.items():
        if module != layer and not module.startswith(layer + "."):
            continue
        for name in imported:
            top = name.split(".")[0]
            if top == layer:
                continue
            if "*" in banned and top:
                pytest.fail(f"{module} must not import from the package, imports {name}")
            assert top not in banned, f"{module} imports {name}"


def test_contrib_uses_only_the_public_api() -> None:
    for module, path in MODULES.items():
        if not module.startswith("contrib"):
            continue
        for name in _imports(path):
            assert name == "" or name.startswith("contrib"), f"{module} imports {name}"
