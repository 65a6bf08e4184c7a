"""Credential detection, the entry point (pure): find the secret part of a string; the rest is kept.

Vendor formats (vendor_rules.py, one pass in vendor_scan.py) are anchored on vendor prefixes
where they exist (few false positives). Context rules (structured_detectors.py: AWS pairs,
headers, URLs with a password, netrc, `password is ...`; credential_assignments.py:
`password=`-style fields) check that the value is plausible (plausibility.py), so that source
code such as `password = getpass()` or `token=request.headers.get(...)` is not flagged.
"""

from __future__ import annotations

import re

from .context_detector import ContextDetector, context_findings
from .credential_assignments import ASSIGNMENT
from .finding import Finding, merge_findings
from .structured_detectors import (
    AUTHORIZATION_HEADER,
    AWS_SECRET_ACCESS_KEY,
    BEARER_TOKEN,
    NETRC_PASSWORD,
    PASSWORD_PHRASE,
    URL_CREDENTIALS,
)
from .vendor_rules import VENDOR_RULES
from .vendor_scan import vendor_findings

__all__ = ["DETECTOR_KINDS", "Finding", "contains_secret", "find_secrets", "scrub_text"]

# The order matters: where two rules find the same span, the earlier one names it.
_CONTEXT_DETECTORS: tuple[ContextDetector, ...] = (
    AWS_SECRET_ACCESS_KEY,
    AUTHORIZATION_HEADER,
    BEARER_TOKEN,
    URL_CREDENTIALS,
    NETRC_PASSWORD,
    ASSIGNMENT,
    PASSWORD_PHRASE,
)


def _unique(kinds: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(kinds))


DETECTOR_KINDS: tuple[str, ...] = _unique([kind for kind, _ in VENDOR_RULES] + [d.kind for d in _CONTEXT_DETECTORS])


# No rule matches fewer characters (tests/unit/test_detectors.py proves it from the patterns).
SHORTEST_MATCH = 6
# Every word some context rule needs: an ASCII text holding none of them skips them all.
_ANY_CONTEXT_WORD = re.compile("|".join(re.escape(word) for word in dict.fromkeys(
    word for detector in _CONTEXT_DETECTORS for word in detector.needs)))
if not all(detector.needs for detector in _CONTEXT_DETECTORS):  # a programming error, caught at import
    raise ValueError("every context detector must name the words it needs")


def find_secrets(text: str) -> list[Finding]:
    """Non-overlapping spans to redact, in order (finding.merge_findings says how overlaps merge)."""
    if len(text) < SHORTEST_MATCH:
        return []
    found = vendor_findings(text)
    lowered = text.lower() if text.isascii() else None
    if lowered is None or _ANY_CONTEXT_WORD.search(lowered) is not None:
        found += context_findings(text, _CONTEXT_DETECTORS, lowered)
    return merge_findings(found) if found else found


def contains_secret(text: str) -> bool:
    return bool(find_secrets(text))


def scrub_text(text: str) -> str:
    """Replace detected secrets by a fixed mask. For messages and logs, not for stored data."""
    findings = find_secrets(text)
    for finding in reversed(findings):
        text = text[: finding.start] + f"[secret:{finding.kind}]" + text[finding.end :]
    return text
