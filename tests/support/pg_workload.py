"""The writer processes of the PostgreSQL fault tests (tests/postgres/test_faults.py), and the
test's side of them: starting them, watching their acknowledgements, and checking what a store
holds against what they acknowledged.

Run as a script (not collected by pytest):

    pg_workload.py URL WORKER ROUND SEED ACKS [MIX]

opens the store at URL, then its own sessions `w<WORKER>-s0` .. `-s2` (made if missing; held,
with their writer locks, for the process's life), prints "ready", and writes until it is killed
or a write fails. Each write is chosen by a random generator seeded with (SEED, WORKER, ROUND):
an append of one item, a turn (two items and the "turn" slot), a put of the "state" slot, a
create of a new session holding one item, or a delete of a session it created (MIX "sessions":
only the first three, which never take the store lock). Before a write
it appends a "try" line to the file ACKS; once the call RETURNED, a "done" line, fsynced before
anything else happens: every "done" line is an acknowledged write. A write that raises ends the
loop with an "error" line (the exception's class and message); the store is closed (a "close"
line if closing raised too) and the process exits with 3.

Every item and slot value carries the id of the write that made it (`<worker>.<round>.<n>`),
so `expected_state`/`check_store` can tell an acknowledged write from one in flight at a kill.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repository root, for `tests`

import psycopg  # noqa: E402

from securestore import SecureStore, StoreConfig  # noqa: E402
from securestore.core.policy import encode_name  # noqa: E402
from securestore.errors import SecureStoreError  # noqa: E402
from tests.support.keys import KEYS, MASTER_KEY  # noqa: E402

OWN_SESSIONS = 3  # sessions each worker holds open for its whole life
ERROR_EXIT = 3
WORKLOAD = str(Path(__file__).resolve())
# op -> weight: most writes are appends, as in an agent's session
_OPS = (("append", 5), ("turn", 2), ("put", 2), ("create", 1), ("delete", 1))
MIXES = {"all": _OPS, "sessions": _OPS[:3]}


def own_sessions(worker: int) -> list[str]:
    return [f"w{worker}-s{k}" for k in range(OWN_SESSIONS)]


# -- the worker process --------------------------------------------------------------------------
class AckLog:
    """The worker's record: a line per event, "done" lines fsynced before the worker goes on."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, record: dict[str, Any], *, sync: bool) -> None:
        os.write(self.fd, json.dumps(record).encode() + b"\n")
        if sync:
            os.fsync(self.fd)


def _one_write(store: SecureStore, sessions: dict[str, Any], created: list[str], rng: random.Random,
               ident: str, acks: AckLog, mix: str) -> None:
    op = rng.choices([name for name, _ in MIXES[mix]], weights=[weight for _, weight in MIXES[mix]])[0]
    if op == "delete" and not created:
        op = "create"
    name = rng.choice(sorted(sessions))
    if op == "create":
        name = f"c{ident}"
    elif op == "delete":
        name = created.pop(rng.randrange(len(created)))
    record = {"op": op, "s": name, "id": ident}
    acks.write({"t": "try", **record}, sync=False)
    if op == "append":
        sessions[name].append_items([{"id": ident}])
    elif op == "turn":
        with sessions[name].turn():
            sessions[name].append_items([{"id": f"{ident}.0"}, {"id": f"{ident}.1"}])
            sessions[name].slot("turn").put({"id": ident})
    elif op == "put":
        sessions[name].slot("state").put({"id": ident})
    elif op == "create":
        with store.create_session(name, metadata={"title": ident}) as session:
            session.append_items([{"id": ident}])
        created.append(name)
    else:
        store.delete_session(name)
    acks.write({"t": "done", **record}, sync=True)


def main() -> None:
    url, worker, round_, seed, ack_path = sys.argv[1:6]
    mix = sys.argv[6] if len(sys.argv) > 6 else "all"
    acks = AckLog(ack_path)
    rng = random.Random(f"{seed}/{worker}/{round_}")
    store = SecureStore(url, StoreConfig(lock_timeout_seconds=30), master_key=MASTER_KEY, environ=KEYS)
    try:
        sessions = {name: store.open_session(name, create=True) for name in own_sessions(int(worker))}
        print("ready", flush=True)
        created: list[str] = []
        n = 0
        while True:
            _one_write(store, sessions, created, rng, f"{worker}.{round_}.{n}", acks, mix)
            n += 1
    except Exception as exc:  # noqa: BLE001 - the test judges the class
        acks.write({"t": "error", "class": _class_name(exc), "ours": isinstance(exc, SecureStoreError),
                    "message": str(exc)}, sync=True)
    try:
        store.close()
    except Exception as exc:  # noqa: BLE001
        acks.write({"t": "close", "class": _class_name(exc), "ours": isinstance(exc, SecureStoreError),
                    "message": str(exc)}, sync=True)
    sys.stdout.flush()
    os._exit(ERROR_EXIT)


def _class_name(exc: BaseException) -> str:
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


# -- the test's side -----------------------------------------------------------------------------
@dataclass
class Worker:
    number: int
    round: int
    acks: Path
    process: subprocess.Popen[str]

    def records(self) -> list[dict[str, Any]]:
        if not self.acks.exists():
            return []
        lines = self.acks.read_bytes().split(b"\n")
        return [json.loads(line) for line in lines[:-1]]  # the last is empty, or torn by a kill

    def done(self) -> int:
        return sum(1 for record in self.records() if record["t"] == "done")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=60)
        self.close()

    def close(self) -> None:
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def start_workers(url: str, round_: int, count: int, seed: int, directory: Path, env: dict[str, str], *,
                  mix: str = "all", timeout: float = 120.0) -> list[Worker]:
    """`count` writer processes, each past its "ready" (its sessions open, their locks held)."""
    workers = []
    for number in range(count):
        acks = directory / f"acks-w{number}-r{round_}.jsonl"
        process = subprocess.Popen([sys.executable, WORKLOAD, url, str(number), str(round_), str(seed), str(acks),
                                    mix],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        workers.append(Worker(number, round_, acks, process))
    deadline = time.monotonic() + timeout
    for worker in workers:
        assert worker.process.stdout is not None
        ready, _, _ = select.select([worker.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = worker.process.stdout.readline() if ready else ""
        if line.strip() != "ready":
            for other in workers:
                other.process.kill()
            _, err = worker.process.communicate(timeout=60)
            raise AssertionError(f"worker {worker.number} of round {round_} did not start: {line!r} {err[-2000:]}")
    return workers


def wait_for_acks(worker: Worker, count: int, timeout: float = 120.0) -> None:
    """Until `worker` acknowledged `count` writes (polling its file); it must not stop meanwhile."""
    deadline = time.monotonic() + timeout
    while worker.done() < count:
        if worker.process.poll() is not None:
            raise AssertionError(f"worker {worker.number} stopped on its own: {worker.records()[-1:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"worker {worker.number}: {worker.done()} of {count} writes in {timeout} s")
        time.sleep(0.01)


# Every file row of the sessions' data, locked FOR UPDATE (the audit trail's rows, and their
# directory's epoch key, are left free): a write whose intent is already committed then waits
# inside its act, on the row it changes.
_PIN = """
WITH RECURSIVE t(id, kind, audit, parent_name) AS (
    SELECT id, kind, audit, ''::text FROM securestore.nodes WHERE parent = 0 AND name = 'sessions'
  UNION ALL
    SELECT c.id, c.kind, c.audit, t_name.name FROM securestore.nodes c JOIN t ON c.parent = t.id
    JOIN securestore.nodes t_name ON t_name.id = t.id)
SELECT n.id FROM securestore.nodes n JOIN t ON t.id = n.id
WHERE t.kind = 'f' AND NOT t.audit AND t.parent_name <> 'audit' FOR UPDATE OF n
"""
_WAITING = ("SELECT count(DISTINCT split_part(application_name, ' ', 3)) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND split_part(application_name, ' ', 3) = ANY(%s)")


def pin_acts(url: str) -> psycopg.Connection[Any]:
    """A transaction holding every data row of the sessions (roll it back to let go)."""
    connection = psycopg.connect(url)
    connection.execute(_PIN)
    return connection


def wait_until_pinned(connection: psycopg.Connection[Any], workers: list[Worker], timeout: float = 120.0) -> None:
    """Until every worker's connection waits on a row lock (polling the server's own view)."""
    pids = [str(worker.process.pid) for worker in workers]
    deadline = time.monotonic() + timeout
    with psycopg.connect(connection.info.dsn, autocommit=True) as watcher:
        while True:
            row = watcher.execute(_WAITING, (pids,)).fetchone()
            if row is not None and row[0] == len(pids):
                return
            for worker in workers:
                if worker.process.poll() is not None:
                    raise AssertionError(f"worker {worker.number} stopped on its own: {worker.records()[-1:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"{row} of {len(pids)} writers waiting on a pinned row after {timeout} s")
            time.sleep(0.01)


@dataclass
class Expected:
    """What the acknowledgements say a store must hold, and what a write in flight may add."""

    items: dict[str, set[str]] = field(default_factory=dict)  # session that must exist -> its acknowledged items
    maybe_items: set[str] = field(default_factory=set)  # ids of writes in flight at a kill or a crash
    slots: dict[tuple[str, str], set[str | None]] = field(default_factory=dict)  # the values allowed (ids)
    absent: set[str] = field(default_factory=set)  # sessions that must not exist
    acknowledged: int = 0
    in_flight: int = 0


def expected_state(records_per_worker: Iterable[list[dict[str, Any]]], own: Iterable[str]) -> Expected:
    """Fold every worker's records, each file in the order it was written (give a worker's
    rounds in order; workers touch disjoint sessions, so their order does not matter)."""
    out = Expected(items={name: set() for name in own})
    for records in records_per_worker:
        pending: dict[str, Any] | None = None
        for record in records:
            if record["t"] == "try":
                pending = record
            elif record["t"] == "done":
                assert pending is not None and pending["id"] == record["id"], f"a done without its try: {record}"
                _apply(out, record, acknowledged=True)
                pending = None
        if pending is not None:
            _apply(out, pending, acknowledged=False)
    return out


def _apply(out: Expected, record: dict[str, Any], *, acknowledged: bool) -> None:
    op, name, ident = record["op"], record["s"], record["id"]
    out.acknowledged += acknowledged
    out.in_flight += not acknowledged
    ids = [f"{ident}.0", f"{ident}.1"] if op == "turn" else [ident]
    if not acknowledged:
        out.maybe_items.update(ids)
    if op == "create":
        if acknowledged:
            out.items[name] = set(ids)
    elif op == "delete":
        out.items.pop(name)  # a delete in flight may or may not have happened: neither is checked
        if acknowledged:
            out.absent.add(name)
    else:
        if acknowledged and op != "put":
            out.items[name].update(ids)
        allowed = out.slots.setdefault((name, "turn" if op == "turn" else "state"), {None})
        if op in ("turn", "put"):
            if acknowledged:
                allowed.clear()
            allowed.add(ident)


def check_store(store: SecureStore, expected: Expected) -> int:
    """Every acknowledged write is there; nothing is there that no writer tried. Returns the
    number of items read."""
    seen = 0
    for name in sorted(expected.absent):
        assert not store.session_exists(encode_name(name)), f"{name} exists after its acknowledged delete"
    for name, acked in sorted(expected.items.items()):
        assert store.session_exists(encode_name(name)), f"{name} is missing after its acknowledged create"
        ids = [item["id"] for item in store.read_items(name)]
        seen += len(ids)
        assert len(ids) == len(set(ids)), f"{name}: an item twice"
        lost = acked - set(ids)
        assert not lost, f"{name}: acknowledged items lost: {sorted(lost)[:5]}"
        phantom = set(ids) - acked - expected.maybe_items
        assert not phantom, f"{name}: items no writer tried: {sorted(phantom)[:5]}"
    for (name, slot), allowed in sorted(expected.slots.items()):
        value = store.get(name, slot)
        got = None if value is None else value["id"]
        assert got in allowed, f"{name} slot {slot}: {got}, expected one of {sorted(map(str, allowed))}"
    return seen


if __name__ == "__main__":
    main()
