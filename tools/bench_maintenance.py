"""Maintenance over many sessions: a warn run, then an enforce run.

    python3 tools/bench_maintenance.py [--sessions 10000] [--dir PATH]

Half the sessions are made 40 days old (through the store's clock), so enforce evicts half.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _store import new_store  # noqa: E402

DAY_MS = 86_400_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    bench = new_store(args.dir)
    now = time.time_ns() // 1_000_000
    clock = {"now": now}
    with bench.open(clock=lambda: clock["now"]) as store:
        start = time.perf_counter()
        for i in range(args.sessions):
            clock["now"] = now - (40 * DAY_MS if i % 2 else 0)
            with store.create_session(f"agent/run-{i:06d}") as session:
                session.append_items([{"role": "user", "content": f"hello {i}"}])
        print(f"created {args.sessions} sessions in {time.perf_counter() - start:.0f} s")
        clock["now"] = now
        t0 = time.perf_counter()
        warned = store.maintain(now_ms=now)
        t1 = time.perf_counter()
        done = store.maintain(enforce=True, now_ms=now)
        t2 = time.perf_counter()
    print(f"warn over {warned.sessions_before} sessions: {t1 - t0:.2f} s, would evict {len(warned.evictions)}")
    print(f"enforce: {t2 - t1:.1f} s, evicted {len(done.evictions)} sessions "
          f"({(t2 - t1) / max(1, len(done.evictions)) * 1000:.1f} ms per audited, shredding delete), "
          f"{done.sessions_before} -> {done.sessions_after} sessions, {done.bytes_before} -> {done.bytes_after} bytes")


if __name__ == "__main__":
    main()
