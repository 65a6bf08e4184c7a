"""Fixtures shared by every test folder. Helpers live in tests/support/ (imported as
`tests.support.<module>`); test modules never import from conftest or from each other."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from securestore import SecureStore, StoreConfig
from tests.support import examples
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.pg_stores import MADE, drop_databases_made_since, set_up_database
from tests.support.postgres import PostgresServer, make_server, remove_server
from tests.support.stores import make_pg_store, make_store


def pytest_configure(config: pytest.Config) -> None:
    # The developer loop (-m "not crash") runs a fifth of the costliest properties' examples.
    examples.configure(config.getoption("markexpr") or "")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # A test marked `both_backends` (and not `fs_only`) runs on a directory and on PostgreSQL.
    marked = metafunc.definition.get_closest_marker("both_backends") is not None
    if marked and "backend" in metafunc.fixturenames and metafunc.definition.get_closest_marker("fs_only") is None:
        metafunc.parametrize("backend", ["fs", "postgres"])


@pytest.fixture
def backend() -> str:
    return "fs"


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server per test process (each store gets its own database)."""
    server = make_server()
    try:
        yield server
    finally:
        remove_server(server)


@pytest.fixture(autouse=True)
def drop_test_databases() -> Iterator[None]:
    """The databases a test made are dropped after it (a module's shared ones are made before)."""
    count = len(MADE)
    yield
    drop_databases_made_since(count)


@pytest.fixture
def root(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Path | str:
    """A new store: a directory, or (backend "postgres") a database URL."""
    if backend == "postgres":
        return make_pg_store(set_up_database(request.getfixturevalue("pg_server")), tmp_path)
    return make_store(tmp_path / "store")


@pytest.fixture
def store(root: Path | str) -> Iterator[SecureStore]:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as handle:
        yield handle


@pytest.fixture
def make_root(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Callable[..., Path | str]:
    """More stores on the test's backend: `make_root("name", config, init=True)` -> a new store
    (a directory under tmp_path, or a new database); with `init=False`, a place to make one
    (a directory that does not exist yet, or a database with the schema installed)."""

    def make(name: str, config: StoreConfig | None = None, *, init: bool = True) -> Path | str:
        if backend == "postgres":
            url = set_up_database(request.getfixturevalue("pg_server"))
            if not init:
                return url
            seeds = tmp_path / f"{name}.seeds"
            seeds.mkdir()
            return make_pg_store(url, seeds, config)
        where = tmp_path / name / "store"
        where.parent.mkdir(parents=True, exist_ok=True)
        return make_store(where, config) if init else where

    return make
