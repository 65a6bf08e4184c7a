"""Session engine figures.

    python3 tools/bench_session.py [--items 10000] [--dir PATH]

1. reopen time of a session holding --items transcript items (snapshot + journal replay);
2. durable items appended per second, one at a time (each its own journal record);
3. durable items appended per second batched per turn (10 items per turn, one intent per turn,
   snapshot at each turn boundary), on a fresh session and on the --items session.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _store import new_store  # noqa: E402
from securestore import StoreConfig  # noqa: E402


def message(i: int) -> dict[str, object]:
    role = ("user", "assistant", "tool")[i % 3]
    return {"role": role, "content": f"message {i}: " + "lorem ipsum dolor sit amet " * 8, "turn": i // 3}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    bench = new_store(args.dir)
    with bench.open(StoreConfig()) as store:
        with store.create_session("big") as session:
            start = time.perf_counter()
            for i in range(0, args.items, 100):
                with session.turn():
                    session.append_items([message(j) for j in range(i, min(i + 100, args.items))])
            built = time.perf_counter() - start
            session.append_items([message(args.items)])  # one journal record after the snapshot
        samples = []
        for _ in range(15):
            t0 = time.perf_counter()
            with store.open_session("big") as session:
                count = len(session)
            samples.append((time.perf_counter() - t0) * 1000)
        snapshot = (bench.root / "sessions").glob("*/snapshot.json")
        size = max(p.stat().st_size for p in snapshot)
        print(f"reopen of a {count}-item session (snapshot {size / 1e6:.1f} MB + 1 journal record): "
              f"median {statistics.median(samples):.1f} ms, min {min(samples):.1f} ms over {len(samples)} opens "
              f"(built in {built:.1f} s as {args.items // 100} turns of 100)")

        with store.create_session("one-by-one") as session:
            n = 500
            t0 = time.perf_counter()
            for i in range(n):
                session.append_items([message(i)])
            elapsed = time.perf_counter() - t0
        print(f"one at a time: {n / elapsed:.0f} durable items/s ({elapsed / n * 1000:.2f} ms per append, "
              f"fresh session, snapshot every 1000 records)")

        for label, name, turns in (("fresh session", "turns", 100), (f"{args.items}-item session", "big", 20)):
            with store.open_session(name, create=True) as session:
                t0 = time.perf_counter()
                for t in range(turns):
                    with session.turn():
                        session.append_items([message(t * 10 + j) for j in range(10)])
                elapsed = time.perf_counter() - t0
            print(f"batched per turn ({label}): {turns * 10 / elapsed:.0f} durable items/s "
                  f"({elapsed / turns * 1000:.2f} ms per 10-item turn incl. its snapshot)")


if __name__ == "__main__":
    main()
