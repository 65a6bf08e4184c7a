"""Appending to an audit log through the fs layer: MAC under the current epoch key, ratchet at
epoch boundaries, and seal with signed checkpoints. Opening reads only the tail: O(1).

Files in a log's directory:
  log.jsonl          the records
  epoch.key          the CURRENT chain key and epoch (0600, epoch_file.py)
  checkpoints.jsonl  signed checkpoints, one per line, oldest first
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import replace

from ...errors import IntegrityError, KeyMaterialError, OperationalError
from ..tree import Expected, TreeDir, holds_last_line, read_tail_until
from .epoch_file import EpochState
from .layout import AUDIT_DIR
from ...audit.chain import (
    GENESIS_PREV,
    Actor,
    ChainHead,
    Genesis,
    Intent,
    Outcome,
    RecordBase,
    build_record,
    parse_record,
    record_hash,
)
from ...audit.errors import RecordError
from ...audit.checkpoint import (
    CHECKPOINTS_FILE,
    Checkpoint,
    StoredCheckpoint,
    open_note,
    parse_stored,
    peek_note,
    sign_note,
)
from ...audit.keys import EpochRule, RecordMac, SignerKey, mac_key, ratchet, session_log_key
from ...audit.merkle import Frontier, leaf_hash

LOG_FILE = "log.jsonl"
KEY_FILE = "epoch.key"
_KEY_CAP = 4096
_CHECKPOINT_CAP = 64 * 1024


class AuditLog:
    """One log. The caller holds the lock that makes it the only writer, for as long as this
    object lives: so what it read or wrote of the log (its head, its last checkpoint) stays true."""

    def __init__(
        self, directory: TreeDir, *, clock: Callable[[], int], actor: Actor, max_line: int,
        signer: SignerKey | None = None,
    ) -> None:
        self.dir = directory
        self.clock = clock
        self.actor = actor
        self.max_line = max_line
        self.signer = signer
        self.head: ChainHead | None = None
        self.last: RecordBase | None = None
        self.torn: bytes = b""
        self.keys: EpochState | None = None
        # An intent without its outcome. While one is open no new intent may follow: the next
        # writer to open the log must first reconcile it (the verifier's pairing rule).
        self.open_intent: Intent | None = None
        self._closing_checked: int | None = None  # the log size `_closing` was read at
        self._mac_cache: tuple[bytes, RecordMac] | None = None  # (epoch chain key, its MAC state)
        self._closing = False
        self._creating = False
        # What this object knows the log holds, so a seal need not read back what it wrote: the
        # log's size when it was loaded or created, and the lines it appended since (None: unknown).
        self._known_end: int | None = None
        self._written: list[bytes] = []
        self._last_stored: StoredCheckpoint | None = None  # the last checkpoint, as read or written here

    @property
    def label(self) -> str:
        return self.dir.child_label(LOG_FILE)

    @property
    def target(self) -> str:
        return f"{AUDIT_DIR}/{LOG_FILE}"

    def check_usable(self) -> None:
        self.dir.ctx.check_usable()

    def attempt(self) -> AbstractContextManager[None]:
        return self.dir.attempt(self.label)

    def _signer(self) -> SignerKey:
        if self.signer is None:
            raise KeyMaterialError(
                "no audit signing key configured: writes need it to seal the audit trail (--signing-key-file, or "
                "$SECURESTORE_AUDIT_SIGNING_KEY_FILE)"
            )
        return self.signer

    def create(
        self, log_id: str, genesis: dict[str, object], *, store_id: str, chain: bytes, rule: EpochRule,
        unpublished: bool = False,
    ) -> Checkpoint:
        """Genesis record, epoch key file and the first checkpoint (returned), each written
        durably (`unpublished`: in a directory not yet renamed into place; the caller syncs it
        first)."""
        signer = self._signer()
        signer_text = signer.verifier.text()
        ts = self.clock()
        fields = {"kind": "genesis", **genesis, "signer": signer_text, "epoch_records": rule.records,
                  "epoch_seconds": rule.seconds}
        record, line, self.head = build_record(ChainHead(log_id, 0, GENESIS_PREV), ts, self.actor, fields,
                                               epoch=0, mac=RecordMac(mac_key(chain)))
        self.keys = EpochState(store_id, log_id, signer_text, rule, 0, chain, 0, ts)
        write = self.dir.write_private if unpublished else self.dir.write_new
        write(KEY_FILE, self.keys.encode())
        write(LOG_FILE, line)
        self.last = record
        write(CHECKPOINTS_FILE, b"")
        self._known_end, self._written = 0, [line]
        self._creating = True
        try:
            checkpoint = self.seal()  # the only checkpoint ever signed without an earlier one of ours
        finally:
            self._creating = False
        if checkpoint is None:
            raise IntegrityError(f"{self.label}: its first checkpoint was not signed")
        self._closing_checked, self._closing = 1, False  # one record, under a checkpoint that closes nothing
        return checkpoint

    def expect_load(self) -> None:
        """What `load` reads (TreeDir.expect_reads)."""
        self.dir.expect_reads([Expected("tail", LOG_FILE)])

    def expect_reads(self) -> None:
        """What its next append reads that this object has not read yet (loading it, its epoch
        key, its last checkpoint): TreeDir.expect_reads, ahead on PostgreSQL."""
        reads = [] if self.head is not None else [Expected("tail", LOG_FILE)]
        if self.keys is None:
            reads.append(Expected("read", KEY_FILE, _KEY_CAP))
        if self._closing_checked is None and self._last_stored is None:
            reads.append(Expected("tail", CHECKPOINTS_FILE))
        if reads:
            self.dir.expect_reads(reads)

    def load(self) -> None:
        """Find the chain head from the last complete line; remember a torn fragment."""
        size, tail = read_tail_until(self.dir, LOG_FILE, 2 * self.max_line + 2, decides)
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
        self.open_intent = deciding(tail[:cut].split(b"\n"))[1]
        self._known_end, self._written = (None if self.torn else size), []

    def _load_keys(self) -> EpochState:
        if self.keys is None:
            label = self.dir.child_label(KEY_FILE)
            keys = EpochState.decode(self.dir.read(KEY_FILE, _KEY_CAP), label)
            signer = self._signer().verifier.text()
            if keys.signer != signer:
                raise KeyMaterialError(f"{self.label} is sealed by audit key {keys.signer.split('+')[0]}+"
                                       f"{keys.signer.split('+')[1]}, not by the configured signing key")
            head = self.head
            if head is None or keys.log != head.log_id or not keys.first_seq <= head.next_seq:
                raise IntegrityError(f"{label} does not belong to {self.label} at its current length")
            self.keys = keys
        return self.keys

    def drop_torn_tail(self) -> bytes:
        """Truncate a torn final fragment (crash mid-append); return what was discarded."""
        fragment = self.torn
        if fragment:
            size, _ = self.dir.read_tail(LOG_FILE, 0)
            self.dir.truncate(LOG_FILE, size - len(fragment))
            self.torn = b""
        return fragment

    def _epoch_for(self, head: ChainHead, ts: int) -> EpochState:
        """The key state the next record (at `ts`) is MACed under; ratchets at a boundary."""
        keys = self._load_keys()
        count = head.next_seq - keys.first_seq
        if count > 0 and (keys.rule.due(count, ts, keys.start_ts) or self._closed_at(head.next_seq)):
            # The ending epoch is signed, as closed, before its key is destroyed. A ratchet that
            # crashed after that signature is finished here whatever the clock now says.
            self.seal(closing=True)
            keys = replace(keys, epoch=keys.epoch + 1, chain=ratchet(keys.chain), first_seq=head.next_seq,
                           start_ts=ts)
            self.dir.replace_wiping(KEY_FILE, keys.encode())
        elif count == 0 and keys.start_ts != ts:
            # The epoch's first record decides its start; an earlier attempt may have failed.
            keys = replace(keys, start_ts=ts)
            self.dir.replace_wiping(KEY_FILE, keys.encode())
        self.keys = keys
        return keys

    def _closed_at(self, size: int) -> bool:
        """Does a closing checkpoint end the log at `size` (a ratchet that a crash interrupted)?
        Read once per handle, at its first append: later ratchets are finished in the call
        that signs them."""
        if self._closing_checked is None:
            stored = self.last_checkpoint(repair=False)
            self._closing = stored is not None and stored.frontier.size == size and peek_note(stored.note).closes
            self._closing_checked = size
        return self._closing and size == self._closing_checked

    def _mac_for(self, chain: bytes) -> RecordMac:
        """The record MAC of the current epoch key, derived once per epoch (not per record)."""
        cached = self._mac_cache
        if cached is None or cached[0] != chain:
            cached = self._mac_cache = (chain, RecordMac(mac_key(chain)))
        return cached[1]

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
        # Never earlier than the record before: epoch time boundaries must not move backwards.
        ts = max(self.clock(), self.last.ts if self.last is not None else 0)
        keys = self._epoch_for(head, ts)
        record, line, next_head = build_record(head, ts, self.actor, fields, epoch=keys.epoch,
                                               mac=self._mac_for(keys.chain))
        if len(line) > self.max_line:
            raise IntegrityError(f"audit record of {len(line)} bytes exceeds {self.max_line}")
        try:
            self.dir.append(LOG_FILE, line, durable=durable)
        except BaseException:
            self.head = None  # a partial line may be on disk: re-read the tail before appending
            self._known_end = None
            raise
        self.head, self.last = next_head, record
        self._written.append(line)
        if isinstance(record, Intent):
            self.open_intent = record
        elif isinstance(record, Outcome):
            self.open_intent = None
        return record

    def child_key(self, session: str) -> bytes:
        """The first chain key of a session log created under this (store) log's open intent."""
        if self.open_intent is None:
            raise OperationalError("a session log can only be created under a store-log intent")
        return session_log_key(self._load_keys().chain, session, self.open_intent.seq)

    # -- checkpoints -----------------------------------------------------------------------------
    def is_sealed(self) -> bool:
        """Read-only: does the last checkpoint end where the log ends?"""
        stored = self.last_checkpoint(repair=False)
        log_size = self.dir.size_of(LOG_FILE)
        return stored is not None and log_size is not None and stored.offset == log_size[1]

    def last_checkpoint(self, *, repair: bool = True) -> StoredCheckpoint | None:
        """The newest complete checkpoint line; a torn final fragment is cut off first (the
        writer only: `repair`)."""
        if self._last_stored is not None:  # only this writer (it holds the lock) appends checkpoints
            return self._last_stored
        size, tail = read_tail_until(self.dir, CHECKPOINTS_FILE, _CHECKPOINT_CAP, holds_last_line)
        cut = tail.rfind(b"\n")
        if repair and cut + 1 < len(tail):  # a crash mid-append left an unsigned fragment: drop it
            self.dir.truncate(CHECKPOINTS_FILE, size - (len(tail) - cut - 1))
        if cut < 0:
            return None
        line = tail[tail.rfind(b"\n", 0, cut) + 1 : cut]
        try:
            stored = parse_stored(line)
        except RecordError:
            raise IntegrityError(f"{self.dir.child_label(CHECKPOINTS_FILE)}: the last checkpoint is damaged") from None
        if cut + 1 == len(tail):  # (kept only when no fragment follows it: a repair would cut one)
            self._last_stored = stored
        return stored

    def seal(self, *, closing: bool = False) -> Checkpoint | None:
        """Sign a checkpoint over the whole log unless the last one already covers it (and, for
        `closing`, already closes the epoch). Only a checkpoint this signer made is extended:
        a log without one, or whose last one is not ours or not for this log, is refused, so
        the writer never signs content someone planted (no signing oracle)."""
        signer = self._signer()
        if self.head is None:
            self.load()
        head, last = self.head, self.last
        if head is None or last is None or self.torn:
            raise IntegrityError(f"{self.label} has a torn tail; reopen the store to repair it")
        size = head.next_seq
        stored = None if self._creating else self.last_checkpoint()
        frontier, offset = Frontier(), 0
        if stored is None:
            if size != 1 or not self._creating:
                raise IntegrityError(f"{self.label} has no signed checkpoint: refusing to sign it (planted or damaged)")
        else:
            try:
                signed = open_note(stored.note, signer.verifier)
            except RecordError:
                raise IntegrityError(f"{self.label}: its last checkpoint is not signed by this store's key; refusing "
                                     "to extend it") from None
            if signed.log_id != head.log_id or stored.frontier.root() != signed.root:
                raise IntegrityError(f"{self.label}: its last checkpoint does not belong to this log; refusing to "
                                     "extend it")
            if signed.size == size and (signed.closes or not closing):
                return None
            if signed.size > size:
                raise IntegrityError(f"{self.label} is shorter than its last checkpoint ({signed.size})")
            frontier, offset = stored.frontier.copy(), stored.offset
        if offset == self._known_end and frontier.size + len(self._written) == size:
            # Every line after the checkpoint is one this object appended: hash those (it signs
            # its own records, never read-back bytes someone else could have put there).
            for line in self._written:
                frontier.add(leaf_hash(line[:-1]))
                offset += len(line)
        for at, line in self.dir.iter_lines(LOG_FILE, self.max_line + 1, start=offset) if frontier.size < size else ():
            if frontier.size == size or not line.endswith(b"\n"):
                break
            frontier.add(leaf_hash(line[:-1]))
            offset = at + len(line)
        if frontier.size != size:
            raise IntegrityError(f"{self.label} ends before record {size - 1}")
        # Sign only what is durable: an outcome may have been appended without an fsync, and a
        # checkpoint must never survive a power cut that the records it covers do not.
        if not self._creating:  # (create wrote the genesis durably a moment ago)
            self.dir.flush(LOG_FILE)
        checkpoint = Checkpoint(self._load_keys().store, head.log_id, size, frontier.root(), head.prev,
                                last.epoch, self.clock(), closes=closing)
        # An ordinary checkpoint is not fsynced: losing it to a power cut loses no record (those
        # are durable), and heads and anchors are checked against the records, not this line. A
        # closing one is, before its epoch's key is destroyed, so a power cut leaves at most one
        # epoch unsealed; a new log's first one is, before the rename that publishes it.
        stored = StoredCheckpoint(sign_note(checkpoint, signer), frontier, offset)
        self._last_stored = None
        self.dir.append(CHECKPOINTS_FILE, stored.line(), durable=closing or self._creating)
        self._known_end, self._written, self._last_stored = offset, [], stored
        return checkpoint


def deciding(lines: list[bytes]) -> tuple[bool, Intent | None]:
    """(whether a record in `lines` decides, the open intent): the last intent or outcome
    decides; recovery and rejection records after it do not."""
    for line in reversed(lines):
        try:
            record = parse_record(line)
        except RecordError:
            return False, None  # a partial first line of the window: nothing further back is read
        if isinstance(record, Intent):
            return True, record
        if isinstance(record, (Outcome, Genesis)):
            return True, None
    return False, None


def decides(tail: bytes) -> bool:
    """Does this end of the log hold its last record and what decides the open intent?"""
    cut = tail.rfind(b"\n")
    return holds_last_line(tail) and deciding(tail[:cut].split(b"\n")[1:])[0]


def handover(old: AuditLog, directory: TreeDir) -> AuditLog:
    """`old`'s log, as a new object on `directory` (the same log, opened anew: a session's
    directory once published), knowing what `old` knows, so nothing is read back."""
    log = AuditLog(directory, clock=old.clock, actor=old.actor, max_line=old.max_line, signer=old.signer)
    log.head, log.last, log.keys, log.open_intent = old.head, old.last, old.keys, old.open_intent
    log._closing_checked, log._closing = old._closing_checked, old._closing
    log._known_end, log._written = old._known_end, list(old._written)
    log._last_stored = old._last_stored
    return log
