"""The house rules for imports, read from the source with `ast` (lazy imports inside functions
and TYPE_CHECKING imports included), as docs/architecture.md states them. Every rule holds;
breaking one (an `import os` in api/, a backend importing api/, a cycle) fails its case."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "securestore"
OS_MODULES = frozenset({"os", "fcntl", "time", "tempfile", "shutil", "subprocess"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, absolute, wherever the import statement stands."""
    tree = ast.parse(path.read_text(), str(path))
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from . import heads`
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(path): path for path in PACKAGE.rglob("*.py")}
    return {name: {m for m in _imports(path) if m in modules or m.split(".")[0] in OS_MODULES}
            for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Import circles between modules (a package importing its own submodules is not one)."""
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph or target.startswith(node + ".") or node.startswith(target + "."):
                continue
            if state.get(target) == 1:
                found.append(stack[stack.index(target):] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def _under(module: str, floors: tuple[str, ...]) -> bool:
    return any(module == floor or module.startswith(floor + ".") for floor in floors)


def _names_imported(path: Path) -> list[tuple[str, str]]:
    """(module, name) of every `from securestore... import name` in `path`, absolute."""
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - (node.level - 1)] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found += [(module, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names]
    return found


def _violations(rule: str) -> list[str]:
    graph = _graph()
    edges = [(module, target) for module, targets in graph.items() for target in sorted(targets)]
    if rule == "no-circles":
        return [" -> ".join(cycle) for cycle in _cycles(graph)]
    if rule == "only-fs-touches-the-os":
        return sorted(f"{m} imports {t}" for m, t in edges if t.split(".")[0] in OS_MODULES and not _under(m, FENCE))
    if rule == "core-and-audit-do-no-io":
        return sorted(f"{m} imports {t}" for m, t in edges if _under(m, PURE)
                      and (t.split(".")[0] in OS_MODULES or _under(t, IMPURE)))
    if rule == "txn-knows-no-files":
        return sorted(f"{m} imports {t}" for m, t in edges if m == TXN and t.startswith("securestore")
                      and not _under(t, (*PURE, "securestore.errors")))
    if rule == "backends-never-import-the-api":
        return sorted(f"{m} imports {t}" for m, t in edges if _under(m, ("securestore.backends",))
                      and _under(t, TOP_FLOORS))
    if rule == "cli-uses-public-names-only":
        found = []
        for path in PACKAGE.rglob("*.py"):
            here = _module_name(path)
            if not _under(here, ("securestore.cli",)):
                continue
            for module, name in _names_imported(path):
                if not module.startswith("securestore") or _under(module, ("securestore.cli",)):
                    continue
                if module not in PUBLIC or name.startswith("_"):
                    found.append(f"{here} imports {module}.{name}" if name else f"{here} imports {module}")
        return sorted(found)
    if rule == "psycopg-only-in-the-postgres-backend":
        return sorted(f"{_module_name(path)} imports {module}" for path in PACKAGE.rglob("*.py")
                      for module in _imports(path) if module.split(".")[0] in DATABASE_CLIENTS
                      and not _under(_module_name(path), (POSTGRES,)))
    if rule == "only-the-composition-root-names-the-postgres-backend":
        return sorted(f"{m} imports {t}" for m, t in edges if _under(t, (POSTGRES,))
                      and not _under(m, (POSTGRES, "securestore.backends.roots")))
    raise AssertionError(rule)


FENCE = ("securestore.fs",)
# Floors that take values and bytes and return values and bytes: they import nothing that does I/O.
PURE = ("securestore.core", "securestore.audit")
IMPURE = ("securestore.fs", "securestore.backends", "securestore.api", "securestore.cli", "securestore.txn")
TXN = "securestore.txn"
POSTGRES = "securestore.backends.postgres"
DATABASE_CLIENTS = frozenset({"psycopg", "psycopg_pool"})
TOP_FLOORS = ("securestore.api", "securestore.cli", "securestore.aio", "securestore.adapters")
# What the command line (and later the framework adapters) may import: the public API.
PUBLIC = frozenset({"securestore", "securestore.errors", "securestore.config", "securestore.api"})


def test_the_walker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The rule checker itself: a lazy relative import inside a function is an import."""
    source = tmp_path / "securestore" / "sub" / "mod.py"
    source.parent.mkdir(parents=True)
    source.write_text("def f():\n    from ..fs import safe\n    import time\n")
    global PACKAGE
    saved, PACKAGE = PACKAGE, tmp_path / "securestore"
    try:
        assert {"securestore.fs", "securestore.fs.safe", "time"} <= _imports(source)
    finally:
        PACKAGE = saved


@pytest.mark.parametrize("rule", [
    "core-and-audit-do-no-io",
    "txn-knows-no-files",
    "backends-never-import-the-api",
    "no-circles",
    "only-fs-touches-the-os",
    "cli-uses-public-names-only",
    "psycopg-only-in-the-postgres-backend",
    "only-the-composition-root-names-the-postgres-backend",
])
def test_import_rule(rule: str) -> None:
    assert _violations(rule) == []
