"""securestore as stores and sessions grow (`--scaling`), printed as Markdown for the README.

Sessions: one store grown through the API (each session an audited create plus one item) to
each N; at N: the create rate over the next CREATE_PROBE creates, the median latency of
list_sessions(page_size=50), and one maintain() in warn mode (writes nothing).
Items: one session grown by turns of 1,000 items to each N; at N: the median latency of a
durable one-item append, a turn of 16 items, read_items(latest 50), and open_session + close
of the big session (reopen)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .corpus import item, items
from .systems import TURN_ITEMS, make_keys, new_securestore

STEPS = (1_000, 10_000, 100_000)
CREATE_PROBE = 100
GROW_TURN = 1_000


def _median_ms(fn: Callable[[int], object], n: int) -> float:
    samples = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e3


def _create(store: Any, key: str, i: int) -> None:
    with store.create_session(key) as session:
        session.append_items([item(i)])


def sessions(base: Path, steps: list[int], log: Callable[[str], None]) -> list[dict[str, Any]]:
    keys = make_keys(base)
    store = new_securestore(base / "sessions-store", keys, max_sessions=max(steps) + CREATE_PROBE * len(steps) + 100)
    rows = []
    made = 0
    try:
        for n in steps:
            t0 = time.perf_counter()
            while made < n:
                _create(store, f"grow-{made:07d}", made)
                made += 1
            log(f"scaling: {n:,} sessions (grew in {time.perf_counter() - t0:.0f} s)")
            t0 = time.perf_counter()
            for i in range(CREATE_PROBE):
                _create(store, f"probe-{n}-{i:04d}", i)
            rate = CREATE_PROBE / (time.perf_counter() - t0)
            list_ms = _median_ms(lambda i: store.list_sessions(page_size=50), 20)
            t0 = time.perf_counter()
            report = store.maintain()
            maintain_s = time.perf_counter() - t0
            rows.append({"sessions": n, "create_per_s": rate, "list50_ms": list_ms, "maintain_warn_s": maintain_s,
                         "maintain_sessions_seen": report.sessions_before, "probe_creates": CREATE_PROBE})
    finally:
        store.close()
    return rows


def session_items(base: Path, steps: list[int], log: Callable[[str], None]) -> list[dict[str, Any]]:
    keys = make_keys(base)
    extra = 200 + 16 * 20 * len(steps)
    store = new_securestore(base / "items-store", keys, max_items=max(steps) + extra)
    rows = []
    held = 0
    key = "long-session"
    session = store.create_session(key)
    try:
        for n in steps:
            t0 = time.perf_counter()
            while held < n:
                count = min(GROW_TURN, n - held)
                with session.turn():
                    session.append_items(items(held, count))
                held += count
            log(f"scaling: {n:,} items in one session (grew in {time.perf_counter() - t0:.0f} s)")
            append_ms = _median_ms(lambda i: session.append_items([item(i)]), 30)

            def turn(i: int) -> None:
                with session.turn():
                    for it in items(i * TURN_ITEMS, TURN_ITEMS):
                        session.append_items([it])

            turn_ms = _median_ms(turn, 10)
            held += 30 + 10 * TURN_ITEMS
            tail_ms = _median_ms(lambda i: store.read_items(key, 50), 20)
            session.close()

            def reopen(i: int) -> None:
                store.open_session(key).close()

            reopen_ms = _median_ms(reopen, 5)
            session = store.open_session(key)
            rows.append({"items": n, "append_ms": append_ms, "turn16_ms": turn_ms, "tail50_ms": tail_ms,
                         "reopen_ms": reopen_ms})
    finally:
        session.close()
        store.close()
    return rows


def markdown(session_rows: list[dict[str, Any]], item_rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| sessions in store | create + 1 item (sessions/s) | list 50 most recent (ms) | maintain, warn (s) |",
             "|---:|---:|---:|---:|"]
    for r in session_rows:
        lines.append(f"| {r['sessions']:,} | {r['create_per_s']:,.0f} | {r['list50_ms']:.2f} | "
                     f"{r['maintain_warn_s']:.2f} |")
    lines += ["", "| items in session | append 1 item (ms) | turn of 16 (ms) | latest 50 (ms) | reopen (ms) |",
              "|---:|---:|---:|---:|---:|"]
    for r in item_rows:
        lines.append(f"| {r['items']:,} | {r['append_ms']:.2f} | {r['turn16_ms']:.2f} | {r['tail50_ms']:.2f} | "
                     f"{r['reopen_ms']:.2f} |")
    return lines
