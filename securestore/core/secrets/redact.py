"""Redaction (pure): replace every secret in a value by a reference before it is persisted."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from pydantic import SecretBytes, SecretStr

from ...errors import LimitExceededError, SecretInKeyError
from ..policy.limits import render_path
from .credential_keys import is_bare_pass, is_credential_container, is_credential_key, is_stand_in
from .detect import contains_secret, find_secrets
from .markers import escape_text, marker, resolve_text, unescape_text
from .types import Secret

SECRET_TYPES: tuple[type, ...] = (Secret, SecretStr, SecretBytes)
_PAIR_NAMES = ("name", "Name", "key", "Key", "header", "Header")
_PAIR_VALUES = frozenset({"value", "Value", "val"})


class SecretSink(Protocol):
    """Where a secret value goes. Returns (scheme, ident): ("vault", id) or ("redacted", fp)."""

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]: ...


@dataclass
class Redaction:
    value: Any
    found: Counter[str] = field(default_factory=Counter)

    @property
    def count(self) -> int:
        return sum(self.found.values())


def redact(value: Any, sink: SecretSink, *, max_secrets: int) -> Redaction:
    """A copy of `value` with typed secrets and detected credentials replaced by markers.

    The key decides as well as the value: every string under a credential-named key
    (`password`, `client_secret`, `X-Api-Key`, `SecretAccessKey`, ...; see credential_keys.py),
    at any depth below it, becomes ONE reference whatever its format, unless it is empty or an
    obvious stand-in (`****`, `${VAR}`, `<token>`, `none`, ...); so does the value of a
    name/value pair whose name is credential-named (`{"name": "X-Api-Key", "value": ...}`,
    `["Authorization", ...]`). Booleans, numbers and null are kept as they are.

    Object keys are never rewritten (that could merge two keys): a key that looks like a
    credential is rejected instead.
    """
    result = Redaction(value=None)

    def note(kind: str) -> None:
        result.found[kind] += 1
        if result.count > max_secrets:
            raise LimitExceededError(f"value holds more than {max_secrets} secrets")

    def text(raw: str) -> str:
        escaped = escape_text(raw)
        findings = find_secrets(escaped)
        if raw[:1] in ("{", "[") and _json_text_hides_secret(raw, escaped, findings):
            # JSON held as a string (tool-call arguments, a tool's output): the key rules above
            # cannot see its fields, and the free-text rules missed one; keep it whole.
            note("json-text")
            return marker(*sink.keep(raw, "json-text"))
        if not findings:
            return escaped
        pieces: list[str] = []
        last = 0
        for finding in findings:
            note(finding.kind)
            pieces.append(escaped[last : finding.start])
            pieces.append(marker(*sink.keep(escaped[finding.start : finding.end], finding.kind)))
            last = finding.end
        pieces.append(escaped[last:])
        return "".join(pieces)

    def credential(raw: str) -> str:
        """The whole value under a credential-named key, kept as one secret."""
        if is_stand_in(raw):
            return text(raw)
        note("credential-field")
        return marker(*sink.keep(raw, "credential-field"))

    def field(node: Any, path: tuple[object, ...]) -> Any:
        """A value under a credential-named key: every string in it, at any depth, is a
        credential (`{"password": {"value": ...}}`, `{"credentials": {"pw": ...}}`)."""
        if isinstance(node, str):
            return credential(node)
        if isinstance(node, dict):
            return {checked_key(key, path): field(child, path + (key,)) for key, child in node.items()}
        if isinstance(node, (list, tuple)):
            return [field(child, path + (index,)) for index, child in enumerate(node)]
        return walk(node, path)

    def checked_key(key: str, path: tuple[object, ...]) -> str:
        if not _plain_key(key):
            raise SecretInKeyError(
                f"value rejected at {render_path(path + (key,), hide=contains_secret)}: "
                "an object key looks like a credential; keys are never redacted"
            )
        return escape_text(key)

    def names_credential(name: object) -> bool:
        return isinstance(name, str) and is_credential_key(name)

    def walk(node: Any, path: tuple[object, ...]) -> Any:
        if isinstance(node, str):
            return text(node)
        if isinstance(node, dict):
            # A name/value pair (HAR headers, Kubernetes env): the name says what the value is.
            paired = next((node[k] for k in _PAIR_NAMES if k in node), None)
            out: dict[str, Any] = {}
            for key, child in node.items():
                credential_value = (is_credential_key(key) or (key in _PAIR_VALUES and names_credential(paired))
                                    or (isinstance(child, dict) and is_credential_container(key))
                                    or (isinstance(child, str) and is_bare_pass(key, node)))
                out[checked_key(key, path)] = (field if credential_value else walk)(child, path + (key,))
            return out
        if isinstance(node, (list, tuple)):
            if len(node) == 2 and names_credential(node[0]):  # a [name, value] pair
                return [walk(node[0], path + (0,)), field(node[1], path + (1,))]
            return [walk(child, path + (index,)) for index, child in enumerate(node)]
        if isinstance(node, Secret):
            note("typed")
            if node.env_name is not None:
                return marker("env", node.env_name)
            return marker(*sink.keep(node.reveal(), "typed"))
        if isinstance(node, SecretStr):
            note("typed")
            return marker(*sink.keep(node.get_secret_value(), "typed"))
        if isinstance(node, SecretBytes):
            note("typed")
            return marker(*sink.keep(node.get_secret_value(), "typed"))
        return node

    result.value = walk(value, ())
    return result


class _Found(Exception):
    """The first secret a probe met: the answer is known."""


class _Stop:
    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        raise _Found


def holds_secret(value: Any) -> bool:
    """Would redacting `value` take anything (by key as well as by the free-text rules)? A key
    that looks like a credential, or nesting too deep to walk, counts as yes (the safe side)."""
    try:
        redact(value, _Stop(), max_secrets=1 << 30)
    except (_Found, SecretInKeyError, RecursionError):
        return True
    return False


class _Recorder:
    """A sink that keeps nothing: it notes which values the structured rules would take."""

    def __init__(self) -> None:
        self.values: list[str] = []

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        self.values.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
        return "redacted", "probe"


def _json_text_hides_secret(raw: str, escaped: str, findings: list[Any]) -> bool:
    """Does `raw`, parsed as a JSON object or array, hold a secret (by the key rules as well as
    the free-text ones) that the free-text findings of `escaped` leave in clear?"""
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(parsed, (dict, list)):
        return False
    probe = _Recorder()
    try:
        redact(parsed, probe, max_secrets=1 << 30)
    except (SecretInKeyError, RecursionError):  # a credential-looking key, or too deep to check
        return True
    if not probe.values:
        return False
    clear, last = [], 0
    for finding in findings:
        clear.append(escaped[last:finding.start])
        last = finding.end
    clear.append(escaped[last:])
    forms = {form for value in probe.values if value
             for form in (value, orjson.dumps(value).decode()[1:-1])}  # as parsed, and as JSON-escaped
    return any(form in part for part in clear for form in forms)


_PLAIN_KEYS: dict[str, None] = {}  # object keys found to hold no secret (keys repeat across values)
_MAX_PLAIN_KEYS = 4096


def _plain_key(key: str) -> bool:
    """No secret in this object key. Only negative answers are remembered, so that a key that
    holds a credential (and is rejected) is never kept in memory by the cache."""
    if key in _PLAIN_KEYS:
        return True
    if contains_secret(key):
        return False
    if len(_PLAIN_KEYS) >= _MAX_PLAIN_KEYS:
        _PLAIN_KEYS.clear()
    _PLAIN_KEYS[key] = None
    return True


def unescape_value(value: Any) -> Any:
    """Stored form -> what the caller wrote, with references left as markers (in new
    containers). A value with no `[secret` anywhere, keys included, has nothing to unescape:
    a copy made by orjson is then the same value, made far faster than by walking it."""
    try:
        data = orjson.dumps(value)
    except TypeError:  # not plain JSON (a caller's staged value): walk it
        return _map_strings(value, unescape_text)
    return orjson.loads(data) if b"[secret" not in data else _map_strings(value, unescape_text)


def resolve_value(value: Any, lookup: Any) -> Any:
    """Stored form -> original values; `lookup(scheme, ident)` returns the secret text."""
    return _map_strings(value, lambda s: resolve_text(s, lookup))


def _map_strings(value: Any, fn: Any) -> Any:
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, dict):
        return {unescape_text(k): _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value
