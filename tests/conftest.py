"""Fixtures shared by every test folder. Helpers live in tests/support/ (imported as
`tests.support.<module>`); test modules never import from conftest or from each other."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from securestore import SecureStore
from tests.support import examples
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.stores import make_store


def pytest_configure(config: pytest.Config) -> None:
    # The developer loop (-m "not crash") runs a fifth of the costliest properties' examples.
    examples.configure(config.getoption("markexpr") or "")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store")


@pytest.fixture
def store(root: Path) -> Iterator[SecureStore]:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as handle:
        yield handle
