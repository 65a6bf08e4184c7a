"""Rounds, figures and the side-by-side table.

Every round runs every workload on every system, the systems in a rotated order each round, so
drift (page cache, disk, other load) hits every system alike. Round 0 is a warm-up and is
discarded. A system's figure for a workload is the median time per operation over every kept
operation; the ratio securestore/peer is the median of the per-round ratios of round medians
(above 1: securestore is slower)."""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .systems import WORKLOADS, WRITE_WORKLOADS, System

BASELINE = "securestore"


@dataclass
class Cell:
    """One system on one workload: per-op seconds of every kept round."""

    rounds: list[list[float]] = field(default_factory=list)

    def all_ops(self) -> list[float]:
        return [s for r in self.rounds for s in r]

    def median_us(self) -> float:
        return statistics.median(self.all_ops()) * 1e6

    def round_medians(self) -> list[float]:
        return [statistics.median(r) for r in self.rounds]


@dataclass
class SideBySide:
    ops: dict[str, int]
    rounds: int
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)  # (workload, system)
    unsupported: set[tuple[str, str]] = field(default_factory=set)
    failed: dict[tuple[str, str], str] = field(default_factory=dict)

    def ratio(self, workload: str, peer: str) -> tuple[float, float, float] | None:
        """(median, min, max) over rounds of securestore's round median / the peer's."""
        mine, theirs = self.cells.get((workload, BASELINE)), self.cells.get((workload, peer))
        if mine is None or theirs is None:
            return None
        ratios = [a / b for a, b in zip(mine.round_medians(), theirs.round_medians(), strict=True)]
        return statistics.median(ratios), min(ratios), max(ratios)


def rotated(systems: list[System], rnd: int) -> list[System]:
    k = rnd % len(systems)
    return systems[k:] + systems[:k]


def run_rounds(systems: list[System], ops: dict[str, int], rounds: int,
               log: Callable[[str], None], *, baseline: str = BASELINE) -> SideBySide:
    """`baseline` is the system measured against the others: its failure ends the run."""
    result = SideBySide(ops, rounds)
    for rnd in range(rounds + 1):  # round 0 warms up and is dropped
        log(f"round {rnd}/{rounds}{' (warm-up, discarded)' if rnd == 0 else ''}")
        for workload, count in ops.items():
            for system in rotated(systems, rnd):
                if (workload, system.name) in result.failed:
                    continue
                try:
                    prepared = system.prepare(workload, rnd)
                    if prepared is None:
                        result.unsupported.add((workload, system.name))
                        continue
                    try:
                        samples = prepared.timed(count)
                    finally:
                        prepared.cleanup()
                except Exception as error:  # a peer that breaks is reported, the run goes on
                    if system.name == baseline:
                        raise
                    result.failed[(workload, system.name)] = f"{type(error).__name__}: {str(error)[:100]}"
                    result.cells.pop((workload, system.name), None)
                    log(f"{system.name} failed on {workload}: {result.failed[(workload, system.name)]}")
                    continue
                if rnd > 0:
                    result.cells.setdefault((workload, system.name), Cell()).rounds.append(samples)
    return result


def fmt_us(us: float) -> str:
    return f"{us:,.0f}" if us >= 100 else f"{us:,.1f}"


def fmt_ratio(r: tuple[float, float, float] | None) -> str:
    if r is None:
        return "-"
    return f"{r[0]:.2f} ({r[1]:.2f}-{r[2]:.2f})"


def side_by_side_table(result: SideBySide, systems: list[System], fsyncs: dict[str, dict[str, float | None]],
                       durability: dict[str, str]) -> list[str]:
    name_w = max(len(s.name) for s in systems)
    lines = []
    for workload, label in WORKLOADS.items():
        if workload not in result.ops:
            continue
        lines.append("")
        lines.append(f"{label}  [{result.ops[workload]} ops x {result.rounds} rounds per system]")
        lines.append(f"  {'system':<{name_w}}  {'median us/op':>12}  {'ops/s':>9}  {'securestore/peer':>18}  "
                     f"{'fsyncs/op':>9}  durability")
        for system in systems:
            cell = result.cells.get((workload, system.name))
            if cell is None:
                why = result.failed.get((workload, system.name), "not offered")
                lines.append(f"  {system.name:<{name_w}}  {'-':>12}  {'-':>9}  {'-':>18}  {'-':>9}  ({why})")
                continue
            us = cell.median_us()
            ratio = "" if system.name == BASELINE else fmt_ratio(result.ratio(workload, system.name))
            count = fsyncs.get(system.name, {}).get(workload)
            fs = "-" if workload not in WRITE_WORKLOADS else "n/m" if count is None else f"{count:.1f}"
            lines.append(f"  {system.name:<{name_w}}  {fmt_us(us):>12}  {1e6 / us:>9,.0f}  {ratio:>18}  {fs:>9}  "
                         f"{durability.get(system.name, '')}")
    return lines


def summary_table(result: SideBySide, systems: list[System]) -> list[str]:
    """Ratios only, one row per workload, one column per peer (the issue's table)."""
    peers = [s for s in systems if s.name != BASELINE]
    head = "| workload | " + " | ".join(f"vs {p.name}" for p in peers) + " |"
    lines = [head, "|" + "---|" * (len(peers) + 1)]
    for workload, label in WORKLOADS.items():
        if workload not in result.ops:
            continue
        cols = []
        for p in peers:
            r = result.ratio(workload, p.name)
            cols.append("-" if r is None else f"{r[0]:.2f}")
        lines.append(f"| {label} | " + " | ".join(cols) + " |")
    return lines


def to_json(result: SideBySide) -> dict[str, Any]:
    out: dict[str, Any] = {"ops_per_round": result.ops, "rounds_kept": result.rounds, "workloads": {}}
    for workload in result.ops:
        per: dict[str, Any] = {}
        for (w, name), cell in result.cells.items():
            if w != workload:
                continue
            r = result.ratio(workload, name) if name != BASELINE else None
            per[name] = {"median_us_per_op": cell.median_us(), "ops_per_s": 1e6 / cell.median_us(),
                         "round_median_us": [m * 1e6 for m in cell.round_medians()],
                         "ratio_securestore_over_peer": None if r is None else
                         {"median": r[0], "min": r[1], "max": r[2]}}
        out["workloads"][workload] = {"label": WORKLOADS[workload], "systems": per,
                                      "not_offered": sorted(n for w, n in result.unsupported if w == workload),
                                      "failed": {n: why for (w, n), why in result.failed.items() if w == workload}}
    return out


def log_stderr(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)
