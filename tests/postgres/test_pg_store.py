"""A store in PostgreSQL through the public API: the same calls, the same results."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from securestore import open_store, verify_store
from securestore.config import StoreConfig
from securestore.errors import LockHeldError
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.pg_stores import set_up_database
from tests.support.postgres import PostgresServer, make_server, remove_server
from securestore import init_store
from tests.support.keys import SIGNING_KEY
from pathlib import Path


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    started = make_server()
    try:
        yield started
    finally:
        remove_server(started)


def test_a_store_in_postgres_writes_reads_and_verifies(server: PostgresServer, tmp_path: Path) -> None:
    url = set_up_database(server)
    init_store(url, seed_out=str(tmp_path / "seed"), signing_key=SIGNING_KEY)
    with open_store(url, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("chat-1", metadata={"title": "first"}) as session:
            session.append_items([{"role": "user", "content": "hi"}])
            session.append_items([{"role": "assistant", "content": "password=hunter2hunter2"}])
        store.put("chat-1", "ext.state", {"n": 1})
        assert store.get("chat-1", "ext.state") == {"n": 1}
        items = store.read_items("chat-1")
        assert items[0] == {"role": "user", "content": "hi"}
        assert "hunter2hunter2" not in str(items)
        assert [s.key for s in store.list_sessions().sessions] == ["chat-1"]
        report = verify_store(store)
        assert report.ok, report.to_json()


def test_one_writer_per_session_across_handles(server: PostgresServer, tmp_path: Path) -> None:
    url = set_up_database(server)
    init_store(url, seed_out=str(tmp_path / "seed"), signing_key=SIGNING_KEY)
    quick = StoreConfig(lock_timeout_seconds=0.2)
    with open_store(url, master_key=MASTER_KEY, environ=KEYS) as first, \
            open_store(url, quick, master_key=MASTER_KEY, environ=KEYS) as second:
        with first.create_session("s"):
            with pytest.raises(LockHeldError, match="held by server process"):
                second.open_session("s")


def test_the_audit_trail_drill_is_refused_on_a_database(server: PostgresServer, tmp_path: Path) -> None:
    from securestore.api import AuditTrailDrill
    from securestore.errors import UsageError

    url = set_up_database(server)
    init_store(url, seed_out=str(tmp_path / "seed"), signing_key=SIGNING_KEY)
    with open_store(url, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("s", "k", 1)
        with pytest.raises(UsageError, match=r"^refused: the audit trail drill rewrites a directory store's"):
            with AuditTrailDrill(store, "s"):
                pass
        assert verify_store(store).ok
