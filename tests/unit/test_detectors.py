"""The detector's fast paths skip work only where no rule can match: the facts they rest on are
checked here against the rule table itself, and each fast path against the plain scan."""

from __future__ import annotations

import random
import re
from re import _parser  # the regex parser: a pattern's minimum width, from the pattern itself

from tests.support.corpus import benign_corpus, secret_corpus

from securestore.core.secrets import detect, vendor_scan
from securestore.core.secrets.context_detector import context_findings
from securestore.core.secrets.credential_assignments import ASSIGNMENT
from securestore.core.secrets.vendor_rules import VENDOR_RULES


def _min_width(pattern: str, flags: int = 0) -> int:
    return int(_parser.parse(pattern, flags).getwidth()[0])


def _texts() -> list[str]:
    return [m if isinstance(m, str) else m["content"] for m in benign_corpus()] + \
        [planted.message["content"] for planted in secret_corpus()]


def test_no_rule_matches_fewer_characters_than_the_shortest_match() -> None:
    widths = [_min_width(d.pattern.pattern, d.pattern.flags) for d in detect._CONTEXT_DETECTORS]
    widths += [_min_width(pattern) for _, pattern in VENDOR_RULES]
    assert min(widths) >= detect.SHORTEST_MATCH


def test_every_unspaced_vendor_rule_matches_one_long_run_of_token_characters() -> None:
    token = re.compile(f"[{vendor_scan.TOKEN_CHARS}]+")
    for kind, pattern in VENDOR_RULES:
        if kind in vendor_scan.SPACED_RULES:
            continue
        assert _min_width(pattern) >= vendor_scan.SHORTEST_TOKEN, kind
        # what the rule matches in the secret corpus is one run of token characters
        for planted in secret_corpus():
            for match in re.finditer(pattern, planted.message["content"]):
                assert token.fullmatch(match.group(0)), (kind, match.group(0))


def _random_vendor_text(rng: random.Random) -> str:
    prefixes = [re.match(r"[A-Za-z0-9_\-]+", p).group(0) for _, p in VENDOR_RULES]  # type: ignore[union-attr]
    prefixes += ["sig=", "?sig=", "Unseal Key 1: ", "https://hooks.slack.com/services/", "-----BEGIN RSA PRIVATE KEY-----",
                 ".eyJ", "AccountKey="]
    alphabet = "abcdefABCDEF0123456789_-+/=.:% xyz\n"
    parts = []
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.5:
            parts.append(rng.choice(prefixes))
        parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80))))
    return "".join(parts)


def test_the_factored_vendor_scan_and_its_gate_find_what_the_plain_alternation_finds() -> None:
    """The trie-factored alternation and the long-token gate against one plain alternation of
    the rules in order, on both corpora and on random texts built from the rules' prefixes."""
    parts = []
    for index, (_, pattern) in enumerate(VENDOR_RULES):
        parts.append(pattern.replace("(?P<secret>", f"(?P<s{index}>") + f"(?P<v{index}>)")
    plain = re.compile("|".join(parts))
    factored = vendor_scan._VENDOR
    rng = random.Random(7)
    texts = _texts() + [_random_vendor_text(rng) for _ in range(3000)]
    try:
        vendor_scan._VENDOR = plain
        gate = vendor_scan._LONG_TOKEN
        vendor_scan._LONG_TOKEN = re.compile("")  # every text scanned
        expected = [vendor_scan.vendor_findings(text) for text in texts]
    finally:
        vendor_scan._VENDOR, vendor_scan._LONG_TOKEN = factored, gate
    assert [vendor_scan.vendor_findings(text) for text in texts] == expected
    assert sum(map(len, expected)) > 100  # the texts do hold tokens


def test_assignments_are_found_at_their_separators_as_a_scan_of_every_word_finds_them() -> None:
    rng = random.Random(11)
    keys = ["password", "db_password", "apiKey", "X-Api-Key", "token", "auth", "client_secret", "pwd", "PGPASSWORD",
            "next_token", "a.b.key", "x" * 93 + "key", "y" * 97 + "token", "cookie", "pat"]
    separators = ["=", ": ", " = ", ":", "\\\":", "\":", "':", "\t=\t", "==", "=:"]
    values = ["\"hunter2hunter2\"", "'S3cr3t!x9'", "`abcd1234efgh`", "correcthorsebattery", "getpass()", "${X}",
              "\\\"Zq9!xY2#\\\"", "Qw8#rT5$yU1%", "passwd)"]
    glue = [" ", "\n", ", ", "&", "?", "(", "{\"", "'", "\\", "-", "_", ".", ""]

    def text() -> str:
        return "".join(rng.choice(glue) + rng.choice(keys) + rng.choice(separators) + rng.choice(values)
                       for _ in range(rng.randint(1, 6)))

    everywhere = type(ASSIGNMENT)(ASSIGNMENT.kind, ASSIGNMENT.pattern, ASSIGNMENT.group, ASSIGNMENT.accept,
                                  ASSIGNMENT.generic, ASSIGNMENT.needs)  # no `starts`: finditer over the text
    texts = _texts() + [text() for _ in range(3000)]
    found = [context_findings(t, (ASSIGNMENT,), t.lower() if t.isascii() else None) for t in texts]
    assert found == [context_findings(t, (everywhere,), t.lower() if t.isascii() else None) for t in texts]
    assert sum(map(len, found)) > 1000
