"""The house rules for imports, read from the source with `ast` (lazy imports inside functions
and TYPE_CHECKING imports included). REDESIGN.md section 7 and issue 10: each rule that the
code does not meet yet is marked xfail(strict=True), so the mark must come off the moment the
code meets it (an xpass fails the run), and no rule can rot silently."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "securestore"
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


def _violations(rule: str) -> list[str]:
    graph = _graph()
    if rule == "no-circles":
        return [" -> ".join(cycle) for cycle in _cycles(graph)]
    if rule == "only-fs-touches-the-os":
        return sorted(f"{module} imports {target}" for module, targets in graph.items()
                      for target in targets if target.split(".")[0] in OS_MODULES
                      and not module.startswith("securestore.fs") and not module.startswith("securestore.cli"))
    if rule in PURE:
        return sorted(f"{module} imports {target}" for module, targets in graph.items()
                      if any(module == floor or module.startswith(floor + ".") for floor in PURE[rule])
                      for target in targets if target.split(".")[0] in OS_MODULES or target.startswith(IMPURE))
    raise AssertionError(rule)


# Floors that take values and bytes and return values and bytes: they import nothing that does I/O.
PURE = {
    "pure-floors-do-no-io": ("securestore.policy", "securestore.secrets", "securestore.canonical",
                             "securestore.layout", "securestore.errors", "securestore.maintenance",
                             "securestore.migration.legacy", "securestore.engine.journal",
                             *(f"securestore.audit.{name}" for name in ("chain", "keys", "merkle", "checkpoint",
                                                                         "anchor", "proof", "verify", "errors"))),
    "audit-is-pure": ("securestore.audit",),
}
IMPURE = ("securestore.fs", "securestore.store", "securestore.pipeline", "securestore.session", "securestore.cli",
          "securestore.verification", "securestore.proofs", "securestore.index", "securestore.heads")


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
    "pure-floors-do-no-io",
    pytest.param("audit-is-pure", marks=pytest.mark.xfail(strict=True, reason="issue 10: audit/log.py writes files; "
                                                                             "it moves to backends/local")),
    pytest.param("no-circles", marks=pytest.mark.xfail(strict=True, reason="issue 10: pipeline <-> migration "
                                                                              "importer, store <-> session")),
    pytest.param("only-fs-touches-the-os", marks=pytest.mark.xfail(strict=True, reason="issue 10: os (paths, environ) in "
                                                                                          "store and demo")),
])
def test_import_rule(rule: str) -> None:
    assert _violations(rule) == []
