"""securestore's PostgreSQL backend side by side with what users would pick instead (issue 13).

    PYTHONPATH=<tree>/tools:<tree> python3 tools/bench_pg.py [--quick] [--sessions N] [--rounds R]
        [--writers 1,8,32] [--no-concurrency] [--securestore-cap N] [--json FILE]

One throwaway durable PostgreSQL server (tests/support/postgres.py; fsync and synchronous_commit read
back and printed), fresh databases per system: plain psycopg (the baseline), LangGraph's
PostgresSaver, securestore at a postgresql:// URL through its public API (reported unavailable,
with the error, when that fails). The method is tools/bench_peers.py's (bench/harness.py: rotated
interleaved rounds, round 0 discarded, medians, ratios = median of per-round ratios; the items of
bench/corpus.py). The commit floor is to this what the fsync floor is to bench_peers; transactions
that took an xid per operation stand for fsyncs per operation. See bench/pg_systems.py.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import statistics
import subprocess  # nosec B404 - git rev-parse on this tree, fixed argv, read only
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import psycopg

from bench import harness, probes
from bench.pg_systems import (
    LIST_BIG, LIST_MID, PG_WRITES, SYSTEMS, Cluster, LangGraphPostgresSaver, PgKeys, PgSystem, PlainPsycopg,
    SecureStorePg, one_line,
)
from bench.systems import APPEND, CREATE_BIG, CREATE_EMPTY, READ50, TURN, Unavailable

TREE = Path(__file__).resolve().parent.parent
try:
    from tests.support.postgres import PGBIN, make_server, remove_server
except ImportError:  # run as `python3 tools/bench_pg.py` without the tree on PYTHONPATH
    sys.path.append(str(TREE))
    from tests.support.postgres import PGBIN, make_server, remove_server

BASE_NAME, PEERS = SecureStorePg.name, (PlainPsycopg.name, LangGraphPostgresSaver.name)
PROBE_ROUND, PROBE_OPS, WARM_APPENDS, SESSION_APPENDS = 1000, 10, 3, 50
PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"mid": 1_000, "big": 10_000, "rounds": 4, "conc_rounds": 1, "conc_s": 2.0,
              "ops": {APPEND: 20, TURN: 8, CREATE_EMPTY: 8, CREATE_BIG: 8, READ50: 20, LIST_MID: 10, LIST_BIG: 10}},
    "full": {"mid": 10_000, "big": 100_000, "rounds": 9, "conc_rounds": 3, "conc_s": 5.0,
             "ops": {APPEND: 60, TURN: 20, CREATE_EMPTY: 20, CREATE_BIG: 20, READ50: 50, LIST_MID: 30, LIST_BIG: 30}},
}


def out(line: str = "") -> None:
    print(line, flush=True)


def labels(mid: int, big: int) -> dict[str, str]:
    return {APPEND: "append one item, durable", TURN: "one turn of 16 items",
            CREATE_EMPTY: "create a session with one item, store empty",
            CREATE_BIG: f"create a session with one item, store holding {big:,} sessions",
            READ50: "read the latest 50 of 1,000 items", LIST_MID: f"list the first page of 50 of {mid:,} sessions",
            LIST_BIG: f"list the first page of 50 of {big:,} sessions"}


def server_facts(cluster: Cluster, samples: int = 300) -> dict[str, Any]:
    """Settings read back, and the commit floor: BEGIN; SELECT pg_current_xact_id(); COMMIT takes an
    xid, so its commit record is flushed before COMMIT returns; an empty BEGIN/COMMIT flushes nothing."""
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        facts: dict[str, Any] = {name: conn.execute(f"SHOW {name}".encode()).fetchone()[0]  # type: ignore[index]
                                 for name in ("server_version", "fsync", "synchronous_commit", "wal_sync_method",
                                              "full_page_writes", "data_directory")}
        for key, sql in (("commit", "SELECT pg_current_xact_id()"), ("empty", "")):
            times = []
            for _ in range(samples):
                t0 = time.perf_counter()
                with conn.transaction():
                    if sql:
                        conn.execute(sql)
                times.append((time.perf_counter() - t0) * 1e6)
            times.sort()
            facts[key] = {"median_us": statistics.median(times), "p90_us": times[samples * 9 // 10],
                          "p99_us": times[samples * 99 // 100], "max_us": times[-1]}
    return facts


def header(args: argparse.Namespace, profile: dict[str, Any], server: Any, facts: dict[str, Any],
           machine: dict[str, Any]) -> None:
    import securestore

    head = subprocess.run(["git", "--no-optional-locks", "-C", str(TREE), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()  # nosec B603 B607
    commit, empty = facts["commit"], facts["empty"]
    out(f"bench_pg: securestore {securestore.__version__} from {Path(securestore.__file__).parent} "
        f"(tree {TREE} at HEAD {head or '?'}, uncommitted changes included)")
    out(f"machine: {machine['cpus']} CPUs, Python {machine['python']}, {machine['platform']}, "
        f"load average {machine['load_average_1m_at_start']:.2f} at start")
    out(f"server: PostgreSQL {facts['server_version']} ({PGBIN}), a throwaway cluster in {facts['data_directory']} "
        f"on {probes.filesystem_type(server.directory)}; clients over TCP to 127.0.0.1")
    out(f"durability read back (SHOW): fsync={facts['fsync']}, synchronous_commit={facts['synchronous_commit']}, "
        f"wal_sync_method={facts['wal_sync_method']}, full_page_writes={facts['full_page_writes']}")
    out(f"fsync floor (write 500 B + fsync beside the data directory, median of {machine['fsync_samples']}): "
        f"{machine['fsync_median_us']:.0f} us (p90 {machine['fsync_p90_us']:.0f} us)")
    out(f"commit floor (BEGIN; SELECT pg_current_xact_id(); COMMIT from psycopg, flushed; median of 300): "
        f"{commit['median_us']:.0f} us (p90 {commit['p90_us']:.0f}, p99 {commit['p99_us']:.0f}, max "
        f"{commit['max_us']:,.0f} us); an empty BEGIN/COMMIT (nothing flushed): {empty['median_us']:.0f} us")
    out(f"profile: {'quick' if args.quick else 'full'}, stores of {profile['mid']:,} and {profile['big']:,} sessions, "
        f"{profile['rounds']} rounds kept (+1 warm-up discarded), items of 500 bytes of agent JSON, the same bytes "
        "for every system")


def build_all(cluster: Cluster, base: Path, profile: dict[str, Any], cap: int | None,
              missing: dict[str, str]) -> list[PgSystem]:
    systems: list[PgSystem] = []
    for kind in SYSTEMS.values():
        system = kind(cluster, profile["mid"])
        if isinstance(system, SecureStorePg):
            system.cap = cap
        home = base / system.prefix
        home.mkdir()
        t0 = time.perf_counter()
        try:
            system.build(home, profile["big"])
        except Unavailable as why:
            missing[system.name] = f"unavailable: {why}"
        except Exception as error:  # a peer not installed or whose API moved is reported, the run goes on
            missing[system.name] = f"failed to build: {one_line(error)}"
        if system.name in missing:  # its connections die with the server
            harness.log_stderr(f"{system.name}: {missing[system.name]}")
            continue
        system.notes.insert(0, f"built in {time.perf_counter() - t0:.1f} s")
        harness.log_stderr(f"built {system.name} in {time.perf_counter() - t0:.1f} s")
        systems.append(system)
    for system in systems:  # planner statistics and visibility maps up to date, the build's WAL flushed
        for rnd in [*range(profile["rounds"] + 1), PROBE_ROUND]:
            system.empty_db(rnd)
        for dbname in system.databases:
            with psycopg.connect(cluster.url(dbname), autocommit=True) as conn:
                conn.execute("VACUUM (ANALYZE)")
    cluster.admin("CHECKPOINT")
    return systems


def write_xacts(system: PgSystem, cluster: Cluster) -> dict[str, float]:
    """Transaction ids taken per write op (a transaction that wrote, and each savepoint in it that
    wrote), from the server's next xid around PROBE_OPS operations (autovacuum can add a stray one)."""
    counts: dict[str, float] = {}
    with psycopg.connect(cluster.url(), autocommit=True) as conn:
        def next_xid() -> int:
            return int(conn.execute("SELECT pg_snapshot_xmax(pg_current_snapshot())::text").fetchone()[0])  # type: ignore[index]

        for workload in PG_WRITES:
            prepared = system.prepare(workload, PROBE_ROUND)
            if prepared is None:
                continue
            try:
                before = next_xid()
                prepared.timed(PROBE_OPS)
                counts[workload] = (next_xid() - before) / PROBE_OPS
            finally:
                prepared.cleanup()
    return counts


def ratio(result: harness.SideBySide, workload: str, peer: str) -> tuple[float, float, float] | None:
    mine, theirs = result.cells.get((workload, BASE_NAME)), result.cells.get((workload, peer))
    if mine is None or theirs is None:
        return None
    ratios = [a / b for a, b in zip(mine.round_medians(), theirs.round_medians(), strict=True)]
    return statistics.median(ratios), min(ratios), max(ratios)


def medians_table(result: harness.SideBySide, names: list[str], label: dict[str, str]) -> list[str]:
    lines = ["| workload | " + " | ".join(names) + " | securestore / plain psycopg | securestore / PostgresSaver |",
             "|---|" + "---:|" * (len(names) + 2)]
    for workload, text in label.items():
        cells = [result.cells.get((workload, name)) for name in names]
        figures = [harness.fmt_us(c.median_us()) if c is not None else "-" for c in cells]
        ratios = [harness.fmt_ratio(ratio(result, workload, peer)) for peer in PEERS]
        lines.append(f"| {text} | " + " | ".join(figures + ratios) + " |")
    return lines


def xacts_table(xacts: dict[str, dict[str, float]], names: list[str], label: dict[str, str]) -> list[str]:
    lines = ["| workload | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for workload in PG_WRITES:
        cells = [f"{xacts[n][workload]:.1f}" if workload in xacts.get(n, {}) else "-" for n in names]
        lines.append(f"| {label[workload]} | " + " | ".join(cells) + " |")
    return lines


def side_by_side_json(result: harness.SideBySide, label: dict[str, str]) -> dict[str, Any]:
    report: dict[str, Any] = {}
    for workload, text in label.items():
        per = {name: {"median_us_per_op": cell.median_us(), "round_median_us": [m * 1e6 for m in cell.round_medians()]}
               for (w, name), cell in result.cells.items() if w == workload}
        report[workload] = {"label": text, "ops_per_round": result.ops[workload], "systems": per,
                            "ratio_securestore_over": {p: ratio(result, workload, p) for p in PEERS},
                            "failed": {n: why for (w, n), why in result.failed.items() if w == workload}}
    return report


def process_main(system: str, url: str, tag: str, seconds: float, keys: PgKeys, start: Any, results: Any) -> None:
    """A writer: its own connection and session, warmed, then from the barrier durable one-item
    appends for `seconds`, on a new session every SESSION_APPENDS (as long as the append workload's,
    whatever the rate: the saver re-stores the whole conversation per put). Puts (end, appends)."""
    kind, store = SYSTEMS[system], None
    try:
        store = kind.open(url, keys)
        append, close = kind.writer(store, f"{tag}-0", 1)
        for i in range(WARM_APPENDS):
            append(i)
        start.wait()
        done, deadline, latencies = 0, time.monotonic() + seconds, []
        while time.monotonic() < deadline:
            if done and done % SESSION_APPENDS == 0:
                close()
                append, close = kind.writer(store, f"{tag}-{done}", 1)
            t0 = time.perf_counter()
            append(done % SESSION_APPENDS + 1)
            latencies.append(time.perf_counter() - t0)
            done += 1
        results.put((time.monotonic(), latencies))  # CLOCK_MONOTONIC: comparable across processes
        close()
    except BaseException as error:
        start.abort()  # the parent's wait fails at once instead of timing out
        results.put(f"writer {tag}: {one_line(error)}")
        raise
    finally:
        if store is not None:
            kind.close_store(store)


def run_writers(system: PgSystem, url: str, tag: str, writers: int, seconds: float) -> tuple[float, float]:
    """Appends/s of `writers` processes together (all appends / (last end - common start)), and the
    median ms of one append among them.
    Processes come from a forkserver that imported the systems' modules (and nothing else) first:
    clean children, no inherited connections, started in milliseconds rather than seconds each."""
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["__main__", "psycopg", "securestore", "langgraph.checkpoint.postgres"])
    start, results = ctx.Barrier(writers + 1), ctx.Queue()
    procs = [ctx.Process(target=process_main, args=(system.name, url, f"{tag}-p{w}", seconds, system.keys, start,
                                                    results)) for w in range(writers)]
    for proc in procs:
        proc.start()
    try:
        start.wait(timeout=600)
        t0 = time.monotonic()
        ends = [results.get(timeout=600 + seconds) for _ in procs]
    except threading.BrokenBarrierError:  # a writer failed before the start
        ends = [results.get(timeout=60)]
    finally:
        for proc in procs:
            proc.join(timeout=60)
    errors = [e for e in ends if isinstance(e, str)]
    if errors:
        raise RuntimeError(errors[0])
    latencies = [s for _, per in ends for s in per]
    return len(latencies) / (max(end for end, _ in ends) - t0), statistics.median(latencies) * 1e3


def concurrency(systems: list[PgSystem], profile: dict[str, Any], writers: list[int]) -> dict[str, Any]:
    rates: dict[str, dict[int, list[tuple[float, float]]]] = {s.name: {w: [] for w in writers} for s in systems}
    failed: dict[str, str] = {}
    urls = {system.name: system.new_db("conc") for system in systems}
    for system in systems:
        system.setup(urls[system.name], system.keys, system.base / "conc.seed")
    for rnd in range(profile["conc_rounds"]):
        harness.log_stderr(f"concurrency round {rnd + 1}/{profile['conc_rounds']}")
        for count in writers[rnd % len(writers):] + writers[:rnd % len(writers)]:
            for system in systems[rnd % len(systems):] + systems[:rnd % len(systems)]:
                if system.name in failed:
                    continue
                try:
                    rates[system.name][count].append(
                        run_writers(system, urls[system.name], f"r{rnd}-w{count}", count, profile["conc_s"]))
                except Exception as error:  # reported, the others go on
                    failed[system.name] = one_line(error)
                    harness.log_stderr(f"{system.name} failed under concurrency: {failed[system.name]}")
    medians = {name: {w: [statistics.median(r[k] for r in v) for k in (0, 1)] for w, v in per.items()}
               for name, per in rates.items() if name not in failed}
    return {"writes_per_s_and_median_ms": medians, "samples": rates, "failed": failed, "rounds": profile["conc_rounds"],
            "seconds_per_config": profile["conc_s"], "writers": writers}


def concurrency_table(conc: dict[str, Any], names: list[str]) -> list[str]:
    rates: dict[str, dict[int, list[float]]] = conc["writes_per_s_and_median_ms"]
    one, most = conc["writers"][0], conc["writers"][-1]
    lines = ["| writers (processes) | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for count in conc["writers"]:
        cells = [f"{rates[n][count][0]:,.0f}/s (p50 {rates[n][count][1]:.1f} ms)" if n in rates else "-" for n in names]
        lines.append(f"| {count} | " + " | ".join(cells) + " |")
    cells = [f"{rates[n][most][0] / rates[n][one][0]:.2f}x" if n in rates else "-" for n in names]
    return lines + [f"| scaling factor, {most} vs {one} | " + " | ".join(cells) + " |"]


def print_lines(title: str, lines: list[str]) -> None:
    out()
    out(title)
    for line in lines:
        out(line)


def run(args: argparse.Namespace, profile: dict[str, Any], server: Any, base: Path) -> dict[str, Any]:
    cluster, names = Cluster(server.port), list(SYSTEMS)
    facts, machine = server_facts(cluster), probes.machine_header(server.directory)
    header(args, profile, server, facts, machine)
    label, missing = labels(profile["mid"], profile["big"]), dict[str, str]()
    systems = build_all(cluster, base, profile, args.securestore_cap, missing)
    if not systems:
        raise SystemExit("bench_pg: no system could be built")
    xacts = {s.name: write_xacts(s, cluster) for s in systems}
    result = harness.run_rounds(list(systems), profile["ops"], profile["rounds"], harness.log_stderr,
                                baseline=BASE_NAME)
    for system in systems:
        system.close()

    print_lines("How each workload maps onto each system ('-' in the tables: not offered, not measured or "
                "unavailable):", [f"  {label[w]}:\n" + "\n".join(f"      {n}: {k.mappings.get(w, '-')}"
                                                                  for n, k in SYSTEMS.items()) for w in label])
    print_lines("Durability each system promises (every commit flushed: the server's settings above):",
                [f"  {n}: {k.durability}" for n, k in SYSTEMS.items()])
    print_lines(f"Median us per operation over {profile['rounds']} kept rounds (ops per round: "
                + ", ".join(f"{w} {n}" for w, n in profile["ops"].items()) + "); securestore/peer = median of "
                "per-round ratios of round medians, min-max over rounds in brackets, above 1 = securestore slower:\n",
                medians_table(result, names, label))
    print_lines(f"Transaction ids taken per operation ({PROBE_OPS} ops per workload): a writing transaction's own, plus "
                "one per savepoint that wrote in it (securestore runs each act in a savepoint of its change's "
                "transaction); each top-level commit is one WAL flush:\n",
                xacts_table(xacts, names, label))
    print_lines("Notes:", [f"  {s.name}: {note}" for s in systems for note in s.notes]
                + [f"  {name} failed on {label[w]}: {why}" for (w, name), why in result.failed.items()]
                + [f"  {name}: {why}" for name, why in missing.items()])
    report: dict[str, Any] = {"server": facts, "machine": machine, "profile": profile, "missing": missing,
                              "notes": {s.name: s.notes for s in systems}, "write_xacts_per_op": xacts,
                              "side_by_side": side_by_side_json(result, label),
                              "mappings": {n: k.mappings for n, k in SYSTEMS.items()}}
    if not args.no_concurrency:
        conc = report["concurrency"] = concurrency(systems, profile, args.writers)
        print_lines(f"Throughput: durable one-item appends per second, W writer processes together, each its own "
                    f"connection and session (a new one every {SESSION_APPENDS} appends), appending for "
                    f"{profile['conc_s']:g} s from a common start (p50: median latency of one append); median of "
                    f"{conc['rounds']} round(s); clients and server share {machine['cpus']} CPUs:\n", concurrency_table(conc, names)
                    + [f"  {name} failed under concurrency: {why}" for name, why in conc["failed"].items()]
                    + (["  (one round: a stall of the shared disk or CPU moves these figures a lot; the full run "
                        "takes the median of 3)"] if conc["rounds"] == 1 else []))
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="securestore's PostgreSQL backend side by side (issue 13)")
    parser.add_argument("--quick", action="store_true", help="stores of 1,000 and 10,000 sessions, 4 rounds")
    parser.add_argument("--sessions", type=int, default=None,
                        help="N of the big store (default 100,000; --quick 10,000); the other holds N/10")
    parser.add_argument("--rounds", type=int, default=None, help="kept rounds (default 9, --quick 4)")
    parser.add_argument("--writers", default="1,8,32", help="concurrent writer counts (default 1,8,32)")
    parser.add_argument("--no-concurrency", action="store_true", help="skip the throughput part")
    parser.add_argument("--securestore-cap", type=int, default=None, metavar="N",
                        help="build at most N sessions per securestore store through its API (the rest unmeasured)")
    parser.add_argument("--json", default=None, metavar="FILE", help="write every figure to FILE")
    args = parser.parse_args(argv)
    args.writers = sorted({int(w) for w in args.writers.split(",")})
    for name in ("sessions", "rounds", "securestore_cap"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    profile = dict(PROFILES["quick" if args.quick else "full"])
    if args.sessions:
        profile["big"], profile["mid"] = args.sessions, max(1, args.sessions // 10)
    profile["rounds"] = args.rounds or profile["rounds"]
    json_path = Path(args.json).resolve() if args.json else None
    base = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    os.chdir(base)  # a securestore that took the URL for a relative path writes here, not in the tree
    started = time.perf_counter()
    try:
        server = make_server(durable=True)
    except RuntimeError as error:
        raise SystemExit(f"bench_pg: {error}") from None
    try:
        report = run(args, profile, server, base)
    finally:
        remove_server(server)
        shutil.rmtree(base, ignore_errors=True)
    wall = time.perf_counter() - started
    out()
    out(f"wall time: {wall:.0f} s")
    if json_path is not None:
        report["wall_s"] = wall
        json_path.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        out(f"figures written to {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
