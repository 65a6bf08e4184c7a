"""Vendor tokens in a text: the rule table compiled into ONE alternation, scanned once (pure)."""

from __future__ import annotations

import re

from .finding import Finding
from .plausibility import FILLER
from .vendor_rules import VENDOR_RULES


_LITERAL = re.compile(r"[A-Za-z0-9_\-]+")


def _literal_prefix(pattern: str) -> str:
    """The pattern's leading literal characters (one that a quantifier follows is not literal)."""
    match = _LITERAL.match(pattern)
    if match is None:
        raise ValueError(f"vendor rule {pattern!r} must start with a literal character to keep one fast pass")
    literal = match.group(0)
    return literal[:-1] if pattern[len(literal):len(literal) + 1] in ("?", "*", "+", "{") else literal


def _top_level_alternation(pattern: str) -> bool:
    depth, escaped, in_class = 0, False, False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
    return False


def _trie(rules: list[tuple[str, str]], depth: int) -> str:
    """Rules as (literal prefix, branch), factored on their literal prefixes. Branches whose next
    literal characters differ can never match at the same position, so grouping them keeps the
    alternation's meaning (the first rule that matches at a position wins); where a rule's
    literal ends at this depth, the rest stay in their original order, unfactored."""
    if len(rules) == 1 or any(len(prefix) == depth for prefix, _ in rules):
        branches = [re.escape(prefix[depth:]) + branch for prefix, branch in rules]
        return branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
    groups: dict[str, list[tuple[str, str]]] = {}
    for prefix, branch in rules:
        groups.setdefault(prefix[depth], []).append((prefix, branch))
    parts = [re.escape(char) + _trie(group, depth + 1) for char, group in groups.items()]
    return parts[0] if len(parts) == 1 else "(?:" + "|".join(parts) + ")"


def _compile_vendor_rules() -> tuple[re.Pattern[str], dict[str, tuple[str, str | None]]]:
    """One alternation, factored on the rules' literal prefixes (a trie: at each position the
    engine follows the one branch whose characters match, instead of trying every rule); an
    empty marker group `v<i>` closes each rule, so `lastgroup` names it."""
    branches: list[tuple[str, str]] = []
    rules: dict[str, tuple[str, str | None]] = {}
    for index, (kind, pattern) in enumerate(VENDOR_RULES):
        if _top_level_alternation(pattern):  # a programming error, caught at import
            raise ValueError(f"vendor rule {kind} must be one alternative (wrap it in a group)")
        prefix = _literal_prefix(pattern)
        secret = f"s{index}" if "(?P<secret>" in pattern else None
        rest = pattern[len(prefix):]
        if secret is not None:
            rest = rest.replace("(?P<secret>", f"(?P<{secret}>")
        branches.append((prefix, f"(?:{rest})(?P<v{index}>)"))
        rules[f"v{index}"] = (kind, secret)
    return re.compile(_trie(branches, 0)), rules


_VENDOR, _VENDOR_BY_MARKER = _compile_vendor_rules()

_MAX_NESTED = 8


# Every rule but these matches one run of token characters at least SHORTEST_TOKEN long (a URL
# counts: `:` and `/` are token characters); tests/unit/test_detectors.py checks both facts on
# the rule table. A text without such a run, or these literals, holds no vendor token: most
# prose is skipped with one cheap search.
SPACED_RULES = frozenset({"pem-private-key", "vault-unseal-key"})
_SPACED_LITERALS = ("-----BEGIN", "Unseal Key", "Recovery Key")
TOKEN_CHARS = r"A-Za-z0-9_\-+/=.:%"
SHORTEST_TOKEN = 12
_LONG_TOKEN = re.compile(f"[{TOKEN_CHARS}]{{{SHORTEST_TOKEN}}}")


def vendor_findings(text: str) -> list[Finding]:
    """Vendor tokens, overlapping: a token glued inside another match (`whsec_...gho_...`) that
    runs past its end is found too (finditer would resume after the first match)."""
    found: list[Finding] = []
    if _LONG_TOKEN.search(text) is None and not any(literal in text for literal in _SPACED_LITERALS):
        return found
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
