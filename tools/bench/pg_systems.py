"""The systems of tools/bench_pg.py, each on its own databases of one PostgreSQL server: a plain
psycopg session store (the baseline), LangGraph's `PostgresSaver`, and securestore's postgres
backend through its public API only. The interface is bench/systems.py's (build the long-lived
stores once, outside the timing; then one prepared operation per workload and round) and the
items are bench/corpus.py's. Each system sets a few primitives; `PgSystem.prepare` maps the
workloads onto them alike. Databases: `<prefix>_big`, `<prefix>_mid`, `<prefix>_empty_r<round>`."""

from __future__ import annotations

import subprocess  # nosec B404 - the securestore CLI, fixed argv, no shell
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from .corpus import item, items
from .frameworks import LangGraphSqliteSaver, LangGraphThread
from .harness import log_stderr
from .systems import (
    APPEND, CREATE_BIG, CREATE_EMPTY, READ50, READ_LIMIT, READ_SESSION_ITEMS, TURN, TURN_ITEMS, Prepared,
    SecureStoreSystem, System, Unavailable, make_keys,
)

LIST_MID, LIST_BIG = "list_mid", "list_big"
PG_WRITES = (APPEND, TURN, CREATE_EMPTY, CREATE_BIG)
Writer = tuple[Callable[[int], object], Callable[[], None]]


@dataclass(frozen=True)
class Cluster:
    """The server, reached over TCP on 127.0.0.1 as its superuser (like the tests' server)."""

    port: int

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def admin(self, sql: str) -> None:
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(sql.encode())  # only our own database names, [a-z0-9_]

    def create_db(self, name: str) -> str:
        self.admin(f"CREATE DATABASE {name}")  # never dropped: DROP DATABASE forces a checkpoint
        return self.url(name)


@dataclass(frozen=True)
class PgKeys:
    """The key texts (what bench/systems.py make_keys writes), handed to securestore as strings."""

    signing_key: str = ""
    master_key: str = ""


class PgSystem(System):
    """`build(base, n)` makes `<prefix>_mid` (self.mid sessions) and `<prefix>_big` (n)."""

    prefix = ""

    def __init__(self, cluster: Cluster, mid: int) -> None:
        self.cluster, self.mid = cluster, mid
        self.base, self.keys = Path(), PgKeys()
        self.stores: dict[str, Any] = {}  # "mid", "big": this system's open store on each
        self.databases: list[str] = []  # what build made (bench_pg vacuums and checkpoints them)
        self.notes: list[str] = []  # printed under the tables
        self.skipped: set[str] = set()

    # The primitives each system sets (as staticmethods), which prepare() and the writers use:
    open: Callable[[str, PgKeys], Any]  # the store at a URL that setup() prepared
    close_store: Callable[[Any], None]
    setup: Callable[[str, PgKeys, Path], None]  # (url, keys, seed_out): the schema or store at a URL
    writer: Callable[[Any, str, int], Writer]  # (store, key, per_op): a new session; op i adds per_op items
    create: Callable[[Any, str, int], None]  # (store, key, i): a new session holding item(i)
    read: Callable[[Any], object]  # the latest 50 items of the session "read-1000"
    first_page: Callable[[Any], object]  # the 50 most recently updated sessions
    fill: Callable[[str, int, bool], None]  # (url, n, with_reader): the sessions of a big store, in bulk

    def build(self, base: Path, n_sessions: int) -> None:
        """The peers: a bulk fill, then the store opened afresh at its defaults."""
        self.base = base
        for name, n in (("mid", self.mid), ("big", n_sessions)):
            url = self.new_db(name)
            self.setup(url, self.keys, base / f"{name}.seed")
            self.fill(url, n, name == "big")
            self.stores[name] = self.open(url, self.keys)

    def new_db(self, name: str) -> str:
        self.databases.append(f"{self.prefix}_{name}")
        return self.cluster.create_db(f"{self.prefix}_{name}")

    def empty_db(self, rnd: int) -> str:
        """Round rnd's empty database (CREATE DATABASE writes the template to the WAL: made early)."""
        made = f"{self.prefix}_empty_r{rnd}" in self.databases
        return self.cluster.url(f"{self.prefix}_empty_r{rnd}") if made else self.new_db(f"empty_r{rnd}")

    def prepare(self, workload: str, rnd: int) -> Prepared | None:
        big = self.stores["big"]
        if workload in self.skipped:
            return None
        if workload in (APPEND, TURN):
            op, close = self.writer(big, f"{workload}-r{rnd}", 1 if workload == APPEND else TURN_ITEMS)
            return Prepared(op, close)
        if workload == CREATE_EMPTY:  # a database made before the rounds (empty_db), set up now
            url = self.empty_db(rnd)
            self.setup(url, self.keys, self.base / f"empty_r{rnd}.seed")
            store = self.open(url, self.keys)
            return Prepared(lambda i: self.create(store, f"new-{i}", i), lambda: self.close_store(store))
        if workload == CREATE_BIG:
            return Prepared(lambda i: self.create(big, f"new-r{rnd}-{i}", i))
        if workload == READ50:
            return Prepared(lambda i: self.read(big))
        if workload in (LIST_MID, LIST_BIG):
            lister = self.stores["big" if workload == LIST_BIG else "mid"]
            return Prepared(lambda i: self.first_page(lister))
        return None

    def close(self) -> None:
        for store in self.stores.values():
            self.close_store(store)


# -- plain psycopg: the baseline --------------------------------------------------------------

SCHEMA = b"""
CREATE TABLE sessions (id text PRIMARY KEY, created_ms bigint NOT NULL, updated_ms bigint NOT NULL);
CREATE INDEX sessions_keyset ON sessions (updated_ms DESC, id DESC);
CREATE TABLE items (session_id text NOT NULL, seq int NOT NULL, item jsonb NOT NULL, PRIMARY KEY (session_id, seq));
"""


class PlainStore:
    """The hand-written store on one autocommit connection with explicit transactions (sequence
    numbers kept client-side, as bench/systems.py's RawSqlite does)."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)  # statements prepared after 5 uses (default)
        psycopg.types.json.set_json_dumps(orjson.dumps, context=self.conn)
        psycopg.types.json.set_json_loads(orjson.loads, context=self.conn)
        self.seq: dict[str, int] = {}

    def create(self, key: str, first: dict[str, Any]) -> None:
        now = time.time_ns() // 1_000_000
        with self.conn.transaction():
            self.conn.execute("INSERT INTO sessions VALUES (%s, %s, %s)", (key, now, now))
            self.conn.execute("INSERT INTO items VALUES (%s, 0, %s)", (key, Jsonb(first)))
        self.seq[key] = 0

    def append(self, key: str, batch: list[dict[str, Any]]) -> None:
        start = self.seq[key] + 1
        with self.conn.transaction():
            with self.conn.cursor() as cur:  # one INSERT per item (executemany pipelines them)
                cur.executemany("INSERT INTO items VALUES (%s, %s, %s)",
                                [(key, start + n, Jsonb(it)) for n, it in enumerate(batch)])
            self.conn.execute("UPDATE sessions SET updated_ms = %s WHERE id = %s", (time.time_ns() // 1_000_000, key))
        self.seq[key] += len(batch)

    def read(self, key: str) -> list[Any]:
        rows = self.conn.execute("SELECT item FROM items WHERE session_id = %s ORDER BY seq DESC LIMIT %s",
                                 (key, READ_LIMIT)).fetchall()
        return [row[0] for row in reversed(rows)]

    def first_page(self) -> list[Any]:
        # Keyset pagination on (updated_ms, id): a next page adds WHERE (updated_ms, id) < (the last row's).
        return self.conn.execute("SELECT id, created_ms, updated_ms FROM sessions ORDER BY updated_ms DESC, id DESC "
                                 "LIMIT %s", (READ_LIMIT,)).fetchall()


def bulk_plain(url: str, n_sessions: int, with_reader: bool) -> None:
    """N one-item sessions (and the 1,000-item one) by COPY: the end state of N creates."""
    start = time.time_ns() // 1_000_000 - n_sessions - 10
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY sessions (id, created_ms, updated_ms) FROM STDIN") as copy:
            for k in range(n_sessions):
                copy.write_row((f"s-{k:06d}", start + k, start + k))
            if with_reader:
                copy.write_row(("read-1000", start, start))
        with cur.copy("COPY items (session_id, seq, item) FROM STDIN") as copy:
            for k in range(n_sessions):
                copy.write_row((f"s-{k:06d}", 0, orjson.dumps(item(k)).decode()))
            for n in range(READ_SESSION_ITEMS if with_reader else 0):
                copy.write_row(("read-1000", n, orjson.dumps(item(n)).decode()))


class PlainPsycopg(PgSystem):
    name = "plain psycopg"
    prefix = "psycopg"
    durability = "one transaction per operation, committed with synchronous_commit=on"
    mappings = {
        APPEND: "BEGIN; INSERT item; UPDATE sessions.updated_ms; COMMIT",
        TURN: "one transaction: 16 INSERTs (executemany) + UPDATE",
        CREATE_EMPTY: "one transaction: INSERT session + INSERT item (fresh database per round)",
        CREATE_BIG: "one transaction: INSERT session + INSERT item",
        READ50: "SELECT item ... ORDER BY seq DESC LIMIT 50, decoded",
        LIST_MID: "SELECT ... ORDER BY updated_ms DESC, id DESC LIMIT 50 (keyset index)",
        LIST_BIG: "SELECT ... ORDER BY updated_ms DESC, id DESC LIMIT 50 (keyset index)",
    }
    open = staticmethod(lambda url, keys: PlainStore(url))
    close_store = staticmethod(lambda store: store.conn.close())
    create = staticmethod(lambda store, key, i: store.create(key, item(i)))
    read = staticmethod(lambda store: store.read("read-1000"))
    first_page = staticmethod(lambda store: store.first_page())

    @staticmethod
    def setup(url: str, keys: PgKeys, seed_out: Path) -> None:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SCHEMA)

    @staticmethod
    def writer(store: Any, key: str, per_op: int) -> Writer:
        store.create(key, item(0))
        return (lambda i: store.append(key, items(i * per_op, per_op))), lambda: None

    fill = staticmethod(bulk_plain)


# -- LangGraph's PostgresSaver ----------------------------------------------------------------


def open_saver(url: str, keys: PgKeys | None = None) -> Any:
    """What PostgresSaver.from_conn_string does, kept open across operations."""
    from langgraph.checkpoint.postgres import PostgresSaver

    return PostgresSaver(psycopg.Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row))


def bulk_threads(saver: Any, n_sessions: int) -> None:
    """The rows `LangGraphThread(saver, key).put([item(k)])` writes for N threads, made with the
    saver's own statements and serializer in one executemany per table: the end state of N
    first puts (checked against a real put below), in seconds instead of minutes."""
    from langgraph.checkpoint.base import empty_checkpoint, get_serializable_checkpoint_metadata

    blobs, points = [], []
    for k in range(n_sessions):
        key, version = f"s-{k:06d}", saver.get_next_version(None, None)
        checkpoint = empty_checkpoint()  # as LangGraphThread.put builds it; the list goes to a blob (put)
        checkpoint["channel_versions"] = {"messages": version}
        checkpoint["updated_channels"] = ["messages"]
        blobs.extend(saver._dump_blobs(key, "", {"messages": [item(k)]}, {"messages": version}))
        metadata = get_serializable_checkpoint_metadata({"configurable": {"thread_id": key, "checkpoint_ns": ""}},
                                                        {"source": "loop", "step": 0, "parents": {}})
        points.append((key, "", checkpoint["id"], None, Jsonb(checkpoint), Jsonb(metadata)))
    with saver.conn.transaction(), saver.conn.cursor() as cur:
        cur.executemany(saver.UPSERT_CHECKPOINT_BLOBS_SQL, blobs)
        cur.executemany(saver.UPSERT_CHECKPOINTS_SQL, points)
    LangGraphThread(saver, "probe").put([item(0)])
    real, bulk = (saver.get_tuple({"configurable": {"thread_id": t, "checkpoint_ns": ""}}) for t in ("probe", "s-000000"))
    if (bulk.checkpoint["channel_values"], bulk.metadata) != (real.checkpoint["channel_values"], real.metadata):
        raise SystemExit("bench_pg: the bulk-built PostgresSaver threads differ from a real put")
    saver.delete_thread("probe")


class LangGraphPostgresSaver(PgSystem):
    name = "langgraph PostgresSaver"
    prefix = "saver"
    durability = "one autocommit pipeline per put (synchronous_commit=on)"
    mappings = {  # as bench/frameworks.py maps SqliteSaver
        **{w: m for w, m in LangGraphSqliteSaver.mappings.items() if w in PG_WRITES + (READ50,)},
        CREATE_EMPTY: "first put on a new thread_id (1 message; fresh database + setup() per round)",
        LIST_MID: LangGraphSqliteSaver.mappings["list50"], LIST_BIG: LangGraphSqliteSaver.mappings["list50"],
    }
    open = staticmethod(open_saver)
    close_store = staticmethod(lambda saver: saver.conn.close())
    create = staticmethod(lambda saver, key, i: LangGraphThread(saver, key).put([item(i)]))
    read = staticmethod(lambda saver: saver.get_tuple({"configurable": {"thread_id": "read-1000", "checkpoint_ns": ""}})
                        .checkpoint["channel_values"]["messages"][-READ_LIMIT:])
    first_page = staticmethod(lambda saver: list(saver.list(None, limit=READ_LIMIT)))

    @staticmethod
    def setup(url: str, keys: PgKeys, seed_out: Path) -> None:
        saver = open_saver(url)
        saver.setup()
        saver.conn.close()

    @staticmethod
    def writer(saver: Any, key: str, per_op: int) -> Writer:
        thread = LangGraphThread(saver, key)
        thread.put([item(0)])
        return (lambda i: thread.put(items(i * per_op, per_op))), lambda: None

    @staticmethod
    def fill(url: str, n_sessions: int, with_reader: bool) -> None:
        builder = open_saver(url)
        builder.conn.execute("SET synchronous_commit = off")  # build only; bench_pg CHECKPOINTs after
        bulk_threads(builder, n_sessions)
        reader = LangGraphThread(builder, "read-1000")
        for start in range(0, READ_SESSION_ITEMS if with_reader else 0, 50):  # 1,000 messages in 20 steps
            reader.put(items(start, 50))
        builder.conn.close()


# -- securestore (postgres): the part to fix up once the backend lands ------------------------

PG_SETUP_ARGV = ("pg-setup",)  # `securestore pg-setup URL`, run before init_store(URL)
MAX_SESSIONS = 1_000_000


def setup_pg_store(url: str, keys: PgKeys, seed_out: Path) -> None:
    """What a user does once per database: `securestore pg-setup URL`, then init_store(URL)."""
    import securestore

    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(p for p in sys.path if p)}  # this tree's securestore
    done = subprocess.run([sys.executable, "-m", "securestore", *PG_SETUP_ARGV, url], capture_output=True,
                          text=True, env=env, timeout=120, check=False)  # nosec B603
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise RuntimeError(f"`securestore {' '.join(PG_SETUP_ARGV)} URL` exited {done.returncode}: {last}")
    securestore.init_store(url, seed_out=str(seed_out), signing_key=keys.signing_key, environ={})


def open_pg_store(url: str, keys: PgKeys) -> Any:
    """The store at `url`. Only the session cap is raised (a big benchmark store hits it);
    durability and audit settings stay the defaults."""
    from securestore import Limits, StoreConfig, open_store

    config = StoreConfig(limits=Limits(max_sessions=MAX_SESSIONS))
    return open_store(url, config, master_key=keys.master_key, signing_key=keys.signing_key, environ={})


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0][:200]}"


def create_one(store: Any, key: str, i: int) -> None:
    with store.create_session(key) as session:
        session.append_items([item(i)])


class SecureStorePg(PgSystem):
    name = "securestore (postgres)"
    prefix = "securestore"
    durability = ("audit-before-act as one transaction per change: the intent, the act (in a savepoint) and the "
                  "outcome commit together, one WAL flush; the session's listing follows in its own asynchronous "
                  "transaction")
    mappings = {  # as bench/systems.py maps the filesystem store
        **{w: m for w, m in SecureStoreSystem.mappings.items() if w in PG_WRITES + (READ50,)},
        CREATE_EMPTY: "create_session(key) + append_items([item]) + close (fresh database + store per round)",
        LIST_MID: SecureStoreSystem.mappings["list50"], LIST_BIG: SecureStoreSystem.mappings["list50"],
    }
    open = staticmethod(open_pg_store)
    setup = staticmethod(setup_pg_store)
    close_store = staticmethod(lambda store: store.close())
    create = staticmethod(create_one)
    read = staticmethod(lambda store: store.read_items("read-1000", READ_LIMIT))
    first_page = staticmethod(lambda store: store.list_sessions(page_size=READ_LIMIT))
    cap: int | None = None  # --securestore-cap: at most this many sessions per store built via the API

    @staticmethod
    def writer(store: Any, key: str, per_op: int) -> Writer:
        session = store.create_session(key)
        session.append_items([item(0)])
        if per_op == 1:
            return (lambda i: session.append_items([item(i)])), session.close

        def turn(i: int) -> None:
            with session.turn():
                for it in items(i * per_op, per_op):
                    session.append_items([it])

        return turn, session.close

    def build(self, base: Path, n_sessions: int) -> None:
        files = make_keys(base)
        self.keys = PgKeys(Path(files.signing_key_file).read_text().strip(),
                           Path(files.master_key_file).read_text().strip())
        try:
            super().build(base, n_sessions)
        except Exception as error:  # the backend is missing or broken: reported, the others run
            raise Unavailable(f"a postgresql:// store failed: {one_line(error)}") from error

    def fill(self, url: str, n_sessions: int, with_reader: bool) -> None:
        """Through the public API, one durable create at a time (timed, and capped by --securestore-cap)."""
        built, t0, store = min(n_sessions, self.cap or n_sessions), time.perf_counter(), self.open(url, self.keys)
        for k in range(built):
            create_one(store, f"s-{k:06d}", k)
            if (k + 1) % max(1, built // 10) == 0:
                log_stderr(f"securestore: {k + 1:,} of {built:,} sessions in {time.perf_counter() - t0:.0f} s")
        self.notes.append(f"{'big' if with_reader else 'mid'} store: {built:,} sessions created through the "
                          f"public API in {time.perf_counter() - t0:.1f} s")
        if built < n_sessions:
            self.skipped |= {LIST_BIG, CREATE_BIG} if with_reader else {LIST_MID}
            self.notes.append(f"capped at {built:,} of {n_sessions:,} sessions (--securestore-cap): that store's "
                              "list (and create) figures are not measured")
        if with_reader:
            with store.create_session("read-1000") as session:
                for start in range(0, READ_SESSION_ITEMS, 100):
                    with session.turn():
                        session.append_items(items(start, 100))
            if store.read_items("read-1000") != items(0, READ_SESSION_ITEMS):
                raise SystemExit("bench_pg: the corpus was altered by securestore (redaction?); fix corpus.py")
        store.close()

SYSTEMS: dict[str, type[PgSystem]] = {c.name: c for c in (PlainPsycopg, LangGraphPostgresSaver, SecureStorePg)}

