"""Appending to an audit log through the fs layer. Reads only the tail: opening is O(1)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import IntegrityError, OperationalError
from ..fs import Dir
from .chain import (
    GENESIS_PREV,
    Actor,
    ChainHead,
    Genesis,
    Intent,
    Outcome,
    RecordBase,
    RecordError,
    build_record,
    parse_record,
    record_hash,
)

LOG_FILE = "log.jsonl"


class AuditLog:
    """One hash-chained log file. The caller holds the lock that makes it the only writer."""

    def __init__(self, directory: Dir, *, clock: Callable[[], int], actor: Actor, max_line: int) -> None:
        self.dir = directory
        self.clock = clock
        self.actor = actor
        self.max_line = max_line
        self.head: ChainHead | None = None
        self.last: RecordBase | None = None
        self.torn: bytes = b""
        # An intent without its outcome. While one is open no new intent may follow: the next
        # writer to open the log must first reconcile it (the verifier's pairing rule).
        self.open_intent: Intent | None = None

    @property
    def label(self) -> str:
        return self.dir.child_label(LOG_FILE)

    def create(self, log_id: str, genesis: dict[str, object]) -> RecordBase:
        """Write the genesis record as a new file, durably (temp file + rename)."""
        head = ChainHead(log_id, 0, GENESIS_PREV)
        record, line, self.head = build_record(head, self.clock(), self.actor, {"kind": "genesis", **genesis})
        self.dir.write_new(LOG_FILE, line)
        self.last = record
        return record

    def load(self) -> None:
        """Find the chain head from the last complete line; remember a torn fragment."""
        size, tail = self.dir.read_tail(LOG_FILE, 2 * self.max_line + 2)
        cut = tail.rfind(b"\n")
        self.torn = tail[cut + 1 :]
        if cut < 0:
            raise IntegrityError(f"{self.label} has no complete record")
        start = tail.rfind(b"\n", 0, cut) + 1
        if start == 0 and size > len(tail):
            raise IntegrityError(f"{self.label}: the last record is longer than {self.max_line} bytes")
        line = tail[start:cut]
        try:
            record = parse_record(line)
        except RecordError as exc:
            raise IntegrityError(f"{self.label}: the last record fails the {exc.check} check") from None
        self.last = record
        self.head = ChainHead(record.log, record.seq + 1, record_hash(line))
        self.open_intent = self._pending_in(tail[:cut].split(b"\n"))

    def recent(self, nbytes: int) -> list[RecordBase]:
        """Records in the last `nbytes` of the log (for rate bounds; not a verification)."""
        size, tail = self.dir.read_tail(LOG_FILE, nbytes)
        lines = tail.split(b"\n")[:-1]
        if size > len(tail) and lines:
            lines = lines[1:]  # the first line may be cut
        records = []
        for line in lines:
            try:
                records.append(parse_record(line))
            except RecordError:
                continue
        return records

    @staticmethod
    def _pending_in(lines: list[bytes]) -> Intent | None:
        """The last intent or outcome decides; recovery and rejection records after it do not."""
        for line in reversed(lines):
            try:
                record = parse_record(line)
            except RecordError:
                return None  # a partial first line of the window: nothing further back is read
            if isinstance(record, Intent):
                return record
            if isinstance(record, (Outcome, Genesis)):
                return None
        return None

    def drop_torn_tail(self) -> bytes:
        """Truncate a torn final fragment (crash mid-append); return what was discarded."""
        fragment = self.torn
        if fragment:
            size, _ = self.dir.read_tail(LOG_FILE, 0)
            self.dir.truncate(LOG_FILE, size - len(fragment))
            self.torn = b""
        return fragment

    def append(self, fields: dict[str, object], *, durable: bool) -> RecordBase:
        head = self.head
        if head is None:
            self.load()
            head = self.head
        if head is None or self.torn:
            raise IntegrityError(f"{self.label} has a torn tail; reopen the store to repair it")
        if fields.get("kind") == "intent" and self.open_intent is not None:
            raise OperationalError(
                f"{self.label}: intent {self.open_intent.seq} has no recorded outcome; reopen to reconcile it"
            )
        record, line, next_head = build_record(head, self.clock(), self.actor, fields)
        if len(line) > self.max_line:
            raise IntegrityError(f"audit record of {len(line)} bytes exceeds {self.max_line}")
        try:
            self.dir.append(LOG_FILE, line, durable=durable)
        except BaseException:
            self.head = None  # a partial line may be on disk: re-read the tail before appending
            raise
        self.head, self.last = next_head, record
        if isinstance(record, Intent):
            self.open_intent = record
        elif isinstance(record, Outcome):
            self.open_intent = None
        return record
