"""Stores in a real PostgreSQL database: a fresh database per store, set up by pg-setup's
`install` (schema and roles), then `init_store` like a directory store."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import threading
import uuid
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from securestore.backends.postgres.setup import install
from securestore.aio import AsyncSecureStore, InterruptedWrite
from securestore.backends.postgres.url import parse_target
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS

from .cancel import cancel_inside_fsync
from .postgres import PostgresServer


# Every database the tests made, in order: conftest's drop_test_databases drops a test's own
# after it (the throwaway servers keep their data in memory).
MADE: list[tuple[PostgresServer, str]] = []


def fresh_database(server: PostgresServer) -> str:
    """A new, empty database on `server`; its URL (superuser, loopback, no password)."""
    name = "t_" + uuid.uuid4().hex[:16]
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    MADE.append((server, name))
    return f"postgresql://postgres@127.0.0.1:{server.port}/{name}"


def drop_databases_made_since(count: int) -> None:
    """Drop the databases made after the first `count` (a test's own), on servers still running."""
    while len(MADE) > count:
        server, name = MADE.pop()
        try:
            with psycopg.connect(server.dsn, autocommit=True, connect_timeout=5) as connection:
                connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except psycopg.OperationalError:
            pass  # the test's own server, stopped with it: nothing left to free


def stored_bytes(url: str) -> bytes:
    """Every byte the store's rows hold: names, file chunks and audit records."""
    with psycopg.connect(url) as connection:
        rows = connection.execute(
            "SELECT convert_to(name, 'UTF8') FROM securestore.nodes UNION ALL SELECT data FROM securestore.chunks "
            "UNION ALL SELECT data FROM securestore.audit_records").fetchall()
    return b"\n".join(bytes(row[0]) for row in rows)


def set_up_database(server: PostgresServer) -> str:
    """A fresh database with the securestore schema and roles in it; its URL."""
    url = fresh_database(server)
    install(parse_target(url, {}))
    return url


def stored_contents(url: str) -> dict[str, bytes]:
    """What the store's rows hold, one entry per place: each file's whole content in order (its
    chunks, or its audit records, joined by seq: a value written across two appends is found
    whole) under its path in the tree ("sessions/<dir>/journal.log"; a deleted session's retired
    audit files under "(retired)/"), every node's path under "(names)", the `meta` rows, the
    setup history, and any chunk or audit row of no node."""
    with psycopg.connect(url) as connection:
        nodes = connection.execute(
            "WITH RECURSIVE tree(id, path) AS ("
            "SELECT id, CASE parent WHEN 0 THEN name ELSE '(retired)/' || name END FROM securestore.nodes "
            "WHERE parent IN (0, -1) UNION ALL SELECT n.id, t.path || '/' || n.name FROM securestore.nodes n "
            "JOIN tree t ON n.parent = t.id) "
            "SELECT coalesce(t.path, '(detached ' || n.id || ')/' || n.name), n.kind = 'f', CASE WHEN n.audit "
            "THEN (SELECT string_agg(a.data, ''::bytea ORDER BY a.seq) FROM securestore.audit_records a "
            "WHERE a.node = n.id) "
            "ELSE (SELECT string_agg(c.data, ''::bytea ORDER BY c.seq) FROM securestore.chunks c "
            "WHERE c.node = n.id) END FROM securestore.nodes n LEFT JOIN tree t ON t.id = n.id "
            "ORDER BY 1").fetchall()
        orphans = connection.execute(
            "SELECT '(orphan chunk of ' || node || ')', data FROM securestore.chunks WHERE node NOT IN "
            "(SELECT id FROM securestore.nodes) UNION ALL SELECT '(orphan audit record of ' || node || ')', data "
            "FROM securestore.audit_records WHERE node NOT IN (SELECT id FROM securestore.nodes)").fetchall()
        meta = connection.execute("SELECT convert_to(key || '=' || value, 'UTF8') FROM securestore.meta").fetchall()
        history = connection.execute("SELECT convert_to(actions, 'UTF8') FROM securestore.setup_history").fetchall()
    out = {"(names)": "".join(f"{path}\n" for path, _, _ in nodes).encode(),
           "(meta)": b"\n".join(bytes(row[0]) for row in meta),
           "(setup history)": b"\n".join(bytes(row[0]) for row in history)}
    out.update({str(path): bytes(data or b"") for path, is_file, data in nodes if is_file})
    for label, data in orphans:
        out[str(label)] = out.get(str(label), b"") + bytes(data)
    return out


def all_stored(root: Path | str) -> dict[str, bytes]:
    """Every place a store keeps bytes, on either backend: each file under a directory store's
    root (its relative path -> its content; the paths themselves under "(names)"; links are not
    followed), or each file, name and row of a PostgreSQL store (stored_contents)."""
    if isinstance(root, str) and root.startswith("postgresql://"):
        return stored_contents(root)
    base = Path(root)
    names: list[str] = []
    out: dict[str, bytes] = {}
    for directory, dirnames, filenames in os.walk(base):
        for name in sorted(dirnames + filenames):
            path = Path(directory, name)
            names.append(f"{path.relative_to(base)}\n")
            if name in filenames and stat.S_ISREG(path.lstat().st_mode):
                out[str(path.relative_to(base))] = path.read_bytes()
    return {"(names)": "".join(names).encode(), **out}


def all_stored_bytes(root: Path | str) -> bytes:
    """Every byte a store keeps, on either backend (all_stored), one place after another."""
    return b"\n".join(all_stored(root).values())


async def cancel_inside_pg_write(store: AsyncSecureStore, url: str, write: Awaitable[Any]) -> tuple[InterruptedWrite, str]:
    """cancel_inside_fsync's twin for a PostgreSQL store: another connection holds the `chunks`
    table (EXCLUSIVE: reads go on, writes wait), `write` starts and blocks inside its transaction
    on that lock (seen in pg_locks, a server fact, not a guess of time), the caller is cancelled
    there, the lock is released and the write goes on. Returns what the store recorded and the
    CancelledError's notes."""
    with psycopg.connect(url) as blocker:  # not autocommit: the lock lasts until rollback
        blocker.execute("LOCK TABLE securestore.chunks IN EXCLUSIVE MODE")
        task = asyncio.ensure_future(write)
        try:
            for _ in range(3000):  # up to ~30 s for the write to reach the lock
                waiting = blocker.execute("SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = "
                                          "'securestore.chunks'::regclass").fetchone()
                if waiting is not None and waiting[0] > 0:
                    break
                await asyncio.sleep(0.01)
            else:
                raise AssertionError("the write never reached the chunks table")
            task.cancel()
        finally:
            blocker.rollback()  # the lock goes: the write goes on
        with pytest.raises(asyncio.CancelledError) as raised:
            await task
    return store.interrupted[-1], " ".join(getattr(raised.value, "__notes__", []))


async def cancel_inside_a_write(store: AsyncSecureStore, root: Path | str,
                                write: Awaitable[Any]) -> tuple[InterruptedWrite, str]:
    """Cancel `write`'s caller while the write is inside its storage: in an fsync of its log
    (directory store) or blocked on a row lock inside its transaction (PostgreSQL)."""
    if isinstance(root, str) and root.startswith("postgresql://"):
        return await cancel_inside_pg_write(store, root, write)
    return await cancel_inside_fsync(store, write)


class ReadMeter:
    """Bytes a store handle reads from its storage: the sizes its read OS calls ask for (a
    directory store, through the fs layer), or the bytes the server sends it (PostgreSQL,
    through a real TCP relay counting them). `reset()`, then `total`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._total = 0

    def add(self, count: int) -> None:
        with self._lock:
            self._total += count

    def reset(self) -> None:
        with self._lock:
            self._total = 0

    @property
    def total(self) -> int:
        with self._lock:
            return self._total


def _pump(source: socket.socket, sink: socket.socket, meter: ReadMeter | None) -> None:
    try:
        while data := source.recv(65536):
            if meter is not None:
                meter.add(len(data))
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (sink, source):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


@contextmanager
def metered(root: Path | str) -> Iterator[tuple[Path | str, dict[str, Any], ReadMeter]]:
    """(where to open the store, extra open_store arguments, its meter): a store opened so
    counts what it reads from its storage (see ReadMeter)."""
    meter = ReadMeter()
    if not (isinstance(root, str) and root.startswith("postgresql://")):
        def hook(name: str, args: tuple[Any, ...]) -> None:
            if name in ("read", "pread"):
                meter.add(int(args[1]))

        yield root, {"os_api": instrumented(REAL_OS, hook)}, meter
        return
    parts = urlsplit(root)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stopping = threading.Event()
    sockets: list[socket.socket] = []

    def relay() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", parts.port or 5432))
            sockets.extend((client, server))
            threading.Thread(target=_pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=_pump, args=(server, client, meter), daemon=True).start()

    thread = threading.Thread(target=relay, daemon=True)
    thread.start()
    try:
        address = f"{parts.hostname}:{listener.getsockname()[1]}"
        yield urlunsplit(parts._replace(netloc=f"{parts.username}@{address}" if parts.username else address)), {}, meter
    finally:
        stopping.set()
        thread.join()
        listener.close()
        for end in sockets:
            end.close()


def refuse_chunks(name: str, condition: str) -> str:
    """SQL making a fault inside the database: a trigger `name` that refuses (as a full disk
    would) every new row of file bytes (`securestore.chunks`, not the audit records) for which
    `condition` holds (an SQL expression over NEW). `DROP TRIGGER name ON securestore.chunks`
    ends it."""
    return f"""
CREATE FUNCTION securestore.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF {condition} THEN
        RAISE EXCEPTION 'injected fault' USING ERRCODE = 'disk_full';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER {name} BEFORE INSERT ON securestore.chunks FOR EACH ROW EXECUTE FUNCTION securestore.{name}();
"""


# A store handle's connection between two tries of a shared advisory lock: polling for it,
# outside any round trip of a write (locks.take). Its pid, when there is one.
POLLING = ("SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'securestore%' AND state = 'idle' "
           "AND query LIKE '%pg_try_advisory_lock_shared%'")
