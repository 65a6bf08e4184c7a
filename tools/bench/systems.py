"""The systems compared, each behind one small interface: build the long-lived stores once
(outside the timing), then hand the harness one prepared operation per workload and round.

Workload keys, and how each system maps them (also printed by the tool, see MAPPINGS):
  append       append one item, durable, to a session that holds 1 + (ops done this round) items
  turn         one turn of 16 items
  create_empty create a session with one item in a store holding no sessions (fresh store each round)
  create_big   the same in the store holding N sessions (built once, reused across rounds)
  read50       read the latest 50 of a 1,000-item session
  list50       list the 50 most recently updated of the N sessions
  slot_put     replace one value of ~500 bytes
  slot_get     read it back
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from .corpus import item, items

APPEND, TURN, CREATE_EMPTY, CREATE_BIG = "append", "turn", "create_empty", "create_big"
READ50, LIST50, SLOT_PUT, SLOT_GET = "read50", "list50", "slot_put", "slot_get"
WORKLOADS: dict[str, str] = {
    APPEND: "append one item, durable",
    TURN: "one turn of 16 items",
    CREATE_EMPTY: "create a session with one item, store empty",
    CREATE_BIG: "create a session with one item, store holding N sessions",
    READ50: "read the latest 50 of 1,000 items",
    LIST50: "list the 50 most recent of N sessions",
    SLOT_PUT: "slot put (~500-byte value)",
    SLOT_GET: "slot get",
}
WRITE_WORKLOADS = (APPEND, TURN, CREATE_EMPTY, CREATE_BIG, SLOT_PUT)
TURN_ITEMS = 16
READ_SESSION_ITEMS = 1000
READ_LIMIT = 50

Op = Callable[[int], object]


def _noop() -> None:
    return None


@dataclass
class Prepared:
    """One workload ready to run: `op(i)` is operation number i of the round."""

    op: Op
    cleanup: Callable[[], None] = _noop

    def timed(self, n: int) -> list[float]:
        samples = []
        for i in range(n):
            t0 = time.perf_counter()
            self.op(i)
            samples.append(time.perf_counter() - t0)
        return samples


AsyncOp = Callable[[int], Coroutine[Any, Any, object]]


@dataclass
class AsyncPrepared(Prepared):
    """An async peer: the timing loop itself runs inside the event loop, so each sample is the
    peer's await, not the cost of entering the loop from synchronous code."""

    async_op: AsyncOp | None = None
    runner: Any = None  # asyncio.Runner

    def timed(self, n: int) -> list[float]:
        assert self.async_op is not None and self.runner is not None
        op = self.async_op

        async def loop() -> list[float]:
            samples = []
            for i in range(n):
                t0 = time.perf_counter()
                await op(i)
                samples.append(time.perf_counter() - t0)
            return samples

        result: list[float] = self.runner.run(loop())
        return result


class Unavailable(Exception):
    """A peer whose package is not installed."""


class System(ABC):
    name: str = ""
    durability: str = ""  # what the system promises per commit, in a few words
    short: str = ""  # the same in the tables, when no PRAGMA can be read back
    mappings: dict[str, str] = {}

    @abstractmethod
    def build(self, base: Path, n_sessions: int) -> None: ...

    @abstractmethod
    def prepare(self, workload: str, rnd: int) -> Prepared | None: ...

    def pragmas(self) -> dict[str, str] | None:
        return None

    def close(self) -> None:
        return None


# -- securestore ------------------------------------------------------------------------------


@dataclass
class StoreKeys:
    signing_key_file: str
    master_key_file: str


def make_keys(base: Path) -> StoreKeys:
    from securestore import generate_master_key
    from securestore.api.keys import generate_signing_key
    from securestore.fs import REAL_OS, FsContext

    keys = StoreKeys(str(base / "signing.key"), str(base / "master.key"))
    generate_signing_key(FsContext(REAL_OS), keys.signing_key_file, root_path=None)
    generate_master_key(keys.master_key_file)
    return keys


def new_securestore(root: Path, keys: StoreKeys, max_sessions: int | None = None,
                    max_items: int | None = None) -> Any:
    """A fresh store at `root` (an absent directory), opened. Only caps are raised, and only
    the ones a big benchmark store would hit; durability and audit settings stay the defaults."""
    from securestore import init_store

    init_store(root, seed_out=str(root.parent / f"{root.name}.seed"), signing_key_file=keys.signing_key_file,
               environ={})
    return open_securestore(root, keys, max_sessions, max_items)


def open_securestore(root: Path, keys: StoreKeys, max_sessions: int | None = None,
                     max_items: int | None = None) -> Any:
    from securestore import Limits, StoreConfig, open_store

    caps: dict[str, int] = {}
    if max_sessions is not None:
        caps["max_sessions"] = max_sessions
    if max_items is not None:
        caps["max_items"] = max_items
    config = StoreConfig(limits=Limits(**caps)) if caps else None
    return open_store(root, config, signing_key_file=keys.signing_key_file,
                      master_key_file=keys.master_key_file, environ={})


class SecureStoreSystem(System):
    name = "securestore"
    durability = "audit intent fsynced before the change; file, rename and dir fsynced"
    short = "audit-before-act, all fsynced"
    mappings = {
        APPEND: "session.append_items([item]) on an open session",
        TURN: "with session.turn(): 16 x append_items([item])",
        CREATE_EMPTY: "create_session(key) + append_items([item]) + close",
        CREATE_BIG: "create_session(key) + append_items([item]) + close",
        READ50: "store.read_items(key, 50)",
        LIST50: "store.list_sessions(page_size=50)",
        SLOT_PUT: "store.put(session, slot, value)",
        SLOT_GET: "store.get(session, slot)",
    }

    def __init__(self) -> None:
        self.base = Path()
        self.keys: StoreKeys | None = None
        self.big: Any = None

    def build(self, base: Path, n_sessions: int) -> None:
        self.base = base
        self.keys = make_keys(base)
        self.big = new_securestore(base / "big", self.keys, max_sessions=n_sessions + 10_000)
        for k in range(n_sessions):
            with self.big.create_session(f"s-{k:06d}") as session:
                session.append_items([item(k)])
        with self.big.create_session("read-1000") as session:
            for start in range(0, READ_SESSION_ITEMS, 100):
                with session.turn():
                    session.append_items(items(start, 100))
        self.big.put("slots", "state", item(0))
        # Same bytes in, same bytes out: proves no item tripped secret redaction (which would
        # add vault writes and make the comparison unfair to securestore's peers).
        if self.big.read_items("read-1000") != items(0, READ_SESSION_ITEMS):
            raise SystemExit("bench_peers: the corpus was altered by securestore (redaction?); fix corpus.py")

    def prepare(self, workload: str, rnd: int) -> Prepared | None:
        big = self.big
        if workload in (APPEND, TURN):
            session = big.create_session(f"{workload}-r{rnd}")
            session.append_items([item(0)])
            if workload == APPEND:
                return Prepared(lambda i: session.append_items([item(i)]), session.close)

            def turn(i: int) -> None:
                with session.turn():
                    for it in items(i * TURN_ITEMS, TURN_ITEMS):
                        session.append_items([it])

            return Prepared(turn, session.close)
        if workload == CREATE_EMPTY:
            assert self.keys is not None
            root = self.base / f"empty-r{rnd}"
            store = new_securestore(root, self.keys)

            def cleanup() -> None:
                store.close()
                shutil.rmtree(root, ignore_errors=True)

            return Prepared(lambda i: self._create(store, f"new-{i}", i), cleanup)
        if workload == CREATE_BIG:
            return Prepared(lambda i: self._create(big, f"new-r{rnd}-{i}", i))
        if workload == READ50:
            return Prepared(lambda i: big.read_items("read-1000", READ_LIMIT))
        if workload == LIST50:
            return Prepared(lambda i: big.list_sessions(page_size=READ_LIMIT))
        if workload == SLOT_PUT:
            return Prepared(lambda i: big.put("slots", "state", item(i)))
        if workload == SLOT_GET:
            return Prepared(lambda i: big.get("slots", "state"))
        return None

    @staticmethod
    def _create(store: Any, key: str, i: int) -> None:
        with store.create_session(key) as session:
            session.append_items([item(i)])

    def close(self) -> None:
        if self.big is not None:
            self.big.close()


# -- raw SQLite -------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, created INTEGER NOT NULL, updated INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS sessions_updated ON sessions (updated);
CREATE TABLE IF NOT EXISTS items (session_id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL,
                                  PRIMARY KEY (session_id, seq)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS slots (session_id TEXT NOT NULL, name TEXT NOT NULL, value BLOB NOT NULL,
                                  PRIMARY KEY (session_id, name)) WITHOUT ROWID;
"""


def read_pragmas(conn: sqlite3.Connection) -> dict[str, str]:
    journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    sync = int(conn.execute("PRAGMA synchronous").fetchone()[0])
    names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
    return {"journal_mode": str(journal).upper(), "synchronous": f"{names.get(sync, '?')}({sync})"}


class RawSqlite(System):
    """A hand-written session store on SQLite: WAL, the given synchronous level, one connection
    in autocommit mode with explicit BEGIN/COMMIT, items and slots as orjson text."""

    mappings = {
        APPEND: "BEGIN; INSERT item; UPDATE session.updated; COMMIT",
        TURN: "one transaction: 16 INSERTs + UPDATE",
        CREATE_EMPTY: "one transaction: INSERT session + INSERT item",
        CREATE_BIG: "one transaction: INSERT session + INSERT item",
        READ50: "SELECT ... ORDER BY seq DESC LIMIT 50, decoded",
        LIST50: "SELECT ... ORDER BY updated DESC LIMIT 50 (indexed)",
        SLOT_PUT: "one transaction: INSERT OR REPLACE slot + UPDATE session",
        SLOT_GET: "SELECT value, decoded",
    }

    def __init__(self, synchronous: str) -> None:
        self.synchronous = synchronous
        self.name = f"sqlite WAL sync={synchronous}"
        self.durability = "one commit, WAL" + (" fsynced per commit" if synchronous == "FULL"
                                               else " fsynced at checkpoint only (may lose last commits)")
        self.base = Path()
        self.big: sqlite3.Connection | None = None
        self.seq: dict[str, int] = {}

    def connect(self, path: Path) -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.executescript(SQLITE_SCHEMA)
        return conn

    def build(self, base: Path, n_sessions: int) -> None:
        self.base = base
        self.big = self.connect(base / "big.db")
        self.big.execute("BEGIN")
        for k in range(n_sessions):
            self._insert_session(self.big, f"s-{k:06d}", item(k))
        self._insert_session(self.big, "read-1000", item(0))
        self.big.executemany("INSERT INTO items VALUES (?, ?, ?)",
                             [("read-1000", n + 1, orjson.dumps(it)) for n, it in enumerate(items(1, 999))])
        self._insert_session(self.big, "slots", item(0))
        self.big.execute("INSERT INTO slots VALUES ('slots', 'state', ?)", (orjson.dumps(item(0)),))
        self.big.execute("COMMIT")

    def _insert_session(self, conn: sqlite3.Connection, key: str, first: dict[str, Any]) -> None:
        now = time.time_ns()
        conn.execute("INSERT INTO sessions VALUES (?, ?, ?)", (key, now, now))
        conn.execute("INSERT INTO items VALUES (?, 0, ?)", (key, orjson.dumps(first)))
        self.seq[key] = 0

    def _append(self, conn: sqlite3.Connection, key: str, batch: list[dict[str, Any]]) -> None:
        start = self.seq[key] + 1
        self.seq[key] += len(batch)
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO items VALUES (?, ?, ?)",
                         [(key, start + n, orjson.dumps(it)) for n, it in enumerate(batch)])
        conn.execute("UPDATE sessions SET updated = ? WHERE id = ?", (time.time_ns(), key))
        conn.execute("COMMIT")

    def _create(self, conn: sqlite3.Connection, key: str, first: dict[str, Any]) -> None:
        conn.execute("BEGIN")
        self._insert_session(conn, key, first)
        conn.execute("COMMIT")

    def prepare(self, workload: str, rnd: int) -> Prepared | None:
        big = self.big
        assert big is not None
        if workload in (APPEND, TURN):
            key = f"{workload}-r{rnd}"
            self._create(big, key, item(0))
            if workload == APPEND:
                return Prepared(lambda i: self._append(big, key, [item(i)]))
            return Prepared(lambda i: self._append(big, key, items(i * TURN_ITEMS, TURN_ITEMS)))
        if workload == CREATE_EMPTY:
            path = self.base / f"empty-r{rnd}.db"
            conn = self.connect(path)

            def cleanup() -> None:
                conn.close()
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)

            return Prepared(lambda i: self._create(conn, f"new-{i}", item(i)), cleanup)
        if workload == CREATE_BIG:
            return Prepared(lambda i: self._create(big, f"new-r{rnd}-{i}", item(i)))
        if workload == READ50:
            return Prepared(lambda i: self._read(big, "read-1000"))
        if workload == LIST50:
            return Prepared(lambda i: big.execute(
                "SELECT id, created, updated FROM sessions ORDER BY updated DESC LIMIT ?", (READ_LIMIT,)).fetchall())
        if workload == SLOT_PUT:
            return Prepared(lambda i: self._put_slot(big, item(i)))
        if workload == SLOT_GET:
            return Prepared(lambda i: orjson.loads(big.execute(
                "SELECT value FROM slots WHERE session_id = 'slots' AND name = 'state'").fetchone()[0]))
        return None

    @staticmethod
    def _read(conn: sqlite3.Connection, key: str) -> list[Any]:
        rows = conn.execute("SELECT data FROM items WHERE session_id = ? ORDER BY seq DESC LIMIT ?",
                            (key, READ_LIMIT)).fetchall()
        return [orjson.loads(row[0]) for row in reversed(rows)]

    @staticmethod
    def _put_slot(conn: sqlite3.Connection, value: dict[str, Any]) -> None:
        conn.execute("BEGIN")
        conn.execute("INSERT OR REPLACE INTO slots VALUES ('slots', 'state', ?)", (orjson.dumps(value),))
        conn.execute("UPDATE sessions SET updated = ? WHERE id = 'slots'", (time.time_ns(),))
        conn.execute("COMMIT")

    def pragmas(self) -> dict[str, str] | None:
        return read_pragmas(self.big) if self.big is not None else None

    def close(self) -> None:
        if self.big is not None:
            self.big.close()
