"""How many examples a costly property runs: every one in a full run, a fifth of them in the
developer loop, a run that deselects the crash sweeps (`pytest -m "not crash"`). conftest.py
says which kind of run this is before any test module is imported."""

from __future__ import annotations

import re

_DEVELOPER_LOOP = [False]


def configure(markexpr: str) -> None:
    _DEVELOPER_LOOP[0] = re.search(r"\bnot\s+crash\b", markexpr) is not None


def examples(full: int) -> int:
    """`full` in a full run; a fifth of it (at least 10) in the developer loop."""
    return max(10, full // 5) if _DEVELOPER_LOOP[0] else full
