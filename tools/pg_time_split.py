"""Where a durable append's time goes, securestore on PostgreSQL against plain psycopg (issue 13).

    PYTHONPATH=<tree>/tools:<tree> python3 tools/pg_time_split.py [--rounds R] [--ops N]

One throwaway durable PostgreSQL server (tests/support/postgres.py), one database per system,
the items of bench/corpus.py. Each append is split into the time the client spends waiting on
the server (inside psycopg's `Connection.wait`: the round trips, the server's work and its WAL
flush) and the rest (the client's own CPU: building records, dumping parameters, loading
answers). Rounds alternate between the systems (round 0 discarded); medians of per-round medians.
The point of the split: the waiting part alone, against plain psycopg's whole append, is a floor
that no client-side speed-up can go below.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg

from bench.corpus import item
from bench.pg_systems import Cluster, PgKeys, PlainPsycopg, PlainStore, open_pg_store, setup_pg_store
from bench.systems import make_keys

TREE = Path(__file__).resolve().parent.parent
try:
    from tests.support.postgres import make_server, remove_server
except ImportError:  # run without the tree on PYTHONPATH
    sys.path.append(str(TREE))
    from tests.support.postgres import make_server, remove_server

_waited = {"seconds": 0.0, "waits": 0}


@contextmanager
def timed_waits() -> Iterator[None]:
    """Count the time spent in psycopg's `Connection.wait` (every round trip of both systems)."""
    original = psycopg.Connection.wait

    def wait(self: Any, gen: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(self, gen, *args, **kwargs)
        finally:
            _waited["seconds"] += time.perf_counter() - started
            _waited["waits"] += 1

    psycopg.Connection.wait = wait  # type: ignore[method-assign]
    try:
        yield
    finally:
        psycopg.Connection.wait = original  # type: ignore[method-assign]


def measure(append: Callable[[int], None], ops: int, start: int) -> tuple[float, float, float]:
    """(whole, waiting, round trips) per append, medians over `ops` appends (µs, µs, count)."""
    whole, waiting, trips = [], [], []
    for i in range(start, start + ops):
        _waited["seconds"], _waited["waits"] = 0.0, 0
        began = time.perf_counter()
        append(i)
        whole.append(time.perf_counter() - began)
        waiting.append(_waited["seconds"])
        trips.append(_waited["waits"])
    return statistics.median(whole) * 1e6, statistics.median(waiting) * 1e6, statistics.median(trips)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="kept rounds (default 20)")
    parser.add_argument("--ops", type=int, default=30, help="appends per system and round (default 30)")
    args = parser.parse_args()
    server = make_server(durable=True)
    try:
        cluster = Cluster(server.port)
        base = Path(tempfile.mkdtemp(prefix="securestore-split-"))
        files = make_keys(base)
        keys = PgKeys(Path(files.signing_key_file).read_text().strip(), Path(files.master_key_file).read_text().strip())
        plain_url, ours_url = cluster.create_db("split_plain"), cluster.create_db("split_securestore")
        PlainPsycopg.setup(plain_url, keys, base / "plain.seed")
        setup_pg_store(ours_url, keys, base / "securestore.seed")
        plain, store = PlainStore(plain_url), open_pg_store(ours_url, keys)
        session = store.create_session("split")
        session.append_items([item(0)])
        plain.create("split", item(0))
        systems: dict[str, Callable[[int], None]] = {
            "plain psycopg": lambda i: plain.append("split", [item(i)]),
            "securestore (postgres)": lambda i: session.append_items([item(i)]),
        }
        rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in systems}
        with timed_waits():
            for round_no in range(args.rounds + 1):
                for name, append in systems.items():
                    measured = measure(append, args.ops, 1 + round_no * args.ops)
                    if round_no:
                        rows[name].append(measured)
        session.close()
        store.close()
        plain.conn.close()
    finally:
        remove_server(server)
    plain_whole = statistics.median(row[0] for row in rows["plain psycopg"])
    print(f"Durable append of one item, medians of {args.rounds} rounds x {args.ops} appends (µs):\n")
    print("| system | whole append | waiting on the server | the client's own | round trips | waiting / plain's whole |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, figures in rows.items():
        whole = statistics.median(row[0] for row in figures)
        waiting = statistics.median(row[1] for row in figures)
        trips = statistics.median(row[2] for row in figures)
        print(f"| {name} | {whole:,.0f} | {waiting:,.0f} | {whole - waiting:,.0f} | {trips:.0f} | "
              f"{waiting / plain_whole:.2f} |")


if __name__ == "__main__":
    main()
