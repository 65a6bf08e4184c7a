"""A finding (the span of a secret in a text) and how overlapping findings merge (pure)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Finding:
    start: int
    end: int
    kind: str
    generic: bool = False


def merge_findings(found: list[Finding]) -> list[Finding]:
    """Non-overlapping spans, in order; `found` is sorted in place.

    Overlapping findings are merged into one span (a secret partly covered by another match is
    still redacted whole). One exception: where a vendor format and a generic rule start at the
    same place, the vendor format defines the extent (`x-access-token:ghp_...@host` keeps @host).
    """
    found.sort(key=lambda f: (f.start, f.generic, -(f.end - f.start)))
    kept: list[Finding] = []
    for finding in found:
        if kept and finding.generic and not kept[-1].generic and kept[-1].start == finding.start:
            continue
        if kept and finding.start < kept[-1].end:
            last = kept[-1]
            kept[-1] = Finding(last.start, max(last.end, finding.end), last.kind, last.generic)
            continue
        kept.append(finding)
    return kept

