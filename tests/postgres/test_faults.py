"""Faults with a real, durable PostgreSQL (fsync=on, synchronous_commit=on): writer processes
killed with SIGKILL mid-workload, and the server itself stopped with `pg_ctl stop -m immediate`
(its crash: no shutdown checkpoint, WAL recovery on the next start) while they write.

Each writer (tests/support/pg_workload.py) records every write that returned, fsynced, before
it goes on. After each round: every acknowledged write is in the store, nothing is there that
no writer tried, a killed writer's session locks are free at once (they died with its
connection), the auditor sees no tampering before any writer reopened, a write cut inside its
act left nothing at all (its intent, act and outcome are one transaction: not even a dangling
intent), the next open settles anything left in flight, and `audit verify --seed` passes.
Figures for the note: `python -m pytest -q -s -n 0 -p no:cacheprovider tests/postgres/test_faults.py`
prints a `[pg-faults]` line per test."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from securestore import SecureStore, StoreConfig, verify_store
from securestore.api.verify import VerifyOptions
from securestore.audit.keys import parse_seed
from tests.support.keys import KEYS, MASTER_KEY, SIGNING
from tests.support.pg_stores import set_up_database
from tests.support.pg_workload import (
    ERROR_EXIT,
    Worker,
    check_store,
    expected_state,
    own_sessions,
    pin_acts,
    start_workers,
    wait_for_acks,
    wait_until_pinned,
)
from tests.support.postgres import PostgresServer, make_server, remove_server
from tests.support.stores import child_env, make_pg_store, run_cli, seed_path

pytestmark = pytest.mark.crash  # real processes killed, a real server crashed: outside the fast loop

SEED = 1305
WORKERS = 4
KILL_ROUNDS = 3
CRASH_ROUNDS = 2
# A killed writer's lock is free once the server has seen its connection close (milliseconds);
# the bound only keeps a broken build from hanging. There is no stale-lock takeover to wait for.
LOCK_WAIT_S = 10.0


@dataclass
class Figures:
    name: str
    started: float = field(default_factory=time.monotonic)
    rounds: int = 0
    kills: int = 0
    server_crashes: int = 0
    acknowledged: int = 0
    in_flight: int = 0
    dangling_seen: int = 0
    items_read: int = 0
    lock_free_after_ms: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)

    def show(self) -> None:
        print(f"\n[pg-faults] {self.name}: {self.rounds} rounds, {self.kills} writers killed, "
              f"{self.server_crashes} server crashes, {self.acknowledged} acknowledged writes (all present), "
              f"{self.in_flight} in flight, {self.dangling_seen} dangling intents seen before reopening (all "
              f"settled), {self.items_read} items read back, slowest lock free after a kill "
              f"{self.lock_free_after_ms:.0f} ms, errors {self.errors}, {time.monotonic() - self.started:.1f} s")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    started = make_server(durable=True)  # fsync=on, synchronous_commit=on, full_page_writes=on
    try:
        yield started
    finally:
        remove_server(started)


@pytest.fixture
def spawned() -> Iterator[list[Worker]]:
    """Every writer a test starts: any still running when it ends (a failed test) is killed."""
    workers: list[Worker] = []
    yield workers
    for worker in workers:
        worker.kill()  # a no-op signal for one that already exited


@pytest.fixture
def store_url(server: PostgresServer, tmp_path: Path) -> str:
    return make_pg_store(set_up_database(server), tmp_path)


def _options(url: str) -> VerifyOptions:
    return VerifyOptions(seed=parse_seed(seed_path(url).read_bytes())[1], public_key=SIGNING.verifier)


def audit_before_any_writer(url: str, where: str) -> int:
    """The auditor right after the fault, before any writer reopened: the old or the new state,
    or a change in flight (a dangling intent), never tampering or truncation. Returns the
    number of dangling intents."""
    with SecureStore(url, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store, options=_options(url))
    first = report.failures[0].describe() if report.failures else ""
    assert report.exit_code in (0, 6), f"{where}: exit {report.exit_code}: {first}"
    assert all(f.check == "dangling-intent" for f in report.incomplete), \
        f"{where}: {[f.describe() for f in report.incomplete]}"
    return len(report.incomplete)


def reopen_and_check(url: str, history: dict[int, list[list[dict[str, Any]]]], figures: Figures, where: str) -> None:
    """A new writer opens every session of the writers that died (their locks are free at once,
    and opening settles their dangling intents), the next store writer settles the store log;
    then every acknowledged write is there and the store verifies with the seed."""
    with SecureStore(url, StoreConfig(lock_timeout_seconds=LOCK_WAIT_S), master_key=MASTER_KEY,
                     environ=KEYS) as store:
        for number in history:
            for name in own_sessions(number):
                began = time.monotonic()
                store.open_session(name).close()
                figures.lock_free_after_ms = max(figures.lock_free_after_ms, (time.monotonic() - began) * 1000)
        store.seal()  # a store writer: reconciles the store log (a create or delete cut by the fault)
        report = verify_store(store, options=_options(url))
        problems = [f.describe() for f in report.failures + report.incomplete]
        assert report.ok, f"{where}: exit {report.exit_code}: {problems}"
        expected = expected_state((records for rounds in history.values() for records in rounds),
                                  [name for number in history for name in own_sessions(number)])
        figures.items_read = check_store(store, expected)
    figures.acknowledged, figures.in_flight = expected.acknowledged, expected.in_flight


def cli_verifies_with_seed(url: str) -> None:
    done = run_cli("--root", url, "audit", "verify", "--seed", str(seed_path(url)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "MACs checked with the seed" in done.stdout, done.stdout


def _record(history: dict[int, list[list[dict[str, Any]]]], workers: list[Worker]) -> None:
    for worker in workers:
        history.setdefault(worker.number, []).append(worker.records())


def test_sigkilled_writers_lose_no_acknowledged_write_and_leave_no_lock(store_url: str, tmp_path: Path,
                                                                        spawned: list[Worker]) -> None:
    figures = Figures("kill -9 of writers")
    rng = random.Random(SEED)
    env = child_env()
    history: dict[int, list[list[dict[str, Any]]]] = {}
    for round_ in range(KILL_ROUNDS):
        workers = start_workers(store_url, round_, WORKERS, SEED, tmp_path, env)
        spawned.extend(workers)
        for worker in rng.sample(workers, len(workers)):  # one by one, the others writing on meanwhile
            wait_for_acks(worker, rng.randint(2, 10))
            worker.kill()  # lands wherever the writer is: before, inside or after a transaction
            figures.kills += 1
        _record(history, workers)
        figures.dangling_seen += audit_before_any_writer(store_url, f"kill round {round_}")
        reopen_and_check(store_url, history, figures, f"kill round {round_}")
        figures.rounds += 1

    # A last round kills every writer inside an act, its intent already written in the same
    # transaction: the kill takes the intent with the act, so the auditor finds nothing in flight.
    workers = start_workers(store_url, KILL_ROUNDS, WORKERS, SEED, tmp_path, env, mix="sessions")
    spawned.extend(workers)
    for worker in workers:
        wait_for_acks(worker, rng.randint(2, 6))
    pin = pin_acts(store_url)
    try:
        wait_until_pinned(pin, workers)
        for worker in workers:
            worker.kill()
            figures.kills += 1
    finally:
        pin.rollback()
        pin.close()
    _record(history, workers)
    dangling = audit_before_any_writer(store_url, "kill inside the acts")
    assert dangling == 0, f"{dangling} dangling intents after {WORKERS} writers were killed inside an act"
    figures.dangling_seen += dangling
    reopen_and_check(store_url, history, figures, "kill inside the acts")
    figures.rounds += 1
    cli_verifies_with_seed(store_url)
    figures.show()


def test_server_crash_mid_workload_loses_no_acknowledged_write(server: PostgresServer, store_url: str,
                                                               tmp_path: Path, spawned: list[Worker]) -> None:
    figures = Figures("pg_ctl stop -m immediate")
    rng = random.Random(SEED + 1)
    env = child_env()
    history: dict[int, list[list[dict[str, Any]]]] = {}
    for round_ in range(CRASH_ROUNDS):
        inside_acts = round_ == CRASH_ROUNDS - 1  # the last crash finds every writer inside an act
        workers = start_workers(store_url, round_, WORKERS, SEED, tmp_path, env,
                                mix="sessions" if inside_acts else "all")
        spawned.extend(workers)
        for worker in workers:
            wait_for_acks(worker, rng.randint(2, 8))
        pin = pin_acts(store_url) if inside_acts else None
        if pin is not None:
            wait_until_pinned(pin, workers)
        server.stop("immediate")  # every writer is mid-workload: none is told
        figures.server_crashes += 1
        try:
            for worker in workers:
                _ended_in_a_known_error(worker, figures)
        finally:
            if pin is not None:
                pin.close()
            server.start(durable=True)  # WAL recovery
        _record(history, workers)
        dangling = audit_before_any_writer(store_url, f"crash round {round_}")
        assert dangling == 0 or not inside_acts, f"{dangling} dangling intents after a crash inside the acts"
        figures.dangling_seen += dangling
        reopen_and_check(store_url, history, figures, f"crash round {round_}")
        figures.rounds += 1
    cli_verifies_with_seed(store_url)
    figures.show()


def _ended_in_a_known_error(worker: Worker, figures: Figures) -> None:
    """The writer's call in flight raised a securestore error, one line, and the writer exited:
    no hang, no foreign exception, no traceback."""
    try:
        code = worker.process.wait(timeout=60)
    except Exception:
        worker.kill()
        raise AssertionError(f"worker {worker.number} hung after the server crashed: {worker.records()[-2:]}")
    assert worker.process.stderr is not None
    stderr = worker.process.stderr.read()
    worker.close()
    errors = [record for record in worker.records() if record["t"] in ("error", "close")]
    assert code == ERROR_EXIT and errors, f"worker {worker.number}: exit {code}, {stderr[-2000:]}"
    for error in errors:
        assert error["ours"], f"worker {worker.number}: {error['t']} raised {error['class']}: {error['message']}"
        assert "\n" not in error["message"].strip(), error["message"]
        short = error["class"].rsplit(".", 1)[-1]
        figures.errors[short] = figures.errors.get(short, 0) + 1
