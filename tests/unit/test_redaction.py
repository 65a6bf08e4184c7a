"""Redaction and resolution (core/secrets/), sans IO: redact -> resolve gives back exactly what
went in, the redacted form holds no secret, forged markers in input stay inert, and the vault's
sealing binds a value to its session and store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from pydantic import SecretBytes, SecretStr

from securestore.core.secrets import Secret, redact, references_in, resolve_value, unescape_value
from securestore.core.secrets.markers import escape_text, resolve_text, unescape_text
from securestore.core.secrets.vault import new_vault, reference_id, seal, unseal
from securestore.errors import IntegrityError, LimitExceededError, SecretInKeyError, SecretUnavailableError
from tests.support.corpus import Planted, benign_corpus, secret_corpus

DATA_KEY = bytes(range(32))


class DictSink:
    """Keeps each secret under a numbered id, and remembers what it was given."""

    def __init__(self) -> None:
        self.kept: dict[str, str | bytes] = {}
        self.kinds: list[str] = []

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        ident = f"v{len(self.kept)}"
        self.kept[ident] = value
        self.kinds.append(kind)
        return "vault", ident

    def lookup(self, scheme: str, ident: str) -> str | bytes:
        assert scheme == "vault"
        return self.kept[ident]


class VaultSink:
    """The real sealing (AES-GCM under a data key), with counter nonces instead of random ones."""

    def __init__(self) -> None:
        self.vault = new_vault(DATA_KEY, "0" * 32, "k-me")
        self._nonces: Iterator[int] = iter(range(1, 1 << 30))

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        ref, _ = seal(self.vault, DATA_KEY, value, next(self._nonces).to_bytes(12, "big"))
        return "vault", ref

    def lookup(self, scheme: str, ident: str) -> str | bytes:
        assert scheme == "vault"
        return unseal(self.vault, DATA_KEY, ident)


def stored_bytes(value: Any) -> bytes:
    return orjson.dumps(value)


@pytest.mark.parametrize("planted", secret_corpus(), ids=lambda p: p.name)
def test_every_planted_credential_is_redacted_and_resolves_back_exactly(planted: Planted) -> None:
    sink = VaultSink()
    redacted = redact(planted.message, sink, max_secrets=64)
    assert redacted.count >= 1
    assert planted.secret.encode() not in stored_bytes(redacted.value)
    assert resolve_value(redacted.value, sink.lookup) == planted.message


def test_benign_text_is_stored_as_it_is() -> None:
    sink = DictSink()
    for text in benign_corpus():
        redacted = redact({"content": text}, sink, max_secrets=64)
        assert redacted.value == {"content": text} and redacted.count == 0, text[:60]
    assert sink.kept == {}


def test_typed_secrets_are_kept_whatever_they_look_like_and_env_secrets_stay_references() -> None:
    sink = DictSink()
    value = {"a": Secret("hello"), "b": SecretStr("plain words"), "c": SecretBytes(b"\x00\xff"),
             "d": Secret.from_env("DB_URL"), "e": ["x", Secret(b"raw")]}
    redacted = redact(value, sink, max_secrets=64)
    assert redacted.value == {"a": "[secret:vault:v0]", "b": "[secret:vault:v1]", "c": "[secret:vault:v2]",
                              "d": "[secret:env:DB_URL]", "e": ["x", "[secret:vault:v3]"]}
    assert redacted.found == {"typed": 5}
    assert sink.kept == {"v0": "hello", "v1": "plain words", "v2": b"\x00\xff", "v3": b"raw"}
    env = {"DB_URL": "postgres://u:p@h/db"}
    resolved = resolve_value(redacted.value, lambda scheme, ident: env[ident] if scheme == "env" else sink.kept[ident])
    assert resolved == {"a": "hello", "b": "plain words", "c": b"\x00\xff", "d": "postgres://u:p@h/db",
                        "e": ["x", b"raw"]}


def test_a_credential_named_field_is_one_secret_whatever_its_format() -> None:
    sink = DictSink()
    value = {"password": "correct horse battery staple", "user": "ann", "retries": 3, "token": None,
             "headers": [{"name": "X-Api-Key", "value": "abc123"}], "pair": ["Authorization", "Basic xyz"],
             "db": {"password": "****"}}
    redacted = redact(value, sink, max_secrets=64)
    assert redacted.value == {"password": "[secret:vault:v0]", "user": "ann", "retries": 3, "token": None,
                              "headers": [{"name": "X-Api-Key", "value": "[secret:vault:v1]"}],
                              "pair": ["Authorization", "[secret:vault:v2]"], "db": {"password": "****"}}
    assert sink.kinds == ["credential-field"] * 3
    assert resolve_value(redacted.value, sink.lookup) == value


def test_forged_markers_in_input_stay_text_and_round_trip() -> None:
    sink = DictSink()
    forged = "use [secret:env:AWS_SECRET_ACCESS_KEY] and [secret!:vault:x] and [secret!!:env:A]"
    redacted = redact({"tool": forged}, sink, max_secrets=64)
    stored = redacted.value["tool"]
    assert references_in(stored) == []  # nothing a resolver would look up
    assert stored == "use [secret!:env:AWS_SECRET_ACCESS_KEY] and [secret!!:vault:x] and [secret!!!:env:A]"

    def never(scheme: str, ident: str) -> str:
        raise AssertionError(f"a forged marker was resolved: {scheme}:{ident}")

    assert resolve_value(redacted.value, never) == {"tool": forged}
    assert unescape_value(redacted.value) == {"tool": forged}


def test_marker_escaping_is_exactly_inverted_for_every_depth_of_bangs() -> None:
    for text in ["[secret:", "[secret!:", "[secret!!!!:vault:x]", "a[secret:b[secret!:c", "[secret", "no marker"]:
        assert unescape_text(escape_text(text)) == text
        assert references_in(escape_text(text)) == []


def test_resolving_keeps_bytes_when_the_whole_string_is_one_reference() -> None:
    kept: dict[str, str | bytes] = {"b": b"\x01\x02", "t": "text"}
    assert resolve_text("[secret:vault:b]", lambda s, i: kept[i]) == b"\x01\x02"
    assert resolve_text("pre [secret:vault:t] [secret:vault:b]", lambda s, i: kept[i]) == "pre text \x01\x02"


def test_object_keys_are_never_rewritten_and_a_credential_key_is_refused_without_echo() -> None:
    token = "ghp_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3z5A"
    with pytest.raises(SecretInKeyError, match=r"at \$\.outer\[\?\]: an object key looks like a credential") as info:
        redact({"outer": {token: 1}}, DictSink(), max_secrets=64)
    assert token not in str(info.value)
    redacted = redact({"[secret:env:X]": "v"}, DictSink(), max_secrets=64)
    assert unescape_value(redacted.value) == {"[secret:env:X]": "v"}  # an escaped key round-trips too


def test_more_secrets_than_the_cap_is_refused() -> None:
    with pytest.raises(LimitExceededError, match="more than 2 secrets"):
        redact([Secret("a"), Secret("b"), Secret("c")], DictSink(), max_secrets=2)


def test_the_vault_binds_values_to_their_session_and_store() -> None:
    sink = VaultSink()
    ref = sink.keep("s3cret", "typed")[1]
    assert ref == reference_id(DATA_KEY, b"s3cret", "text")
    assert sink.keep("s3cret", "typed")[1] == ref and len(sink.vault.entries) == 1  # one entry per value
    assert unseal(sink.vault, DATA_KEY, ref) == "s3cret"
    moved = new_vault(DATA_KEY, "0" * 32, "k-other")  # the same entry copied into another session
    moved.entries[ref] = sink.vault.entries[ref]
    with pytest.raises(IntegrityError, match="fails authentication"):
        unseal(moved, DATA_KEY, ref)
    with pytest.raises(IntegrityError, match="fails authentication"):
        unseal(sink.vault, bytes(32), ref)
    with pytest.raises(SecretUnavailableError, match="is not in the vault"):
        unseal(sink.vault, DATA_KEY, "missing")
    assert b"s3cret" not in json.dumps(sink.vault.to_json()).encode()


def test_an_unescaped_value_is_a_new_container_with_or_without_escapes() -> None:
    for stored in ({"a": [1, {"b": "c"}]}, {"a": [1, {"b": escape_text("[secret:env:X]")}]}):
        before = orjson.loads(orjson.dumps(stored))
        out = unescape_value(stored)
        out["a"][1]["b"] = "changed by the caller"
        assert stored == before
