"""Reading a session's files into memory (through the fs layer; nothing here writes)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ...config import Limits
from ...errors import IntegrityError
from ...fs import Dir, read_tail
from .layout import JOURNAL_FILE, MANIFEST_FILE, SNAPSHOT_FILE
from ...core.records import Manifest, Snapshot, decode_model
from ...core.journal import apply_to_items, parse_journal


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (each with its newline) and the fragment after the last newline."""
    cut = data.rfind(b"\n") + 1
    return data[:cut].splitlines(keepends=True), data[cut:]


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def last_line_hash(directory: Dir, name: str, max_line: int) -> str | None:
    """Hash of the last complete line of an append-only file (None: no file, or no line)."""
    if directory.entry(name) is None:
        return None
    _, tail = read_tail(directory, name, max_line + 1)
    lines, _ = split_lines(tail)
    return line_hash(lines[-1]) if lines and (len(lines) > 1 or len(tail) <= max_line) else None


@dataclass
class ManifestHistory:
    revisions: list[Manifest]
    line_hashes: list[str]
    torn_bytes: int

    @property
    def latest(self) -> Manifest:
        return self.revisions[-1]


def read_manifest(directory: Dir, limits: Limits, what: str) -> ManifestHistory:
    data = directory.read(MANIFEST_FILE, limits.max_manifest_bytes)
    lines, fragment = split_lines(data)
    if not lines:
        raise IntegrityError(f"{what}: manifest has no complete revision")
    revisions = [decode_model(Manifest, line, f"{what}: manifest revision {i + 1}") for i, line in enumerate(lines)]
    for index, revision in enumerate(revisions):
        if revision.rev != index + 1:
            raise IntegrityError(f"{what}: manifest line {index + 1} holds revision {revision.rev}")
    return ManifestHistory(revisions, [line_hash(line) for line in lines], len(fragment))


@dataclass
class Transcript:
    items: list[Any] = field(default_factory=list)
    seq: int = 0
    snapshot_seq: int = 0
    journal_records: int = 0
    journal_bytes: int = 0
    torn_bytes: int = 0
    journal_line_hashes: list[str] = field(default_factory=list)


def read_transcript(directory: Dir, limits: Limits, what: str) -> Transcript:
    """Snapshot plus journal replay. A torn final record is left out (the caller reports or
    repairs it); damage before the end is an IntegrityError, never skipped."""
    raw_snapshot = directory.read_optional(SNAPSHOT_FILE, limits.max_snapshot_bytes)
    snapshot = (Snapshot(v=1, seq=0, ts=0, items=[]) if raw_snapshot is None
                else decode_model(Snapshot, raw_snapshot, f"{what}: snapshot"))
    journal = directory.read_optional(JOURNAL_FILE, limits.max_journal_bytes) or b""
    parsed = parse_journal(journal, after_seq=snapshot.seq)
    if parsed.damage is not None:
        damage = parsed.damage
        raise IntegrityError(
            f"{what}: journal record at line {damage.line} (byte {damage.offset}) is damaged: {damage.reason}"
        )
    items = list(snapshot.items)
    for record in parsed.records:
        apply_to_items(items, record.ops)
    last = parsed.records[-1].seq if parsed.records else snapshot.seq
    return Transcript(items, last, snapshot.seq, len(parsed.records), parsed.good_bytes, parsed.torn_bytes,
                      parsed.line_hashes)

