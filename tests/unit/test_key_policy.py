"""Key and value policy (core/policy/), sans IO: normalization, refused keys, the filename
encoding and its inverse, value caps, strict JSON parsing. Errors never echo the input."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from securestore.core.policy import checked_key
from securestore.config import Limits
from securestore.core.policy import (
    check_value,
    decode_plain_name,
    encode_name,
    is_forbidden_key,
    is_hashed_name,
    is_session_name,
    name_matches_key,
    normalize_key,
    parse_json_text,
    render_path,
)
from securestore.errors import (
    ForbiddenKeyError,
    InvalidKeyError,
    InvalidValueError,
    LimitExceededError,
    SecretInKeyError,
)

LIMITS = Limits()


def test_keys_are_nfc_normalized_and_trimmed() -> None:
    decomposed = "  cafe\u0301/run 1\n"
    assert normalize_key(decomposed, what="session key", max_bytes=64) == "caf\u00e9/run 1"


@pytest.mark.parametrize(("raw", "error", "words"), [
    (42, InvalidKeyError, "must be a string"),
    ("   ", InvalidKeyError, "is empty"),
    ("x" * 65, InvalidKeyError, "is 65 UTF-8 bytes, limit 64"),
    ("\u00e9" * 33, InvalidKeyError, "is 66 UTF-8 bytes, limit 64"),  # counted in bytes, not characters
    ("a\x00b", InvalidKeyError, "control character U+0000"),
    ("a\u202eb", InvalidKeyError, "control character U+202E"),  # a bidi override ("Trojan Source")
    ("bad\ud800", InvalidKeyError, "lone surrogate"),
    ("__proto__", ForbiddenKeyError, "reserved prototype/dunder name"),
    (" constructor ", ForbiddenKeyError, "reserved prototype/dunder name"),  # refused once trimmed
    ("__globals__", ForbiddenKeyError, "reserved prototype/dunder name"),
])
def test_unsafe_keys_are_refused_without_echoing_them(raw: object, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=re.escape(words)) as info:
        normalize_key(raw, what="session key", max_bytes=64)
    if isinstance(raw, str) and raw.strip():
        assert raw.strip() not in str(info.value)


def test_forbidden_keys_include_every_dunder_but_not_lookalikes() -> None:
    assert is_forbidden_key("__proto__") and is_forbidden_key("prototype") and is_forbidden_key("__init__")
    assert not is_forbidden_key("_proto_") and not is_forbidden_key("proto") and not is_forbidden_key("__x")


def test_a_key_holding_a_credential_is_refused_without_echo() -> None:
    token = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"
    with pytest.raises(SecretInKeyError, match="looks like it contains a credential") as info:
        checked_key(f"session {token}", what="session key", max_bytes=200)
    assert token not in str(info.value)
    assert checked_key("session 42", what="session key", max_bytes=200) == "session 42"


def test_names_are_lowercase_base32_up_to_120_bytes_and_a_hash_beyond() -> None:
    assert encode_name("a") == "k-me"
    assert encode_name("agent:main") == "k-mftwk3tuhjwwc2lo"
    plain = "x" * 120
    assert encode_name(plain).startswith("k-") and decode_plain_name(encode_name(plain)) == plain
    long = "x" * 121
    digest = hashlib.sha256(long.encode()).digest()
    assert encode_name(long) == "h-" + base64.b32encode(digest).decode().rstrip("=").lower()
    assert is_hashed_name(encode_name(long)) and decode_plain_name(encode_name(long)) is None
    # Case-insensitive filesystems: two keys differing only in case never share a name in any case.
    assert encode_name("Key").lower() != encode_name("key").lower()


def test_only_canonical_names_decode_and_match_their_key() -> None:
    name = encode_name("agent:main")
    assert is_session_name(name) and decode_plain_name(name) == "agent:main"
    assert name_matches_key(name, "agent:main") and not name_matches_key(name, "agent:other")
    for forged in ("k-MFTWK3TUHJWWC2LO", "k-mftwk3tuhjwwc2lo=", "k-", "x-me", "k-me/..", "h-" + "a" * 51):
        assert not is_session_name(forged) and decode_plain_name(forged) is None, forged
    assert decode_plain_name("k-74") is None  # decodes to bytes that are not UTF-8
    # "k-mf" has the shape of a name and decodes to "a" (the spare bits differ from "k-me"): a
    # second directory for one key, so it is refused.
    assert is_session_name("k-mf") and decode_plain_name("k-mf") is None


def test_value_caps_name_the_path_and_the_rule_never_the_value() -> None:
    small = Limits(max_depth=3, max_string_bytes=8, max_nodes=10)
    assert check_value({"a": [1, "two", None, 2.5]}, small) == 6
    cases = [
        ({"a": {"b": {"c": {}}}}, LimitExceededError, "at $.a.b.c: nested deeper than 3"),
        ({"a": ["x" * 9]}, LimitExceededError, "at $.a[0]: string of 9 bytes exceeds 8"),
        (list(range(11)), LimitExceededError, "more than 10 nodes"),
        ({"n": float("nan")}, InvalidValueError, "at $.n: NaN and infinity are not JSON"),
        ({"n": 1 << 64}, LimitExceededError, "integer outside the signed"),
        ({"s": {1, 2}}, InvalidValueError, "unsupported type set"),
        ({"x": {"__proto__": 1}}, ForbiddenKeyError, "at $.x.__proto__: prototype/dunder key"),
        ({"k": "\ud800"}, InvalidValueError, "lone surrogate"),
    ]
    for value, error, words in cases:
        with pytest.raises(error, match=re.escape(words)):
            check_value(value, small)


def test_paths_quote_unusual_keys_and_hide_credential_looking_ones() -> None:
    assert render_path(("a", 2, "b c", "x" * 50)) == '$.a[2]["b c"]["' + "x" * 37 + '..."]'
    assert render_path(("a", "sk-secret"), hide=lambda key: key.startswith("sk-")) == "$.a[?]"


@pytest.mark.parametrize(("text", "error", "words"), [
    (b'{"a": 1, "a": 2}', InvalidValueError, "duplicate key"),
    (b'{"a": NaN}', InvalidValueError, "NaN is not valid JSON"),
    (b"[1, 2", InvalidValueError, "not valid JSON: .* at line 1 column 6"),
    (b'"\xff"', InvalidValueError, "not valid UTF-8"),
    (b"1" + b"0" * 4400, LimitExceededError, "integer literal of 4401 digits"),
])
def test_untrusted_json_is_parsed_strictly(text: bytes, error: type[Exception], words: str) -> None:
    with pytest.raises(error, match=words):
        parse_json_text(text, LIMITS)


def test_valid_json_parses_to_plain_values() -> None:
    assert parse_json_text(b'{"a": [1, 2.5, "x", true, null]}', LIMITS) == {"a": [1, 2.5, "x", True, None]}

