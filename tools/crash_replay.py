"""Syscall-level crash check of every operation: trace it with strace, rebuild every distinct crash
state (process crash and power cut after each mutating syscall; with --reorder, ALICE-style
reorderings inside each fsync window too), verify each read-only as an auditor would, then
reconcile it with a writer. Prints a table per operation and every failing state.

    python3 tools/crash_replay.py [--ops OP ...] [--reorder] [--dir PATH] [--keep-failing]

Exit status 1 if any state verifies as tampering (1) or truncation (5), names an unfinished
change other than a dangling intent, or reconciles to a mixed state; 2 if the harness cannot run
(strace missing, or a trace the replay model does not cover).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: securestore, tests.support

from tests.support.syscall_trace import (  # noqa: E402
    OPERATIONS,
    HarnessError,
    OpReport,
    Sweep,
    build_baseline,
    cli_verify,
    materialize,
    require_strace,
    state_for_cli,
    sweep,
)


def _row(report: OpReport, cli: str, seconds: float) -> str:
    return (f"{report.op:<18}{report.syscalls:>9}{report.mutating:>9}{report.distinct:>8}{report.exit0:>10}"
            f"{report.exit6:>10}{report.unsealed:>10}{len(report.failures):>10}{cli:>6}{seconds:>8.1f}")


def _keep_failing(result: Sweep, into: Path) -> list[Path]:
    """Rebuild each failing state under `into` (the sweep removes the trees it checked)."""
    kept = []
    for number, (key, outcome) in enumerate(sorted(result.outcomes.items())):
        if outcome.problems:
            kept.append(materialize(result.states[key].tree, into / f"{result.report.op}-{number}" / "store"))
    return kept


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", nargs="+", choices=sorted(OPERATIONS), default=sorted(OPERATIONS))
    parser.add_argument("--reorder", action="store_true", help="also check reorderings inside each fsync window")
    parser.add_argument("--dir", default=None, help="work directory (default: a new temporary one, removed)")
    parser.add_argument("--keep-failing", action="store_true", help="keep a copy of each failing state's tree")
    args = parser.parse_args()
    try:
        require_strace()
    except HarnessError as exc:
        print(f"crash_replay: error: {exc}", file=sys.stderr)
        return 2
    base = Path(args.dir or tempfile.mkdtemp(prefix="ss-crash-replay-"))
    started = time.perf_counter()
    baseline = build_baseline(base / "baseline" / "store")
    print(f"{'operation':<18}{'syscalls':>9}{'mutating':>9}{'states':>8}{'verify 0':>10}{'verify 6':>10}"
          f"{'unsealed':>10}{'FAILURES':>10}{'cli':>6}{'s':>8}")
    results: list[Sweep] = []
    cli_problems: list[str] = []
    try:
        for op_name in args.ops:
            began = time.perf_counter()
            work = base / op_name
            result = sweep(baseline, work, op_name, reorder=args.reorder)
            key = state_for_cli(result.outcomes)
            code, _ = cli_verify(result.states[key].tree, work, baseline)
            cli = str(code) if code == result.outcomes[key].exit_code else f"{code}!"
            if cli.endswith("!") or code not in (0, 6):
                cli_problems.append(f"{op_name}: `audit verify` exited {code} on the state where the API gave "
                                    f"{result.outcomes[key].exit_code}")
            print(_row(result.report, cli, time.perf_counter() - began), flush=True)
            results.append(result)
    except HarnessError as exc:
        print(f"crash_replay: error: {exc}", file=sys.stderr)
        return 2
    failures = [(r, f) for r in results for f in r.report.failures]
    print(f"\n{sum(r.report.distinct for r in results)} distinct crash states of {len(results)} operations; "
          f"{len(failures)} failing; {time.perf_counter() - started:.1f} s"
          + ("; 'cli' is the real command's exit on one state (! = differs from the API)" if results else ""))
    for result, failure in failures:
        print(f"\nFAIL {result.report.op}: {failure.describe()}")
    for line in cli_problems:
        print(f"\nFAIL (command) {line}")
    if args.keep_failing:
        for result in results:
            for path in _keep_failing(result, base / "failing"):
                print(f"kept {path}")
    if not args.dir and not args.keep_failing:
        shutil.rmtree(base)
    return 1 if failures or cli_problems else 0


if __name__ == "__main__":
    sys.exit(main())
