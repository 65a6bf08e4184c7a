"""Key policy (pure): normalization, prototype-key rejection, and filename encoding.

Filenames use lowercase base32, not base64: base64 is case-sensitive, so on a case-insensitive
filesystem (macOS by default, ext4 casefold directories) two keys could share one directory.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import unicodedata

from ...errors import ForbiddenKeyError, InvalidKeyError

MAX_PLAIN_KEY_BYTES = 120
PLAIN_PREFIX = "k-"
HASHED_PREFIX = "h-"

# Keys that mean something to a JavaScript object or a Python object model. Stored data is read
# by agent runtimes in both languages; such keys are refused wherever they appear.
PROTOTYPE_KEYS = frozenset(
    {
        "__proto__",
        "prototype",
        "constructor",
        "__defineGetter__",
        "__defineSetter__",
        "__lookupGetter__",
        "__lookupSetter__",
    }
)
_DUNDER = re.compile(r"\A__\w+__\Z", re.ASCII)

# Bidirectional controls make a key render differently from what it is ("Trojan Source").
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_NAME_PATTERN = re.compile(r"\A(?:k-[a-z2-7]+|h-[a-z2-7]{52})\Z", re.ASCII)


def is_forbidden_key(key: str) -> bool:
    """True for prototype-style keys and Python dunder names, in raw or NFC form."""
    if key.isascii():  # NFC leaves ASCII as it is
        return key in PROTOTYPE_KEYS or _DUNDER.match(key) is not None
    for form in (key, unicodedata.normalize("NFC", key)):
        if form in PROTOTYPE_KEYS or _DUNDER.match(form):
            return True
    return False


def normalize_key(raw: object, *, what: str, max_bytes: int) -> str:
    """NFC-normalize and trim a session key or slot name; reject anything unsafe.

    The error never echoes the key: it could be anything, including a credential.
    """
    if not isinstance(raw, str):
        raise InvalidKeyError(f"{what} must be a string")
    try:
        key = unicodedata.normalize("NFC", raw).strip()
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidKeyError(f"{what} is not valid Unicode (lone surrogate)") from None
    if not key:
        raise InvalidKeyError(f"{what} is empty")
    if size > max_bytes:
        raise InvalidKeyError(f"{what} is {size} UTF-8 bytes, limit {max_bytes}")
    for char in key:
        if unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS:
            raise InvalidKeyError(f"{what} contains control character U+{ord(char):04X}")
    if is_forbidden_key(key):
        raise ForbiddenKeyError(f"{what} is a reserved prototype/dunder name")
    return key


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


def encode_name(key: str) -> str:
    """Filename for a normalized key: reversible up to 120 bytes, a SHA-256 name beyond."""
    if len(key) <= MAX_PLAIN_KEY_BYTES:  # at most that many bytes: only short keys are cached
        return _plain_name(key)
    return _encode(key)


@functools.lru_cache(maxsize=4096)  # every read and listed summary re-encodes its key
def _plain_name(key: str) -> str:
    return _encode(key)


def _encode(key: str) -> str:
    data = key.encode("utf-8")
    if len(data) <= MAX_PLAIN_KEY_BYTES:
        return PLAIN_PREFIX + _b32(data)
    return HASHED_PREFIX + _b32(hashlib.sha256(data).digest())


def is_session_name(name: str) -> bool:
    """Has the shape of an encoded key (plain or hashed)."""
    return bool(_NAME_PATTERN.match(name))


def is_hashed_name(name: str) -> bool:
    return name.startswith(HASHED_PREFIX)


def decode_plain_name(name: str) -> str | None:
    """The key encoded in a plain name, or None if `name` is not a valid plain encoding."""
    if not _NAME_PATTERN.match(name) or not name.startswith(PLAIN_PREFIX):
        return None
    body = name[len(PLAIN_PREFIX) :].upper()
    try:
        key = base64.b32decode(body + "=" * (-len(body) % 8)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    return key if encode_name(key) == name else None


def name_matches_key(name: str, key: str) -> bool:
    """A directory is trusted only if its name re-encodes from the key stored inside it."""
    return encode_name(key) == name


_SHOWN_KEY_CHARS = 80
# C0/C1 controls, DEL, and the format characters that reorder or hide text: the bidi controls
# keys may not hold anyway, and the zero-width ones they may.
_UNSHOWABLE = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)]} | {
    ord(c): f"\\u{ord(c):04x}" for c in [*_BIDI_CONTROLS, "\u200b", "\u200c", "\u200d", "\ufeff"]}


def describe_key(key: str | None, name: str) -> str:
    """How an error names a session: the key as the user typed it (quoted, control characters
    escaped, long keys shortened), else, when only the directory is known, its name."""
    if key is None:
        return name
    shown = key if len(key) <= _SHOWN_KEY_CHARS else key[:_SHOWN_KEY_CHARS - 3] + "..."
    return '"' + shown.replace("\\", "\\\\").replace('"', '\\"').translate(_UNSHOWABLE) + '"'
