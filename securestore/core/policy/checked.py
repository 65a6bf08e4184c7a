"""The one key check: a key is an identifier, never redacted, so it must not hold a credential."""

from __future__ import annotations

from ...errors import SecretInKeyError
from ..secrets.detect import contains_secret
from .keys import encode_name, normalize_key


def checked_key(raw: object, *, what: str, max_bytes: int) -> str:
    """normalize_key, plus: a key is an identifier and is never redacted, so it must not hold
    a credential."""
    key = normalize_key(raw, what=what, max_bytes=max_bytes)
    if contains_secret(key):
        raise SecretInKeyError(f"{what} looks like it contains a credential; keys are never redacted")
    return key


def session_name(raw: object, max_bytes: int) -> tuple[str, str]:
    """The one check of a session key: (the normalized key, its directory name)."""
    key = checked_key(raw, what="session key", max_bytes=max_bytes)
    return key, encode_name(key)


def slot_key(raw: object, max_bytes: int) -> str:
    """The one check of a slot name."""
    return checked_key(raw, what="slot name", max_bytes=max_bytes)
