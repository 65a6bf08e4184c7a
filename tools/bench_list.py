"""Listing figures: first-page latency at 1k and at N sessions, and an index rebuild at N.

    python3 tools/bench_list.py [--sessions 100000] [--dir PATH]

Sessions are created through the ordinary API (each an audited create plus one item).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _store import new_store  # noqa: E402
from securestore import SecureStore, StoreConfig  # noqa: E402
from securestore.config import Limits  # noqa: E402


def first_page(store: SecureStore, rounds: int = 20) -> str:
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        page = store.list_sessions(page_size=50)
        samples.append((time.perf_counter() - t0) * 1000)
        assert len(page.sessions) == 50
    return f"median {statistics.median(samples):.2f} ms, min {min(samples):.2f} ms over {rounds} listings"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    bench = new_store(args.dir)
    config = StoreConfig(limits=Limits(max_sessions=max(10_000, args.sessions)))
    with bench.open(config) as store:
        start = time.perf_counter()
        for i in range(args.sessions):
            with store.create_session(f"agent/run-{i:06d}", metadata={"workspace": f"ws{i % 10}"}) as session:
                session.append_items([{"role": "user", "content": f"hello {i}"}])
            if i + 1 == 1000:
                print(f"1,000 sessions: first page of 50: {first_page(store)}", flush=True)
        print(f"created {args.sessions} sessions in {time.perf_counter() - start:.0f} s", flush=True)
        print(f"{args.sessions:,} sessions: first page of 50: {first_page(store)}", flush=True)
        t0 = time.perf_counter()
        store.list_sessions(page_size=50, workspace="ws3")
        print(f"{args.sessions:,} sessions: first page of one workspace: {(time.perf_counter() - t0) * 1000:.2f} ms")
        t0 = time.perf_counter()
        count = store.rebuild_index()
        print(f"index rebuild over {count:,} sessions: {time.perf_counter() - t0:.1f} s", flush=True)
        print(f"after rebuild, first page of 50: {first_page(store)}", flush=True)


if __name__ == "__main__":
    main()
