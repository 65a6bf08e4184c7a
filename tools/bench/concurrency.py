"""Throughput of durable single-item appends with W writers, each on its own session.

securestore: one store, each writer its own session (threads share one store handle; each
process opens the store itself). SQLite synchronous=FULL: each writer its own database file,
so SQLite's single-writer lock is not what is measured (the fairest case for SQLite). The fsync
floor: each writer write(500 bytes)+fsync on its own file. All workers set up first, then start
together on a barrier; throughput = all appends / (last finish - common start). Each round runs
the configurations and the systems in a rotated order."""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .corpus import item
from .systems import RawSqlite, StoreKeys, make_keys, new_securestore, open_securestore

SYSTEMS = ("securestore", "sqlite WAL sync=FULL", "fsync floor")
# Appends per writer = ops x this, so that each measurement spans a similar wall time (a fast
# system given securestore's count would finish in a few ms, inside scheduling noise).
OPS_FACTOR = {"securestore": 1, "sqlite WAL sync=FULL": 4, "fsync floor": 8}
CONFIGS: tuple[tuple[str, int], ...] = (("thread", 1), ("thread", 4), ("thread", 8),
                                        ("process", 1), ("process", 2), ("process", 4))
Appender = tuple[Callable[[int], object], Callable[[], None]]


def make_appender(system: str, base: Path, tag: str, shared_store: Any = None) -> Appender:
    if system == "securestore":
        store = shared_store
        if store is None:
            store = open_securestore(base / "store", StoreKeys(str(base / "signing.key"), str(base / "master.key")))
        session = store.create_session(tag)
        session.append_items([item(0)])

        def close_session() -> None:
            session.close()
            if shared_store is None:
                store.close()

        return (lambda i: session.append_items([item(i)])), close_session
    if system == "sqlite WAL sync=FULL":
        sqlite = RawSqlite("FULL")
        conn = sqlite.connect(base / f"{tag}.db")
        sqlite._create(conn, tag, item(0))
        return (lambda i: sqlite._append(conn, tag, [item(i)])), conn.close
    fd = os.open(base / f"{tag}.bin", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    payload = b"x" * 500

    def floor(i: int) -> None:
        os.write(fd, payload)
        os.fsync(fd)

    return floor, lambda: os.close(fd)


def _work(appender: Appender, ops: int, start: Any) -> float:
    append, close = appender
    try:
        start.wait()
        for i in range(ops):
            append(i)
        return time.monotonic()  # CLOCK_MONOTONIC: comparable across processes on one machine
    finally:
        close()


def _process_main(system: str, base: str, tag: str, ops: int, start: Any, results: Any) -> None:
    results.put(_work(make_appender(system, Path(base), tag), ops, start))


def run_threads(system: str, base: Path, tag: str, writers: int, ops: int, store: Any) -> float:
    start = threading.Barrier(writers + 1)
    ends: list[float] = []
    appenders = [make_appender(system, base, f"{tag}-w{w}", store) for w in range(writers)]
    threads = [threading.Thread(target=lambda a=a: ends.append(_work(a, ops, start))) for a in appenders]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.monotonic()
    for t in threads:
        t.join()
    if len(ends) != writers:
        raise RuntimeError(f"concurrency: {writers - len(ends)} {system} thread(s) failed; see the traceback above")
    return writers * ops / (max(ends) - t0)


def run_processes(system: str, base: Path, tag: str, writers: int, ops: int) -> float:
    ctx = multiprocessing.get_context("spawn")  # a clean interpreter each: no inherited locks or fds
    start = ctx.Barrier(writers + 1)
    results = ctx.Queue()
    procs = [ctx.Process(target=_process_main, args=(system, str(base), f"{tag}-p{w}", ops, start, results))
             for w in range(writers)]
    for p in procs:
        p.start()
    start.wait(timeout=120)
    t0 = time.monotonic()
    ends: list[float] = [float(results.get(timeout=600)) for _ in procs]
    for p in procs:
        p.join()
    return writers * ops / (max(ends) - t0)


def run(base: Path, rounds: int, ops: int, log: Callable[[str], None]) -> dict[str, Any]:
    keys = make_keys(base)
    store = new_securestore(base / "store", keys)
    throughput: dict[str, dict[str, list[float]]] = {s: {} for s in SYSTEMS}
    try:
        for rnd in range(rounds):
            log(f"concurrency round {rnd + 1}/{rounds}")
            shift = rnd % len(CONFIGS)  # rotated each round, so drift does not land on one config
            for kind, writers in CONFIGS[shift:] + CONFIGS[:shift]:
                for system in SYSTEMS[rnd % len(SYSTEMS):] + SYSTEMS[:rnd % len(SYSTEMS)]:
                    tag = f"r{rnd}-{kind}{writers}"
                    count = ops * OPS_FACTOR[system]
                    if kind == "thread":
                        rate = run_threads(system, base, tag, writers, count,
                                           store if system == "securestore" else None)
                    else:
                        rate = run_processes(system, base, tag, writers, count)
                    throughput[system].setdefault(f"{kind}:{writers}", []).append(rate)
    finally:
        store.close()
    return {"ops_per_writer": {s: ops * OPS_FACTOR[s] for s in SYSTEMS}, "rounds": rounds,
            "appends_per_s": {s: {c: statistics.median(v) for c, v in per.items()} for s, per in throughput.items()},
            "samples": throughput}


def table(result: dict[str, Any]) -> list[str]:
    rates: dict[str, dict[str, float]] = result["appends_per_s"]
    lines = [f"  {'writers':<12}" + "".join(f"  {s:>22}  {'x vs 1':>6}" for s in SYSTEMS)]
    for kind, writers in CONFIGS:
        key = f"{kind}:{writers}"
        row = f"  {writers} {kind + ('es' if kind == 'process' and writers > 1 else 's' if writers > 1 else ''):<10}"
        for s in SYSTEMS:
            rate = rates[s][key]
            one = rates[s][f"{kind}:1"]
            row += f"  {rate:>16,.0f} ops/s  {rate / one:>6.2f}"
        lines.append(row)
    return lines
