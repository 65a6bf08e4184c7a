"""Key policy and caps: traversal keys stay inside, prototype keys and oversize input never land."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.keys import KEYS, MASTER_KEY
from tests.support.raw_tree import raw_tree, session_path
from tests.support.stores import STORE_TRAIL
from securestore import (
    ForbiddenKeyError,
    InvalidKeyError,
    InvalidValueError,
    Limits,
    LimitExceededError,
    PolicyError,
    SecureStore,
    StoreConfig,
    verify_store,
)
from securestore.audit.chain import parse_record
from securestore.fs import REAL_OS, instrumented
from securestore.core.policy import (
    PROTOTYPE_KEYS,
    check_value,
    decode_plain_name,
    encode_name,
    is_forbidden_key,
    normalize_key,
    parse_json_text,
)

pytestmark = pytest.mark.both_backends

TRAVERSAL_KEYS = [
    "../x",
    "../../etc/passwd",
    "/abs/path",
    "a/../../b",
    ".",
    "..",
    "...",
    "x" * 300,
    "é" * 100,  # 200 UTF-8 bytes: hashed name
    "\u0430dmin",  # Cyrillic a: looks like "admin"
    "admin",
    "ａｄｍｉｎ",  # fullwidth
    "e\u0301",  # NFD: normalizes to NFC "é"
    "COM1",
    "k-abc",
    "h-" + "a" * 52,
    "with space",
    "tab\tinside",
]


@pytest.mark.parametrize("key", TRAVERSAL_KEYS)
def test_traversal_style_keys_stay_inside_and_round_trip(store: SecureStore, root: Path | str, key: str) -> None:
    raw = raw_tree(root)
    outside = raw.escaped()
    try:
        normalized = normalize_key(key, what="k", max_bytes=4096)
    except InvalidKeyError:
        with pytest.raises(InvalidKeyError):
            store.put(key, "slot", 1)
        return
    store.put(key, "slot", {"key": key})
    assert store.get(key, "slot") == {"key": key}
    assert raw.escaped() == outside
    name = encode_name(normalized)
    assert raw.is_dir(f"sessions/{name}")
    assert "/" not in name and len(name.encode()) <= 255
    found = {info.key for info in store.scan_sessions()[0]}
    assert normalized in found


def test_nul_and_control_characters_are_rejected(store: SecureStore, root: Path | str) -> None:
    before = raw_tree(root).snapshot("sessions")
    for key in ["a\x00b", "line\nbreak", "bell\x07", "rtl\u202eoverride", "", "   "]:
        with pytest.raises(InvalidKeyError):
            store.put(key, "slot", 1)
    assert raw_tree(root).snapshot("sessions") == before


def test_look_alikes_are_distinct_sessions(store: SecureStore) -> None:
    store.put("admin", "s", "latin")
    store.put("\u0430dmin", "s", "cyrillic")
    assert store.get("admin", "s") == "latin"
    assert store.get("\u0430dmin", "s") == "cyrillic"


def test_nfc_forms_are_the_same_session(store: SecureStore) -> None:
    store.put("caf\u00e9", "s", 1)
    assert store.get("cafe\u0301", "s") == 1


def test_long_keys_are_hashed_and_the_key_kept_inside(store: SecureStore, root: Path | str) -> None:
    key = "session/" + "z" * 292
    store.put(key, "s", 1)
    name = encode_name(key)
    assert name.startswith("h-") and len(name) == 54
    manifest = raw_tree(root).read(f"sessions/{name}/manifest.jsonl").decode()
    assert key in manifest
    assert store.get(key, "s") == 1


def test_key_over_max_bytes_rejected(store: SecureStore) -> None:
    with pytest.raises(InvalidKeyError, match="4097 UTF-8 bytes, limit 4096"):
        store.put("k" * 4097, "s", 1)


def test_directory_not_matching_its_manifest_key_is_ignored_and_reported(store: SecureStore,
                                                                         root: Path | str) -> None:
    store.put("alice", "s", 1)
    store.put("bob", "s", 2)
    raw, alice, bob = raw_tree(root), session_path("alice"), session_path("bob")
    raw.write(f"{bob}/manifest.jsonl", raw.read(f"{alice}/manifest.jsonl"))  # bob's dir claims to be alice
    found, skipped = store.scan_sessions()
    assert [info.key for info in found] == ["alice"]
    assert [entry.name for entry in skipped] == [encode_name("bob")]
    assert "does not encode" in skipped[0].reason or "different key" in skipped[0].reason


@given(st.text(min_size=1, max_size=200))
@settings(max_examples=300, deadline=None)
def test_encoding_is_reversible_or_hashed(raw: str) -> None:
    try:
        key = normalize_key(raw, what="k", max_bytes=4096)
    except (InvalidKeyError, ForbiddenKeyError):
        return
    name = encode_name(key)
    assert name == name.lower() and "/" not in name and len(name.encode()) <= 255
    if len(key.encode()) <= 120:
        assert decode_plain_name(name) == key
    else:
        assert name.startswith("h-")


@pytest.mark.parametrize("bad", sorted(PROTOTYPE_KEYS) + ["__class__", "__globals__", "__init__", "__dict__"])
def test_prototype_and_dunder_keys_rejected_everywhere(store: SecureStore, root: Path | str, bad: str) -> None:
    store.put("sess", "slot", {"fine": True})
    before = {k: v for k, v in raw_tree(root).snapshot().items() if k not in STORE_TRAIL}
    nested_values = [
        {bad: 1},
        {"a": {"b": [{"c": {bad: {"x": 1}}}]}},
        [[[{"ok": {bad: None}}]]],
    ]
    for value in nested_values:
        with pytest.raises(ForbiddenKeyError) as info:
            store.put("sess", "slot", value)
        assert bad in str(info.value)  # the error names the key path
    with pytest.raises(ForbiddenKeyError):
        store.put(bad, "slot", 1)
    with pytest.raises(ForbiddenKeyError):
        store.put("sess", bad, 1)
    after = {k: v for k, v in raw_tree(root).snapshot().items() if k not in STORE_TRAIL}
    assert after == before
    assert store.get("sess", "slot") == {"fine": True}


def test_forbidden_key_path_is_named() -> None:
    with pytest.raises(ForbiddenKeyError, match=r"\$\.a\.b\[1\]\.__proto__"):
        check_value({"a": {"b": [0, {"__proto__": 1}]}}, Limits())
    assert is_forbidden_key("__defineGetter__") and not is_forbidden_key("proto")


def _small_store(root: Path, **limits: int) -> SecureStore:
    return SecureStore(root, StoreConfig(limits=Limits(**limits)), master_key=MASTER_KEY, environ=KEYS)


@pytest.mark.parametrize(
    ("limits", "value", "error", "match"),
    [
        ({"max_value_bytes": 1024}, {"blob": "x" * 2000}, LimitExceededError, "exceeds 1024 bytes"),
        ({"max_depth": 8}, [[[[[[[[[1]]]]]]]]], LimitExceededError, "nested deeper than 8"),
        ({}, {"n": 2**64}, LimitExceededError, "signed 64-bit"),
        ({}, {"n": -(2**63) - 1}, LimitExceededError, "signed 64-bit"),
        ({"max_string_bytes": 10}, "x" * 11, LimitExceededError, "string of 11 bytes"),
        ({"max_nodes": 50}, list(range(60)), LimitExceededError, "more than 50 nodes"),
        ({}, {"f": float("nan")}, InvalidValueError, "NaN"),
        ({}, {"f": float("inf")}, InvalidValueError, "NaN and infinity"),
        ({}, {"s": {1, 2}}, InvalidValueError, "unsupported type set"),
        ({}, {1: "int key"}, InvalidValueError, "keys must be strings"),
        ({}, {"s": "\ud800"}, InvalidValueError, "lone surrogate"),
    ],
)
def test_caps_reject_and_leave_the_store_unchanged(
    root: Path | str, limits: dict[str, int], value: object, error: type[Exception], match: str
) -> None:
    with _small_store(root, **limits) as store:
        store.put("sess", "slot", {"before": 1})
        before = raw_tree(root).snapshot()
        with pytest.raises(error, match=match):
            store.put("sess", "slot", value)
        after = raw_tree(root).snapshot()
        # Data is byte-for-byte unchanged; the store log gains exactly one rejection record.
        assert {k: v for k, v in after.items() if k not in STORE_TRAIL} == {
            k: v for k, v in before.items() if k not in STORE_TRAIL
        }
        new = after["audit/log.jsonl"][1][len(before["audit/log.jsonl"][1]):]  # type: ignore[index]
        records = [parse_record(line) for line in new.splitlines()]
        assert [r.kind for r in records] == ["rejected"]  # type: ignore[attr-defined]
        assert store.get("sess", "slot") == {"before": 1}
        assert verify_store(store).ok


def test_too_many_slots_and_sessions(root: Path) -> None:
    with _small_store(root, max_slots_per_session=2, max_sessions=2) as store:
        store.put("s1", "a", 1)
        store.put("s1", "b", 2)
        store.put("s1", "a", 3)  # replacing an existing slot is fine
        with pytest.raises(LimitExceededError, match="limit 2"):
            store.put("s1", "c", 3)
        store.put("s2", "a", 1)
        with pytest.raises(LimitExceededError, match="limit 2"):
            store.put("s3", "a", 1)
        assert sorted(info.key for info in store.scan_sessions()[0]) == ["s1", "s2"]
        assert verify_store(store).ok


def test_json_text_parser_is_strict() -> None:
    limits = Limits()
    assert parse_json_text(b'{"a": [1, 2.5, "x", null, true]}', limits) == {"a": [1, 2.5, "x", None, True]}
    with pytest.raises(LimitExceededError, match="integer literal"):
        parse_json_text(b"1" + b"0" * 5000, limits)  # no quadratic int() conversion (CVE-2020-10735)
    with pytest.raises(InvalidValueError, match="duplicate key"):
        parse_json_text(b'{"a": 1, "a": 2}', limits)
    for bad in (b"NaN", b"[Infinity]", b"-Infinity"):
        with pytest.raises(InvalidValueError, match="not valid JSON"):
            parse_json_text(bad, limits)
    with pytest.raises(InvalidValueError, match="UTF-8"):
        parse_json_text(b'"\xff"', limits)
    with pytest.raises(LimitExceededError):
        parse_json_text(b"[" * 100_000 + b"]" * 100_000, limits)
    # A 20-digit literal parses; the range check happens in check_value, not silently as a float.
    big = parse_json_text(b"18446744073709551616", limits)
    assert isinstance(big, int)
    with pytest.raises(LimitExceededError):
        check_value(big, limits)


def test_a_rejection_through_a_session_handle_names_the_file_it_was_aimed_at(root: Path | str) -> None:
    with _small_store(root, max_value_bytes=64) as store, store.create_session("sess") as session:
        too_big = {"v": "x" * 100}
        for write in (lambda: session.append_items([too_big]), lambda: session.update_metadata(title="t" * 100),
                      lambda: session.slot("notes").put(too_big)):
            with pytest.raises(PolicyError):
                write()
    log = raw_tree(root).read(f"{session_path('sess')}/audit/log.jsonl")
    rejected = [r for r in map(parse_record, log.splitlines()) if r.kind == "rejected"]
    assert [(r.op, r.target) for r in rejected] == [  # type: ignore[attr-defined]
        ("session.append", "journal.log"), ("session.meta", "manifest.jsonl"),
        ("slot.put", f"state/{encode_name('notes')}.json")]


def test_create_session_with_a_bad_key_is_audited_in_the_store_log(root: Path | str) -> None:
    with _small_store(root) as store:
        raw = raw_tree(root)
        before = [r for r in map(parse_record, raw.read("audit/log.jsonl").splitlines()) if r.kind == "rejected"]
        with pytest.raises(ForbiddenKeyError):
            store.create_session("__proto__")
        after = [r for r in map(parse_record, raw.read("audit/log.jsonl").splitlines()) if r.kind == "rejected"]
        assert [(r.op, r.reason) for r in after[len(before):]] == [  # type: ignore[attr-defined]
            ("session.create", "forbidden-key")]


def _sessions_listings_during(store: SecureStore, action: object) -> int:
    sessions_fd = store.backend.sessions.fd
    calls: list[tuple[str, object]] = []
    store.ctx.os = instrumented(REAL_OS, lambda name, args: calls.append((name, args[0] if args else None)))
    try:
        action()  # type: ignore[operator]
    finally:
        store.ctx.os = REAL_OS
    assert ("listdir", store.backend.audit_dir.fd) in calls  # the hook sees listings at all
    return calls.count(("listdir", sessions_fd))


@pytest.mark.fs_only  # counts listdir OS calls on the sessions directory's fd: disk only
def test_creating_a_session_does_not_list_the_sessions_once_the_count_is_known(root: Path) -> None:
    with _small_store(root) as store:
        for n in range(5):
            store.put(f"s{n}", "a", 1)
        # The count written by the last create matches the store log: nothing lists sessions/.
        assert _sessions_listings_during(store, lambda: store.put("s5", "a", 1)) == 0
        assert json.loads((root / "sessions.count").read_bytes())["n"] == 6


def test_the_session_cap_holds_across_handles_rejections_and_a_lagging_count(root: Path | str) -> None:
    with _small_store(root, max_sessions=3) as first, _small_store(root, max_sessions=3) as second:
        first.put("s1", "a", 1)
        second.put("s2", "a", 1)
        with pytest.raises(ForbiddenKeyError):
            first.put("__proto__", "a", 1)  # a rejection moves the store log: the count is recounted
        first.put("s3", "a", 1)
        with pytest.raises(LimitExceededError, match="holds 3 sessions"):
            second.put("s4", "a", 1)
        second.delete_session("s1")
        raw, count_file = raw_tree(root), "sessions.count"
        # A count that lags the log (a crash before it was written, or planted) is never trusted.
        lagging = json.loads(raw.read(count_file))
        raw.write(count_file, json.dumps({"n": 0, "log": [lagging["log"][0], lagging["log"][1] - 1]}).encode())
        first.put("s4", "a", 1)
        with pytest.raises(LimitExceededError, match="holds 3 sessions"):
            first.put("s5", "a", 1)
        raw.write(count_file, b"{not json")
        with pytest.raises(LimitExceededError, match="holds 3 sessions"):
            second.put("s5", "a", 1)
