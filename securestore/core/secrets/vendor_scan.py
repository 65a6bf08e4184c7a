"""Vendor tokens in a text: the rule table compiled into ONE alternation, scanned once (pure)."""

from __future__ import annotations

import re

from .finding import Finding
from .plausibility import FILLER
from .vendor_rules import VENDOR_RULES


def _compile_vendor_rules() -> tuple[re.Pattern[str], dict[str, tuple[str, str | None]]]:
    """One alternation; an empty marker group `v<i>` closes each rule, so `lastgroup` names it."""
    parts: list[str] = []
    rules: dict[str, tuple[str, str | None]] = {}
    for index, (kind, pattern) in enumerate(VENDOR_RULES):
        if not re.match(r"[A-Za-z0-9_\-]", pattern):  # a programming error, caught at import
            raise ValueError(f"vendor rule {kind} must start with a literal character to keep one fast pass")
        secret = f"s{index}" if "(?P<secret>" in pattern else None
        if secret is not None:
            pattern = pattern.replace("(?P<secret>", f"(?P<{secret}>")
        parts.append(f"{pattern}(?P<v{index}>)")
        rules[f"v{index}"] = (kind, secret)
    return re.compile("|".join(parts)), rules


_VENDOR, _VENDOR_BY_MARKER = _compile_vendor_rules()

_MAX_NESTED = 8


def vendor_findings(text: str) -> list[Finding]:
    """Vendor tokens, overlapping: a token glued inside another match (`whsec_...gho_...`) that
    runs past its end is found too (finditer would resume after the first match)."""
    found: list[Finding] = []
    covered_to = nested = 0
    match = _VENDOR.search(text)
    while match is not None:
        kind, secret = _VENDOR_BY_MARKER[match.lastgroup or ""]
        start, end = match.span(secret) if secret is not None else match.span()
        if kind == "pem-private-key" or not FILLER.search(text, start, end):
            found.append(Finding(start, end, kind))  # else a placeholder from documentation, not a key
        nested = nested + 1 if match.end() <= covered_to else 0
        covered_to = max(covered_to, match.end())
        # Matches nested in one span add nothing; after many, skip to its end so that a long run of
        # them (`sk-ant-aa-sk-ant-aa-...`, hostile input) costs linear, not quadratic, time. Only a
        # token glued after more than _MAX_NESTED nested ones and running past the span is missed.
        match = _VENDOR.search(text, match.start() + 1 if nested < _MAX_NESTED else covered_to)
    return found
