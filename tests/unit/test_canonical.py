"""Canonical JSON (core/canonical.py), sans IO: one value, one byte string, whatever order the
keys were inserted in; the hashes every record format builds on."""

from __future__ import annotations

from securestore.core.canonical import canonical_bytes, sha256_hex


def test_keys_are_sorted_at_every_depth_and_nothing_is_padded() -> None:
    value = {"b": 1, "a": {"d": [1, 2], "c": "x"}, "A": None}
    assert canonical_bytes(value) == b'{"A":null,"a":{"c":"x","d":[1,2]},"b":1}'


def test_insertion_order_never_changes_the_bytes() -> None:
    first = {"seq": 1, "ops": [{"op": "append", "items": []}], "ts": 5}
    second = {"ts": 5, "ops": [{"items": [], "op": "append"}], "seq": 1}
    assert canonical_bytes(first) == canonical_bytes(second)


def test_text_is_utf8_not_escaped_and_list_order_is_kept() -> None:
    assert canonical_bytes({"k": "é\u202e", "l": [3, 1, 2]}) == '{"k":"é\u202e","l":[3,1,2]}'.encode()


def test_sha256_hex_matches_the_fips_180_vectors() -> None:
    assert sha256_hex(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
