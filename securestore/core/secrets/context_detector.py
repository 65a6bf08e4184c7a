"""Context detectors (pure): a pattern, the group that holds the secret, a check that the value
is a literal secret; and the pass that runs them over a text."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .finding import Finding


@dataclass(frozen=True)
class ContextDetector:
    kind: str
    pattern: re.Pattern[str]
    group: int = 0  # -1: the first group that matched, other than `key`, `sep` and `query`
    accept: Callable[[re.Match[str], str], bool] | None = None
    generic: bool = False  # context rules yield to vendor formats found at the same place
    # An ASCII text can only match if its lowercase form contains one of these: the pass is skipped
    # otherwise (most strings name no credential at all).
    needs: tuple[str, ...] = ()
    # Where a match can start, in increasing order (a superset of the real starts): the pattern is
    # then tried there only, instead of at every character (None: everywhere).
    starts: Callable[[str], Iterator[int]] | None = None
    needs_any: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # One search for "any of the words occurs" (an alternation finds any occurrence of any word).
        words = "|".join(re.escape(word) for word in self.needs)
        object.__setattr__(self, "needs_any", re.compile(words) if self.needs else None)


def _value_span(detector: ContextDetector, match: re.Match[str]) -> tuple[int, int] | None:
    if detector.group >= 0:
        return match.span(detector.group)
    context = {match.re.groupindex.get(name) for name in ("key", "sep", "query")}
    for index in range(1, (match.re.groups or 0) + 1):  # the first value alternative that matched
        if index not in context and match.group(index) is not None:
            return match.span(index)
    return None


def context_findings(text: str, detectors: tuple[ContextDetector, ...], lowered: str | None) -> list[Finding]:
    """Every accepted match of every detector, in detector order. `lowered`: `text.lower()` for
    an ASCII text, else None (then every detector runs: only for ASCII do `lower()` and the
    patterns' case-insensitive matching agree exactly)."""
    found: list[Finding] = []
    for detector in detectors:
        if lowered is not None and detector.needs_any is not None and detector.needs_any.search(lowered) is None:
            continue
        for match in detector.pattern.finditer(text) if detector.starts is None else _matches_at(detector, text):
            span = _value_span(detector, match)
            if span is None or span[0] == span[1]:
                continue
            if detector.accept is not None and not detector.accept(match, text[span[0] : span[1]]):
                continue
            found.append(Finding(span[0], span[1], detector.kind, detector.generic))
    return found


def _matches_at(detector: ContextDetector, text: str) -> Iterator[re.Match[str]]:
    """What finditer yields, trying only the candidate starts: a match ends the search for
    others before its end, exactly as finditer resumes after it."""
    if detector.starts is None:  # pragma: no cover - the caller checked
        return
    resume = 0
    for start in detector.starts(text):
        if start < resume:
            continue
        match = detector.pattern.match(text, start)
        if match is not None:
            resume = match.end()
            yield match
