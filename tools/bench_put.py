"""Latency of one durable put (intent fsync, temp file fsync, rename, directory fsync).

    python3 tools/bench_put.py [--puts N] [--dir PATH]

Runs against a real directory (default: a fresh temp dir) so fsync costs are real. Reports
median, p90, p99 and max over N puts to one existing session, plus the fsync count per put.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _store import new_store  # noqa: E402
from securestore.fs import instrumented  # noqa: E402
from securestore.fs.osapi import REAL_OS  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--puts", type=int, default=500)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    bench = new_store(args.dir)
    fsyncs = {"n": 0}

    def count(name: str, _args: tuple[object, ...]) -> None:
        if name == "fsync":
            fsyncs["n"] += 1

    value = {"role": "assistant", "content": "x" * 512, "turn": 0}
    with bench.open(os_api=instrumented(REAL_OS, count)) as store:
        store.put("bench", "slot", value)
        fsyncs["n"] = 0
        samples = []
        for i in range(args.puts):
            value["turn"] = i
            start = time.perf_counter()
            store.put("bench", "slot", value)
            samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    q = lambda p: samples[min(len(samples) - 1, int(p * len(samples)))]  # noqa: E731
    print(f"durable put, {args.puts} puts of a {len(str(value))}-byte value to one session, on {bench.base}")
    print(f"  median {statistics.median(samples):.3f} ms  p90 {q(0.90):.3f} ms  p99 {q(0.99):.3f} ms  "
          f"max {samples[-1]:.3f} ms  ({1000 / statistics.mean(samples):.0f} puts/s)")
    print(f"  fsync calls per put: {fsyncs['n'] / args.puts:.1f}")


if __name__ == "__main__":
    main()
