"""Journal records (pure). One line per record: canonical JSON {seq, ts, ops, sum}, where
sum = SHA-256 of the canonical {seq, ts, ops}, first 32 hex digits.

A record is one atomic batch of ops: a single update, or a whole turn. Appending its line (one
write, one fsync) is the commit point. A bad final record is a torn write (a crash mid-append)
and is discarded; a bad record anywhere before the end is damage and is never skipped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from .canonical import canonical_bytes

Op = dict[str, Any]


@dataclass(frozen=True)
class JournalRecord:
    seq: int
    ts: int
    ops: list[Op]


def encode_record(seq: int, ts: int, ops: list[Op]) -> bytes:
    """The record's line. The ops are encoded once: `sum` sorts between `seq` and `ts`, the
    last key, so it is spliced into the checksummed encoding before `"ts":`."""
    body = canonical_bytes({"ops": ops, "seq": seq, "ts": ts})
    at = body.rindex(b',"ts":')
    total = hashlib.sha256(body).hexdigest()[:32]
    return body[:at] + b',"sum":"' + total.encode() + b'"' + body[at:] + b"\n"


@dataclass(frozen=True)
class JournalDamage:
    line: int
    offset: int
    reason: str


@dataclass
class ParsedJournal:
    records: list[JournalRecord] = field(default_factory=list)
    line_hashes: list[str] = field(default_factory=list)
    good_bytes: int = 0  # length of the valid prefix
    torn_bytes: int = 0  # a discarded final record (no newline, or a bad final record)
    damage: JournalDamage | None = None


_SUM_FIELD = b',"sum":"'


def decode_record(line: bytes) -> JournalRecord | str:
    """One record line (without its newline), or why it is not one."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "not valid JSON"
    if not isinstance(raw, dict) or set(raw) != {"ops", "seq", "sum", "ts"}:
        return "not a journal record"
    seq, ts, ops, total = raw["seq"], raw["ts"], raw["ops"], raw["sum"]
    if not (isinstance(seq, int) and isinstance(ts, int) and isinstance(ops, list) and isinstance(total, str)):
        return "fields have the wrong types"
    if not all(isinstance(op, dict) and isinstance(op.get("op"), str) for op in ops):
        return "an op is malformed"
    # The checksum covers the record's canonical encoding without `sum`, which is the line as
    # written with that field cut out (no need to encode the ops again). `sum` is the last
    # `,"sum":"` in a canonical line: `ts` alone follows it, and a quote inside a string is escaped.
    at = line.rfind(_SUM_FIELD)
    end = at + len(_SUM_FIELD) + 32
    if at < 0 or line[at + len(_SUM_FIELD):end] != total.encode() or line[end:end + 1] != b'"' \
            or hashlib.sha256(line[:at] + line[end + 1:]).hexdigest()[:32] != total:
        return "checksum mismatch"
    return JournalRecord(seq, ts, ops)


def parse_journal(data: bytes, *, after_seq: int | None) -> ParsedJournal:
    """Records with seq > after_seq must follow on from it, one by one (after_seq None: keep
    every record, wherever the numbering starts)."""
    parsed = ParsedJournal()
    lines = data.split(b"\n")
    fragment = lines.pop()  # bytes after the last newline: empty, or a torn append
    expected: int | None = None
    offset = 0
    for index, line in enumerate(lines):
        is_last = index == len(lines) - 1 and not fragment
        decoded = decode_record(line)
        if isinstance(decoded, JournalRecord) and expected is not None and decoded.seq != expected:
            decoded = f"seq {decoded.seq} where {expected} was expected"
        if isinstance(decoded, str):
            if is_last:
                parsed.torn_bytes = len(line) + 1
                return parsed
            parsed.damage = JournalDamage(index + 1, offset, decoded)
            return parsed
        expected = decoded.seq + 1
        if after_seq is None or decoded.seq > after_seq:
            if not parsed.records and after_seq is not None and decoded.seq != after_seq + 1:
                parsed.damage = JournalDamage(index + 1, offset, f"seq {decoded.seq} does not follow snapshot seq {after_seq}")
                return parsed
            parsed.records.append(decoded)
        parsed.line_hashes.append(hashlib.sha256(line + b"\n").hexdigest())
        offset += len(line) + 1
        parsed.good_bytes = offset
    parsed.torn_bytes = len(fragment)
    return parsed


TRANSCRIPT_OPS = frozenset({"append", "pop", "clear"})  # the ops that change the transcript


def apply_to_items(items: list[Any], ops: list[Op]) -> None:
    """Replay the transcript part of a record (slot and metadata ops live in their own files)."""
    for op in ops:
        kind = op["op"]
        if kind == "append":
            items.extend(op["items"])
        elif kind == "pop":
            if items:
                items.pop()
        elif kind == "clear":
            items.clear()
