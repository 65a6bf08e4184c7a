"""The journal line format and its replay (core/journal.py), sans IO: exact bytes for known
records, and what a reader keeps, discards as torn, or refuses as damage."""

from __future__ import annotations

import hashlib

import pytest

from securestore.core.journal import JournalRecord, Op, apply_to_items, decode_record, encode_record, parse_journal
from securestore.core.canonical import canonical_bytes

APPEND: list[Op] = [{"op": "append", "items": [{"a": 1}]}]
# The canonical {ops, seq, ts} the checksum covers, and the line: sorted keys, no spaces.
BODY = b'{"ops":[{"items":[{"a":1}],"op":"append"}],"seq":1,"ts":1000}'
LINE = b'{"ops":[{"items":[{"a":1}],"op":"append"}],"seq":1,"sum":"9a95010693a89981cd06fb516a6c133e","ts":1000}\n'


def journal(*records: tuple[int, list[Op]]) -> bytes:
    return b"".join(encode_record(seq, 1000 + seq, ops) for seq, ops in records)


def test_a_record_is_one_canonical_line_with_a_truncated_sha256_of_its_fields() -> None:
    assert hashlib.sha256(BODY).hexdigest()[:32] == "9a95010693a89981cd06fb516a6c133e"
    assert encode_record(1, 1000, APPEND) == LINE
    # Key order in the ops does not change the bytes.
    assert encode_record(1, 1000, [{"items": [{"a": 1}], "op": "append"}]) == LINE


def test_parse_returns_every_record_the_valid_prefix_and_each_line_hash() -> None:
    data = journal((1, APPEND), (2, [{"op": "pop"}]), (3, [{"op": "clear"}]))
    parsed = parse_journal(data, after_seq=None)
    assert parsed.records == [JournalRecord(1, 1001, APPEND), JournalRecord(2, 1002, [{"op": "pop"}]),
                              JournalRecord(3, 1003, [{"op": "clear"}])]
    assert (parsed.good_bytes, parsed.torn_bytes, parsed.damage) == (len(data), 0, None)
    assert parsed.line_hashes == [hashlib.sha256(line + b"\n").hexdigest() for line in data.splitlines()]


def test_records_up_to_the_snapshot_are_skipped_but_still_checked() -> None:
    data = journal((1, APPEND), (2, APPEND), (3, APPEND))
    parsed = parse_journal(data, after_seq=2)
    assert [r.seq for r in parsed.records] == [3]
    assert parsed.good_bytes == len(data) and len(parsed.line_hashes) == 3


def test_an_unterminated_final_fragment_is_a_torn_append_not_damage() -> None:
    good = journal((1, APPEND), (2, APPEND))
    torn = encode_record(3, 1003, APPEND)[:25]
    parsed = parse_journal(good + torn, after_seq=None)
    assert [r.seq for r in parsed.records] == [1, 2]
    assert (parsed.good_bytes, parsed.torn_bytes, parsed.damage) == (len(good), 25, None)


def test_a_bad_final_line_is_torn_but_the_same_line_mid_journal_is_damage() -> None:
    first, second = encode_record(1, 1001, APPEND), encode_record(2, 1002, APPEND)
    garbled = second.replace(b'"a":1', b'"a":2')  # the checksum no longer matches
    at_end = parse_journal(first + garbled, after_seq=None)
    assert at_end.damage is None and at_end.torn_bytes == len(garbled) and at_end.good_bytes == len(first)
    mid = parse_journal(first + garbled + encode_record(3, 1003, APPEND), after_seq=None)
    assert mid.damage is not None
    assert (mid.damage.line, mid.damage.offset, mid.damage.reason) == (2, len(first), "checksum mismatch")
    assert [r.seq for r in mid.records] == [1] and mid.good_bytes == len(first)


@pytest.mark.parametrize(("line", "reason"), [
    (b"{not json", "not valid JSON"),
    (b'{"ops":[],"seq":2,"ts":1}', "not a journal record"),
    (b'{"ops":[],"seq":"2","sum":"00","ts":1}', "fields have the wrong types"),
    (b'{"ops":[{"items":[]}],"seq":2,"sum":"00","ts":1}', "an op is malformed"),
])
def test_each_malformed_line_mid_journal_is_named(line: bytes, reason: str) -> None:
    data = journal((1, APPEND)) + line + b"\n" + journal((3, APPEND))
    damage = parse_journal(data, after_seq=None).damage
    assert damage is not None and (damage.line, damage.reason) == (2, reason)


def test_a_gap_or_a_repeat_in_the_numbering_is_damage() -> None:
    gap = parse_journal(journal((1, APPEND), (3, APPEND), (4, APPEND)), after_seq=None)
    assert gap.damage is not None and gap.damage.reason == "seq 3 where 2 was expected"
    repeat = parse_journal(journal((1, APPEND), (1, APPEND), (2, APPEND)), after_seq=None)
    assert repeat.damage is not None and repeat.damage.reason == "seq 1 where 2 was expected"


def test_a_journal_that_does_not_follow_the_snapshot_is_damage() -> None:
    data = journal((5, APPEND), (6, APPEND))
    parsed = parse_journal(data, after_seq=3)  # record 4 is missing between snapshot and journal
    assert parsed.damage is not None and parsed.damage.reason == "seq 5 does not follow snapshot seq 3"
    assert parsed.records == []


def test_replay_applies_append_pop_and_clear_in_order() -> None:
    items: list[object] = ["kept"]
    apply_to_items(items, [{"op": "append", "items": [1, 2, 3]}, {"op": "pop"}])
    assert items == ["kept", 1, 2]
    apply_to_items(items, [{"op": "clear"}, {"op": "pop"}, {"op": "append", "items": ["x"]}])
    assert items == ["x"]  # a pop on an empty transcript is a no-op
    apply_to_items(items, [{"op": "slot.put", "slot": "s"}])  # not a transcript op: ignored here
    assert items == ["x"]


def test_the_checksum_is_spliced_after_every_nested_ts_key() -> None:
    ops: list[Op] = [{"op": "append", "items": [{"a": 1, "ts": 5, "z": ',"ts":7'}, {"ts": 9}]}]
    line = encode_record(4, 1234, ops)
    body = canonical_bytes({"ops": ops, "seq": 4, "ts": 1234})
    assert line == canonical_bytes({"ops": ops, "seq": 4, "sum": hashlib.sha256(body).hexdigest()[:32], "ts": 1234}) + b"\n"
    assert parse_journal(line, after_seq=None).records == [JournalRecord(4, 1234, ops)]


def test_a_record_is_checked_on_its_bytes_as_written() -> None:
    """The checksum covers the canonical bytes the writer wrote: the same record re-spaced or
    re-ordered is not the line that was committed, and fails as damage."""
    line = encode_record(1, 1000, APPEND)[:-1]
    assert decode_record(line) == JournalRecord(1, 1000, APPEND)
    assert decode_record(line.replace(b'"seq":1', b'"seq": 1')) == "checksum mismatch"
    reordered = b'{"seq":1,"ops":' + line[len(b'{"ops":'):line.index(b',"seq"')] + line[line.index(b',"sum"'):]
    assert decode_record(reordered) == "checksum mismatch"
