"""securestore side by side with what users would pick instead (issue 11).

    PYTHONPATH=<tree> python3 tools/bench_peers.py [--quick] [--sessions N] [--rounds R] [--dir PATH]
                                                   [--no-concurrency] [--json FILE]
    PYTHONPATH=<tree> python3 tools/bench_peers.py --scaling [--max-n 10000] [--json FILE]

Peers: raw SQLite (WAL, synchronous=FULL; and NORMAL for reference), the OpenAI Agents SDK's
`SQLiteSession` on a file, LangGraph's `SqliteSaver`, one JSON file per session rewritten
atomically, and the bare fsync floor. The framework peers come from the `bench` extra
(pip install '.[bench]'); a missing one is reported and skipped. All systems run on one disk (the
bench directory), in one run, interleaved in rounds (rotated order; round 0 discarded), on the
same item bytes (tools/bench/corpus.py). Each peer's durability is read back (PRAGMA) and its
fsyncs per operation counted with strace on a small child run; see tools/bench/*.py for the
method of each part. Measures the securestore on PYTHONPATH (the header names it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench import concurrency, harness, probes, scaling
from bench.files import FsyncFloor, JsonFiles
from bench.systems import (
    APPEND, CREATE_BIG, CREATE_EMPTY, LIST50, READ50, SLOT_GET, SLOT_PUT, TURN, WORKLOADS, WRITE_WORKLOADS,
    RawSqlite, SecureStoreSystem, System, Unavailable,
)

SCRIPT = Path(__file__).resolve()


def _agents() -> System:
    from bench.frameworks import AgentsSqliteSession
    return AgentsSqliteSession()


def _langgraph() -> System:
    from bench.frameworks import LangGraphSqliteSaver
    return LangGraphSqliteSaver()


FACTORIES: dict[str, Callable[[], System]] = {
    "securestore": SecureStoreSystem,
    "sqlite WAL sync=FULL": lambda: RawSqlite("FULL"),
    "sqlite WAL sync=NORMAL": lambda: RawSqlite("NORMAL"),
    "agents SQLiteSession": _agents,
    "langgraph SqliteSaver": _langgraph,
    "json file per session": JsonFiles,
    "fsync floor": FsyncFloor,
}

PROFILES: dict[str, dict[str, Any]] = {
    "quick": {"sessions": 1_000, "rounds": 4, "conc_rounds": 1, "conc_ops": 60,
              "ops": {APPEND: 20, TURN: 8, CREATE_EMPTY: 8, CREATE_BIG: 8, READ50: 20, LIST50: 10,
                      SLOT_PUT: 15, SLOT_GET: 30}},
    "full": {"sessions": 10_000, "rounds": 9, "conc_rounds": 3, "conc_ops": 150,
             "ops": {APPEND: 60, TURN: 20, CREATE_EMPTY: 20, CREATE_BIG: 20, READ50: 50, LIST50: 30,
                     SLOT_PUT: 40, SLOT_GET: 100}},
}


def out(line: str = "") -> None:
    print(line, flush=True)


def make_systems(log: Callable[[str], None]) -> tuple[list[System], dict[str, str]]:
    systems, missing = [], {}
    for name, factory in FACTORIES.items():
        try:
            systems.append(factory())
        except Unavailable as why:
            missing[name] = str(why)
            log(f"{name}: {why}")
    return systems, missing


def durability_of(system: System, fsyncs: dict[str, float] | str) -> tuple[str, dict[str, Any]]:
    pragmas = system.pragmas()
    short = system.short
    if pragmas is not None:
        short = f"{pragmas['journal_mode']}, synchronous={pragmas['synchronous']}"
    per_op = fsyncs if isinstance(fsyncs, dict) else None
    return short, {"promise": system.durability, "pragmas": pragmas,
                   "fsyncs_per_op": per_op if per_op is not None else fsyncs, "mappings": system.mappings}


def side_by_side(args: argparse.Namespace, base: Path, log: Callable[[str], None]) -> dict[str, Any]:
    profile = PROFILES["quick" if args.quick else "full"]
    n_sessions = args.sessions or profile["sessions"]
    rounds = args.rounds or profile["rounds"]
    import securestore

    machine = probes.machine_header(base)
    out(f"bench_peers: securestore {securestore.__version__} from {Path(securestore.__file__).parent}")
    out(f"machine: {machine['cpus']} CPUs, Python {machine['python']}, {machine['platform']}, "
        f"load average {machine['load_average_1m_at_start']:.2f} at start")
    out(f"bench dir: {base} on {machine['filesystem']}")
    out(f"fsync latency (write 500 B + fsync, median of {machine['fsync_samples']}): "
        f"{machine['fsync_median_us']:.0f} us (p90 {machine['fsync_p90_us']:.0f} us)")
    out(f"profile: {'quick' if args.quick else 'full'}, N = {n_sessions:,} sessions, {rounds} rounds kept "
        f"(+1 warm-up discarded), items of 500 bytes of agent JSON, the same bytes for every system")

    systems, missing = make_systems(log)
    fsyncs: dict[str, dict[str, float | None]] = {}
    durability: dict[str, str] = {}
    details: dict[str, Any] = {}
    for system in systems:
        home = base / system.name.replace(" ", "_").replace("=", "-")
        home.mkdir()
        t0 = time.perf_counter()
        try:
            system.build(home, n_sessions)
        except Exception as error:  # a peer whose API moved is reported, the run goes on
            if system.name == "securestore":
                raise
            missing[system.name] = f"failed to build: {type(error).__name__}: {str(error)[:100]}"
            try:
                system.close()
            except Exception:  # nosec B110 - best effort on a peer that already failed
                pass
            log(f"{system.name}: {missing[system.name]}")
            continue
        log(f"built {system.name} ({n_sessions:,} sessions + a 1,000-item session) in {time.perf_counter() - t0:.1f} s")
        counted = probes.count_fsyncs(system.name, SCRIPT, base)
        fsyncs[system.name] = dict(counted) if isinstance(counted, dict) else {}
        durability[system.name], details[system.name] = durability_of(system, counted)

    systems = [s for s in systems if s.name not in missing]
    result = harness.run_rounds(systems, profile["ops"], rounds, log)
    for system in systems:
        system.close()

    out()
    out("Durability each system really provides (PRAGMA read back on its connection; fsync+fdatasync per")
    out(f"operation counted with strace -f on a child run of {probes.STRACE_OPS} ops, between markers):")
    for system in systems:
        d = details[system.name]
        per = d["fsyncs_per_op"]
        counts = ", ".join(f"{w} {per[w]:g}" for w in WRITE_WORKLOADS if w in per) if isinstance(per, dict) else per
        pragmas = " ".join(f"{k}={v}" for k, v in (d["pragmas"] or {}).items())
        out(f"  {system.name}: {d['promise']}" + (f"; read back: {pragmas}" if pragmas else ""))
        out(f"      fsyncs/op: {counts or '-'}")
    for name, why in missing.items():
        out(f"  {name}: {why}")

    out()
    out("How each workload maps onto each system ('-' in the tables: not offered by that system):")
    for workload, label in WORKLOADS.items():
        out(f"  {label}:")
        for system in systems:
            out(f"      {system.name}: {system.mappings.get(workload, '-')}")

    out()
    out("Side by side: median time per operation over all kept rounds; securestore/peer is the median of")
    out("per-round ratios of round medians (min-max over rounds in brackets; above 1 = securestore slower).")
    for line in harness.side_by_side_table(result, systems, fsyncs, durability):
        out(line)
    out()
    out("Summary (securestore/peer, median of per-round ratios):")
    for line in harness.summary_table(result, systems):
        out(line)

    report: dict[str, Any] = {"machine": machine, "sessions": n_sessions, "durability": details,
                              "missing": missing, "side_by_side": harness.to_json(result)}
    if not args.no_concurrency:
        conc_base = base / "concurrency"
        conc_base.mkdir()
        conc = concurrency.run(conc_base, profile["conc_rounds"], profile["conc_ops"], log)
        out()
        per_writer = ", ".join(f"{n} {name}" for name, n in conc["ops_per_writer"].items())
        out(f"Concurrency: durable one-item appends/s, each writer on its own session; appends per writer: "
            f"{per_writer}; median of {conc['rounds']} round(s).")
        out("  SQLite FULL: one database file per writer (fair to SQLite's single-writer lock); fsync floor: one")
        out("  file per writer. 'x vs 1' = throughput / that system's 1-thread (threads) or 1-process figure.")
        for line in concurrency.table(conc):
            out(line)
        if conc["rounds"] == 1:
            out("  (one round: a stall of the shared disk or CPU moves these factors a lot; the full run takes "
                "the median of 3)")
        report["concurrency"] = conc
    return report


def scaling_run(args: argparse.Namespace, base: Path, log: Callable[[str], None]) -> dict[str, Any]:
    import securestore

    steps = [n for n in scaling.STEPS if args.max_n is None or n <= args.max_n]
    machine = probes.machine_header(base)
    out(f"bench_peers --scaling: securestore {securestore.__version__} from {Path(securestore.__file__).parent}")
    out(f"machine: {machine['cpus']} CPUs, Python {machine['python']}; bench dir on {machine['filesystem']}; "
        f"fsync median {machine['fsync_median_us']:.0f} us")
    session_base = base / "scaling-sessions"
    item_base = base / "scaling-items"
    session_base.mkdir()
    item_base.mkdir()
    session_rows = scaling.sessions(session_base, steps, log)
    item_rows = scaling.session_items(item_base, steps, log)
    out()
    out(f"Scaling (securestore; N = {', '.join(f'{n:,}' for n in steps)}; items of 500 bytes; create rate over "
        f"{scaling.CREATE_PROBE} creates at N; latencies are medians):")
    out()
    for line in scaling.markdown(session_rows, item_rows):
        out(line)
    return {"machine": machine, "sessions": session_rows, "items": item_rows}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="securestore side by side with its peers (issue 11)")
    parser.add_argument("--quick", action="store_true", help="the side-by-side in about a minute (N=1,000)")
    parser.add_argument("--scaling", action="store_true", help="the scaling table instead (slow)")
    parser.add_argument("--max-n", type=int, default=None, help="cap the scaling table's N (e.g. 10000)")
    parser.add_argument("--sessions", type=int, default=None, help="N for the big stores (default 10,000)")
    parser.add_argument("--rounds", type=int, default=None, help="kept rounds (default 9, --quick 4)")
    parser.add_argument("--no-concurrency", action="store_true", help="skip the threads/processes part")
    parser.add_argument("--adapters", action="store_true",
                        help="instead: each framework adapter against the framework's own SQLite default "
                             "(tools/bench_adapter_*.py, one after the other in this run)")
    parser.add_argument("--postgres", action="store_true",
                        help="instead: tools/bench_pg.py, securestore on PostgreSQL against plain psycopg and "
                             "LangGraph's PostgresSaver on one durable server (--quick, --sessions, --rounds, "
                             "--no-concurrency and --json passed on)")
    parser.add_argument("--dir", default=None, help="bench directory (default: a new temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the bench directory")
    parser.add_argument("--json", default=None, metavar="FILE", help="write every figure to FILE")
    parser.add_argument("--strace-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name in ("max_n", "sessions", "rounds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be 1 or more")
    return args


# Each adapter's side-by-side against its framework's SQLite default; --quick runs fewer rounds.
ADAPTER_BENCHES = {
    "openai-agents (SecureStoreSession vs SQLiteSession)": ("bench_adapter_openai_agents.py", ["--turns", "200"],
                                                            ["--turns", "50"]),
    "langgraph (SecureStoreSaver vs SqliteSaver)": ("bench_adapter_langgraph.py", ["-n", "50"], ["-n", "15"]),
    "adk (SecureStoreSessionService vs SqliteSessionService)": ("bench_adapter_adk.py", ["--sessions", "10000"],
                                                                ["--sessions", "2000", "--events", "300"]),
}


def adapters_run(args: argparse.Namespace) -> int:
    started, failed = time.perf_counter(), 0
    for title, (script, full, quick) in ADAPTER_BENCHES.items():
        out(f"== {title}")
        extra = ["--dir", args.dir] if args.dir and script != "bench_adapter_langgraph.py" else []
        done = subprocess.run([sys.executable, str(Path(__file__).parent / script), *(quick if args.quick else full),
                               *extra], check=False)
        failed += done.returncode != 0
        out()
    out(f"wall time: {time.perf_counter() - started:.0f} s")
    return 1 if failed else 0


def postgres_run(args: argparse.Namespace) -> int:
    """tools/bench_pg.py in a child, this tree's tools/ and securestore first on its path."""
    tools = Path(__file__).resolve().parent
    passed = [*(["--quick"] if args.quick else []), *(["--no-concurrency"] if args.no_concurrency else []),
              *(["--sessions", str(args.sessions)] if args.sessions else []),
              *(["--rounds", str(args.rounds)] if args.rounds else []), *(["--json", args.json] if args.json else [])]
    path = os.pathsep.join([str(tools), str(tools.parent), *filter(None, [os.environ.get("PYTHONPATH")])])
    done = subprocess.run([sys.executable, str(tools / "bench_pg.py"), *passed], check=False,
                          env={**os.environ, "PYTHONPATH": path})  # nosec B603 - this tree's script, fixed argv
    return done.returncode


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.postgres:
        return postgres_run(args)
    if args.strace_child is not None:
        probes.strace_child(FACTORIES[args.strace_child](), Path(args.dir))
        return 0
    if args.adapters:
        return adapters_run(args)
    base = Path(tempfile.mkdtemp(prefix="bench-peers-", dir=args.dir))
    started = time.perf_counter()
    try:
        report = scaling_run(args, base, harness.log_stderr) if args.scaling else side_by_side(args, base,
                                                                                              harness.log_stderr)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    wall = time.perf_counter() - started
    out()
    out(f"wall time: {wall:.0f} s")
    if args.json:
        report["wall_s"] = wall
        Path(args.json).write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
        out(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
