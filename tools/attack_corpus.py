"""Run the audit attack corpus for many rounds and print the table (attack kind, rounds,
detected, located), plus false-positive checks on clean and crash-torn logs.

    python3 tools/attack_corpus.py [--scenarios N] [--rounds R] [--seed S] [--dir PATH]

Each scenario is a fresh store built through the ordinary API with a random epoch length
(3-6 records), three sessions, an older copy, a deleted session, and an anchor. Every attack
kind runs R times on every scenario. Exit status 1 if anything was missed, mislocated, or a
clean or torn log was blamed.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: securestore, tests.support

from tests.support.attacks import ATTACKS, build_scenario, false_positive_checks, run_attack  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="ss-attacks-"))
    rows: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])  # rounds, detected, located, locatable
    codes: dict[str, set[int]] = defaultdict(set)
    false_positives, clean_runs, misses = 0, 0, []
    started = time.perf_counter()
    for number in range(args.scenarios):
        rng = random.Random(args.seed * 1_000_003 + number)
        work = base / f"s{number}"
        scenario = build_scenario(work, rng)
        for case, code in false_positive_checks(scenario, work, rng):
            clean_runs += 1
            if code != 0:
                false_positives += 1
                misses.append(f"false positive on {case} (scenario {number}): exit {code}")
        for kind in sorted(ATTACKS):
            for _ in range(args.rounds):
                result = run_attack(kind, scenario, work, rng)
                row = rows[kind]
                codes[kind].add(result.exit_code)
                row[0] += 1
                row[1] += result.detected
                if result.located is not None:
                    row[3] += 1
                    row[2] += result.located
                if not result.detected or result.located is False:
                    misses.append(f"{kind} (scenario {number}): exit {result.exit_code}: {result.first}")
        shutil.rmtree(work)
    print(f"{'attack':<24}{'rounds':>8}{'detected':>10}{'located':>12}  exit codes")
    # located: the first failure names the exact record (line) attacked, or for attacks on
    # files, the session or log attacked; "tail": at the end of a log, no location is claimed.
    for kind, (total, detected, located, locatable) in sorted(rows.items()):
        where = f"{located}/{locatable}" if locatable else "tail"
        print(f"{kind:<24}{total:>8}{detected:>10}{where:>12}  {','.join(map(str, sorted(codes[kind])))}")
    total = sum(r[0] for r in rows.values())
    detected = sum(r[1] for r in rows.values())
    print(f"\n{len(rows)} kinds, {total} attacks, {detected} detected, {total - detected} missed; "
          f"false positives: {false_positives} of {clean_runs} clean/torn checks; "
          f"{time.perf_counter() - started:.1f} s")
    for line in misses[:20]:
        print("MISS: " + line)
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
