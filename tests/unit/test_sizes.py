"""House rule (issue 10): short modules with one job. No module under securestore/ over 400
lines, no class over 300: a file that grows past them is split by job, not waved through."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "securestore"
MAX_MODULE_LINES, MAX_CLASS_LINES = 400, 300


def _oversized(package: Path) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        source = path.read_text()
        lines = source.count("\n")
        if lines > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(package)}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_CLASS_LINES:
                    found.append(f"{path.relative_to(package)}: class {node.name} of {length} lines")
    return found


def test_no_module_or_class_outgrows_its_job() -> None:
    assert _oversized(PACKAGE) == []


def test_the_size_rule_sees_a_long_class(tmp_path: Path) -> None:
    (tmp_path / "big.py").write_text("class Big:\n" + "    x = 1\n" * MAX_CLASS_LINES)
    assert _oversized(tmp_path) == [f"big.py: class Big of {MAX_CLASS_LINES + 1} lines"]
