"""Reference markers inside stored strings, and the escaping that keeps them unforgeable.

A stored string carries `[secret:vault:<id>]`, `[secret:env:<NAME>]` or `[secret:redacted:<fp>]`
where a secret was. Input text that already contains `[secret:` (say, a prompt-injected tool
output naming `[secret:env:AWS_SECRET_ACCESS_KEY]`) would otherwise be resolved like a real
reference and leak a secret on read, so input is escaped on the way in: `[secret` followed by k
`!` and `:` gains one `!`. Reads undo exactly that, so user text round-trips unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable

REFERENCE = re.compile(r"\[secret:(vault|env|redacted):([A-Za-z0-9_]{1,128})\]")
_FORGED = re.compile(r"\[secret(!*):")
_ESCAPED = re.compile(r"\[secret!(!*):")


def marker(scheme: str, ident: str) -> str:
    return f"[secret:{scheme}:{ident}]"


def escape_text(text: str) -> str:
    if "[secret" not in text:
        return text
    return _FORGED.sub(lambda m: f"[secret!{m.group(1)}:", text)


def unescape_text(text: str) -> str:
    if "[secret!" not in text:
        return text
    return _ESCAPED.sub(lambda m: f"[secret{m.group(1)}:", text)


def resolve_text(text: str, lookup: Callable[[str, str], str | bytes]) -> str | bytes:
    """Replace genuine markers with lookup(scheme, ident), then unescape escaped input.

    A string that is exactly one marker resolves to the secret itself (bytes stay bytes).
    """
    if "[secret" not in text:
        return text
    whole = REFERENCE.fullmatch(text)
    if whole is not None:
        return lookup(whole.group(1), whole.group(2))
    pieces: list[str] = []
    last = 0
    for match in REFERENCE.finditer(text):
        pieces.append(unescape_text(text[last : match.start()]))
        found = lookup(match.group(1), match.group(2))
        pieces.append(found if isinstance(found, str) else found.decode("utf-8", "replace"))
        last = match.end()
    pieces.append(unescape_text(text[last:]))
    return "".join(pieces)


def references_in(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in REFERENCE.finditer(text)]
