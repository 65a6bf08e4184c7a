"""Fixtures of the crash sweeps, and the `crash` mark on everything in this folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.syscall_trace import build_baseline

CRASH_DIR = Path(__file__).resolve().parent


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every module here also sets `pytestmark`; this keeps a new module from joining the fast loop.
    for item in items:
        if CRASH_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.crash)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The store every fault and power-cut case starts from (the syscall replay's baseline)."""
    return build_baseline(tmp_path_factory.mktemp("baseline") / "store")
