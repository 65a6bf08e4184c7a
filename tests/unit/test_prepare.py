"""core/prepare.py and core/secrets/sink.py, pure: validate -> redact -> cap, and a sink that
forgets exactly the secrets of a write that did not happen."""

from __future__ import annotations

import itertools

import pytest

from securestore import Limits, Secret
from securestore.core.prepare import prepare
from securestore.core.secrets.sink import VaultSink
from securestore.core.secrets.vault import Vault, fingerprint, new_vault, unseal
from securestore.errors import ForbiddenKeyError, LimitExceededError

DATA_KEY = bytes(range(32))
FINGERPRINT_KEY = bytes(32)


def _random() -> object:
    counter = itertools.count()
    return lambda n: next(counter).to_bytes(n, "big")


def _vault_sink() -> tuple[VaultSink, Vault]:
    vault = new_vault(DATA_KEY, "store", "session")
    return VaultSink(lambda: (vault, DATA_KEY), lambda: vault, FINGERPRINT_KEY, _random()), vault  # type: ignore[arg-type]


def test_a_secret_leaves_as_a_reference_and_its_value_goes_to_the_vault() -> None:
    sink, vault = _vault_sink()
    value = prepare({"auth": Secret("hunter2-long-secret"), "note": "plain"}, sink, Limits())
    assert value["note"] == "plain" and "hunter2" not in repr(value)
    (ref,) = sink.new_entries
    assert unseal(vault, DATA_KEY, ref) == "hunter2-long-secret"
    assert sink.vault_op() is not None and "hunter2" not in repr(sink.vault_op())


def test_without_a_vault_a_secret_is_dropped_and_only_fingerprinted() -> None:
    sink = VaultSink(None, lambda: None, FINGERPRINT_KEY, _random())  # type: ignore[arg-type]
    value = prepare({"auth": Secret("hunter2-long-secret")}, sink, Limits())
    assert fingerprint(FINGERPRINT_KEY, "hunter2-long-secret") in repr(value)
    assert "hunter2" not in repr(value) and sink.new_entries == {} and sink.vault_op() is None


def test_a_rejected_value_forgets_only_its_own_secrets() -> None:
    sink, vault = _vault_sink()
    prepare({"first": Secret("kept-secret-value-1")}, sink, Limits())
    kept = set(sink.new_entries)
    two_secrets = {"auth": Secret("dropped-secret-value-2"), "other": Secret("dropped-secret-value-3")}
    with pytest.raises(LimitExceededError):  # the first is sealed before the second trips the cap
        prepare(two_secrets, sink, Limits(max_secrets_per_value=1))
    assert set(sink.new_entries) == kept and set(vault.entries) == kept
    with pytest.raises(ForbiddenKeyError):
        prepare({"__proto__": Secret("dropped-secret-value-3")}, sink, Limits())
    assert set(vault.entries) == kept


def test_rollback_to_a_mark_keeps_what_was_sealed_before_it() -> None:
    sink, vault = _vault_sink()
    prepare({"a": Secret("earlier-secret-value")}, sink, Limits())
    mark = sink.mark()
    prepare({"b": Secret("later-secret-value")}, sink, Limits())
    sink.rollback(mark)
    assert set(vault.entries) == set(mark) and len(mark) == 1
    sink.rollback()
    assert vault.entries == {} and sink.new_entries == {}
