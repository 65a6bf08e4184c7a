"""Log verification (pure, streaming): feed lines, get a report. Never trusts a stored hash.

Checks, in order, for every line: parse, schema, canonical, seq (continuity from 0), prev
(hash link, recomputed), log-id, genesis (first record, scope/session/store), epoch (the
ratchet rule in the MACed genesis, enforced exactly: nobody chooses an epoch), checkpoint (a
signed checkpoint at every epoch boundary), mac (with the seed: every record under its own
epoch's key), pairing (an outcome answers the one open intent), lifecycle (store log: no
session is created while it is live). Signed checkpoints are read alongside and must match the
recomputed Merkle root, head and epoch at their size; so must an anchor (a checkpoint kept
elsewhere) and, for a session log, the head the store log committed to. A final fragment without a newline is a torn write:
reported as torn, never as tampering. Memory is constant in the length of the log.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from .chain import (
    COMMITTED_RESULTS,
    GENESIS_PREV,
    Genesis,
    Heads,
    Intent,
    Outcome,
    RecordBase,
    Rejected,
    SessionHead,
    parse_record,
)
from .errors import RecordError
from .checkpoint import Checkpoint, open_note, parse_stored
from .keys import EpochRule, RecordMac, VerifierKey, mac_key, parse_verifier_key, ratchet, session_log_key
from .merkle import Frontier

TAMPERED, TRUNCATED, INCOMPLETE = "tampered", "truncated", "incomplete"
_sha256 = hashlib.sha256
SESSIONS_PREFIX = "sessions/"


@dataclass(frozen=True)
class Failure:
    log: str
    seq: int | None
    line: int
    offset: int
    check: str
    expected: str
    actual: str
    category: str = TAMPERED  # tampered (exit 1), truncated/rolled back (5), incomplete (6)

    def describe(self) -> str:
        if self.seq is None and self.line == 0 and self.offset == 0:  # a finding about a whole file
            return f"{self.log}: failed the {self.check} check: expected {self.expected}, found {self.actual}"
        where = f"seq {self.seq}" if self.seq is not None else "an unreadable record"
        return (
            f"{self.log}: {where} (line {self.line}, byte {self.offset}) failed the {self.check} check: "
            f"expected {self.expected}, found {self.actual}"
        )

    def to_json(self) -> dict[str, object]:
        return {"log": self.log, "seq": self.seq, "line": self.line, "offset": self.offset, "check": self.check,
                "expected": self.expected, "actual": self.actual, "category": self.category}


@dataclass(slots=True)
class Commit:
    """The last committed change of one target: its content hash (None: removed) and where."""

    sha256: str | None
    seq: int
    line: int
    offset: int


@dataclass(frozen=True, slots=True)
class Creation:
    """The store-log intent that created a session: its seq and (with the seed) the chain key of
    its epoch, from which the session log's first key derives."""

    seq: int
    chain: bytes | None


@dataclass(frozen=True, slots=True)
class CommittedHead:
    """A session log head the store log committed to, and the store-log record that did."""

    head: SessionHead
    seq: int


@dataclass
class LogReport:
    label: str
    log_id: str | None = None
    store_id: str | None = None
    records: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    failure: Failure | None = None
    torn_bytes: int = 0
    dangling: Intent | None = None
    rejected: int = 0
    committed: dict[str, Commit] = field(default_factory=dict)
    # Append-only files: the lines committed since the file was last replaced, in order.
    appended: dict[str, list[Commit]] = field(default_factory=dict)
    mac_checked: bool = False
    signer: str | None = None
    # seed (MACed genesis), public-key (given), signing-key (the configured one), anchor (the
    # anchor's signer), or unverified
    signer_trust: str = "none"
    epochs: int = 0
    epoch_records: int | None = None
    checkpoints: int = 0  # verified checkpoints matched against the log
    sealed_size: int = 0  # records covered by the last matched checkpoint
    torn_checkpoint_bytes: int = 0
    anchor: str | None = None  # what the anchor check concluded
    incomplete: list[Failure] = field(default_factory=list)
    # Store log: the seq of each session's last committed deletion (a later session under the
    # same name is a new log, and an anchor of the old one no longer applies to it).
    deleted: dict[str, int] = field(default_factory=dict)
    # Store log: each live session's creation (the committed intent that created it), and the
    # creations of the open intent (a change in flight may have created its sessions).
    live: dict[str, Creation] = field(default_factory=dict)
    in_flight: dict[str, Creation] = field(default_factory=dict)
    # Store log: the largest session head it committed to, per session log id.
    heads: dict[str, CommittedHead] = field(default_factory=dict)
    # Store log: every committed session deletion, in order: (session name, intent seq, ts, epoch).
    deletions: list[tuple[str, int, int, int]] = field(default_factory=list)

    def creation(self, name: str) -> Creation | None:
        """The intent that created session `name`'s current log (committed, else in flight)."""
        return self.live.get(name) or self.in_flight.get(name)

    def child_key(self, name: str) -> bytes | None:
        """The first chain key of session `name`'s log, derived ONLY from the intent that created
        it (with the seed): never from a later record naming the session."""
        found = self.creation(name)
        if found is None or found.chain is None:
            return None
        return session_log_key(found.chain, name, found.seq)

    @property
    def unsealed(self) -> int:
        return self.records - self.sealed_size

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def last_seq(self) -> int | None:
        return self.records - 1 if self.records else None


class LogVerifier:
    def __init__(
        self,
        label: str,
        *,
        scope: str,
        store_id: str | None = None,
        session: str | None = None,
        log_id: str | None = None,
        max_line: int = 64 * 1024,
        append_only: frozenset[str] = frozenset(),
        chain_for: Callable[[str], bytes | None] | None = None,
        trusted: VerifierKey | None = None,
        checkpoints: Iterator[tuple[int, bytes]] | None = None,
        checkpoints_label: str = "checkpoints",
        anchor: Checkpoint | None = None,
        max_unsealed: int | None = None,
        signer_must_be: VerifierKey | None = None,
        committed: CommittedHead | None = None,
        trusted_as: str = "public-key",
    ) -> None:
        self.report = LogReport(label)
        self._scope = scope
        self._store_id = store_id
        self._session = session
        self._expected_log_id = log_id
        self._max_line = max_line
        self._append_only = append_only
        self._prev = GENESIS_PREV
        self._line_no = 0
        self._fragment_at: int | None = None
        self._intent_at: tuple[int, int] = (0, 0)
        self._chain_for = chain_for
        self._chain: bytes | None = None
        self._mac: RecordMac | None = None
        self._trusted = trusted
        self._trusted_as = trusted_as  # how the trusted key was obtained, for the report
        self._key: VerifierKey | None = None
        self._checkpoints = checkpoints
        self._checkpoints_expected = checkpoints is not None
        self._checkpoints_label = checkpoints_label
        self._cp_line = 0
        self._pending_cp: tuple[Checkpoint, int, int] | None = None
        self._anchor = anchor
        self._max_unsealed = max_unsealed
        # Session logs: the store's signer, never one a log declares for itself, and the head the
        # store log committed to (a rollback of this one log to an older copy falls short of it).
        self._signer_must_be = signer_must_be
        self._committed = committed
        self._pending_creates: dict[str, Creation] = {}
        self._pending_deletes: list[str] = []
        self._rule = EpochRule(1, 1)
        self._epoch = 0
        self._first_seq = 0
        self._start_ts = 0
        self._last_epoch = 0
        self._last_ts = 0
        self._closing_at: int | None = None  # the size a signed checkpoint closed an epoch at
        self._frontier = Frontier()
        self._end = 0  # byte offset after the last good record

    def _fail(self, offset: int, seq: int | None, check: str, expected: object, actual: object,
              category: str = TAMPERED, *, label: str | None = None, line: int | None = None) -> None:
        if self.report.failure is None:
            self.report.failure = Failure(
                label or self.report.label, seq, self._line_no if line is None else line, offset, check,
                str(expected), str(actual), category,
            )

    def feed(self, offset: int, line: bytes) -> None:
        """One line as read from the file, with its newline (the final fragment may lack it)."""
        if self.report.failure is not None:
            return
        self._line_no += 1
        if self._fragment_at is not None:
            self._fail(self._fragment_at, None, "parse", "a complete line", "an unterminated line mid-log")
            return
        if not line.endswith(b"\n"):
            self._fragment_at = offset
            self.report.torn_bytes = len(line)
            return
        body = line[:-1]
        seq = self.report.records
        if len(body) > self._max_line:
            self._fail(offset, None, "parse", f"at most {self._max_line} bytes", f"{len(body)} bytes")
            return
        try:
            record = parse_record(body)
        except RecordError as exc:
            self._fail(offset, None, exc.check, "a valid record", exc.detail)
            return
        if record.seq != seq:
            self._fail(offset, record.seq, "seq-gap", seq, record.seq)
            return
        if record.prev != self._prev:
            self._fail(offset, seq, "prev", self._prev, record.prev)
            return
        if seq == 0:
            if not self._check_genesis(offset, record):
                return
        elif record.log != self.report.log_id:
            self._fail(offset, seq, "log-id", self.report.log_id, record.log)
            return
        if record.ts < self._last_ts:  # the writer never goes back in time; epochs are timed by ts
            self._fail(offset, seq, "time", f"ts at least {self._last_ts}", record.ts)
            return
        rule = self._rule
        if (seq == 0 or seq - self._first_seq >= rule.records or record.ts - self._start_ts >= rule.seconds * 1000
                or record.epoch != self._epoch or self._closing_at == seq) and not self._check_epoch(offset, seq, record):
            return  # (the common case, same epoch and nothing due, needs no call)
        if self._mac is not None and not self._mac.check(body):
            self._fail(offset, seq, "mac", f"a MAC under the epoch {record.epoch} key", "a different MAC")
            return
        if not self._apply(offset, seq, record):
            return
        digest = _sha256(b"\x00" + body).digest()
        self._end = offset + len(line)
        self._prev = digest.hex()
        self._frontier.add(digest)
        self._last_epoch = record.epoch
        self._last_ts = record.ts
        report = self.report
        report.records += 1
        records = report.records
        if report.first_ts is None:
            report.first_ts = record.ts
        report.last_ts = record.ts
        pending = self._pending_cp
        if pending is None or pending[0].size <= records:  # else nothing is due at this size
            self._match_checkpoints()
        anchor = self._anchor
        if anchor is not None and anchor.size == records:
            self._match_anchor(offset, anchor)
        committed = self._committed
        if committed is not None and committed.head.size == records:
            self._match_committed(offset, committed)

    def _check_epoch(self, offset: int, seq: int, record: RecordBase) -> bool:
        if seq == 0:
            if record.epoch != 0:
                self._fail(offset, seq, "epoch", 0, record.epoch)
                return False
            self._start_ts = record.ts
            self.report.epochs = 1
            return True
        # A ratchet happens exactly where a signed checkpoint closed the epoch: the records' own
        # timestamps (which whoever holds the current key can rewrite) cannot move a boundary.
        # It must happen when the rule says it is due; a writer whose clock ran ahead may have
        # closed the epoch early, which the signed closing checkpoint makes legitimate.
        due = self._rule.due(seq - self._first_seq, record.ts, self._start_ts)
        closed = self._closing_at == seq
        ratchets = record.epoch == self._epoch + 1
        if closed and not ratchets:
            self._fail(offset, seq, "epoch", f"{self._epoch + 1} (the checkpoint at size {seq} closed epoch "
                       f"{self._epoch})", record.epoch)
            return False
        if ratchets and not closed:
            self._fail(offset, seq, "checkpoint", f"a signed checkpoint closing epoch {self._epoch} at size {seq}",
                       f"none (the last one at size {self.report.sealed_size})")
            return False
        if not ratchets and (due or record.epoch != self._epoch):
            self._fail(offset, seq, "epoch", self._epoch + 1 if due else self._epoch, record.epoch)
            return False
        if ratchets:
            self._epoch, self._first_seq, self._start_ts = record.epoch, seq, record.ts
            self.report.epochs += 1
            if self._chain is not None:
                self._chain = ratchet(self._chain)
                self._mac = RecordMac(mac_key(self._chain))
        return True

    # -- checkpoints -----------------------------------------------------------------------------
    def _next_checkpoint(self) -> tuple[Checkpoint, int, int] | None:
        """The next checkpoint in the file (signature checked), with its line and offset."""
        if self._pending_cp is not None:
            return self._pending_cp
        if self._checkpoints is None or self._key is None:
            return None
        for offset, line in self._checkpoints:
            self._cp_line += 1
            label = self._checkpoints_label
            if not line.endswith(b"\n"):
                self.report.torn_checkpoint_bytes = len(line)
                return None
            try:
                stored = parse_stored(line[:-1])
                checkpoint = open_note(stored.note, self._key)
            except RecordError as exc:
                self._fail(offset, None, exc.check, f"a checkpoint signed by {self._key.name}", exc.detail,
                           label=label, line=self._cp_line)
                self._checkpoints = None
                return None
            self._pending_cp = (checkpoint, self._cp_line, offset)
            return self._pending_cp
        self._checkpoints = None
        return None

    def _match_checkpoints(self) -> None:
        count = self.report.records
        while self.report.failure is None:
            pending = self._next_checkpoint()
            if pending is None:
                return
            checkpoint, line, offset = pending
            if checkpoint.size > count:
                return
            self._pending_cp = None
            label = self._checkpoints_label
            # Sizes increase; one closing checkpoint may follow an ordinary one at the same size.
            closes_again = checkpoint.closes and checkpoint.size == self.report.sealed_size and self._closing_at != count
            if checkpoint.size < count or (checkpoint.size <= self.report.sealed_size and not closes_again):
                self._fail(offset, checkpoint.size - 1, "checkpoint", f"sizes increasing past {self.report.sealed_size}",
                           f"size {checkpoint.size} after {count} records", label=label, line=line)
                return
            expected = (self._store_id or self.report.store_id, self.report.log_id, self._frontier.root().hex(),
                        self._prev, self._last_epoch)
            actual = (checkpoint.store_id, checkpoint.log_id, checkpoint.root.hex(), checkpoint.head,
                      checkpoint.epoch)
            if expected != actual:
                names = ("store", "log", "root", "head", "epoch")
                which = next(i for i in range(5) if expected[i] != actual[i])
                self._fail(offset, checkpoint.size - 1, "consistency",
                           f"{names[which]} {expected[which]} at size {count}", f"{names[which]} {actual[which]}",
                           label=label, line=line)
                return
            self.report.checkpoints += 1
            self.report.sealed_size = count
            if checkpoint.closes:
                self._closing_at = count

    def _match_anchor(self, offset: int, anchor: Checkpoint) -> None:
        root = self._frontier.root()
        if root != anchor.root or self._prev != anchor.head:
            self._fail(offset, anchor.size - 1, "consistency", f"the anchored root {anchor.root.hex()} at size "
                       f"{anchor.size}", f"root {root.hex()} (rolled back or rewritten)", TRUNCATED)
            self.report.anchor = "inconsistent"
        else:
            self.report.anchor = f"consistent with the anchored checkpoint at size {anchor.size}"

    def _match_committed(self, offset: int, committed: CommittedHead) -> None:
        head = committed.head
        if self._frontier.root().hex() != head.root or self._prev != head.head:
            self._fail(offset, head.size - 1, "consistency", f"the head committed to the store log at seq "
                       f"{committed.seq} (size {head.size}, root {head.root})",
                       f"root {self._frontier.root().hex()} (rolled back or rewritten)", TRUNCATED)

    def _check_genesis(self, offset: int, record: RecordBase) -> bool:
        if not isinstance(record, Genesis):
            self._fail(offset, 0, "genesis", "a genesis record", getattr(record, "kind", "?"))
            return False
        expected = {
            "scope": self._scope,
            "store": self._store_id,
            "session": self._session,
            "log-id": self._expected_log_id,
        }
        actual = {"scope": record.scope, "store": record.store, "session": record.session, "log-id": record.log}
        for name, want in expected.items():
            if want is not None and actual[name] != want:
                check = "log-id" if name == "log-id" else "genesis"
                self._fail(offset, 0, check, f"{name} {want}", f"{name} {actual[name]}")
                return False
        anchor = self._anchor
        if anchor is not None and (anchor.log_id != record.log or anchor.store_id != record.store):
            self._fail(offset, 0, "log-id", f"log {anchor.log_id} (anchored)", f"log {record.log} (a different "
                       "log under the same name: rewritten or replaced)", TRUNCATED)
            self.report.anchor = "a different log"
            return False
        self.report.log_id = record.log
        self.report.store_id = record.store
        chain = self._chain_for(record.log) if self._chain_for is not None else None
        if chain is not None:  # the seed's chain for this log: every record's MAC is checked
            self._chain, self._mac, self.report.mac_checked = chain, RecordMac(mac_key(chain)), True
        self._rule = EpochRule(record.epoch_records, record.epoch_seconds)
        self.report.epoch_records = record.epoch_records
        self.report.signer = record.signer
        try:
            genesis_key = parse_verifier_key(record.signer)
        except RecordError as exc:
            self._fail(offset, 0, "genesis", "an Ed25519 signer key", exc.detail)
            return False
        required = self._signer_must_be
        if required is not None and genesis_key != required:
            self._fail(offset, 0, "genesis", f"signer {required.text()} (the store's)",
                       f"signer {record.signer} (declared by this log for itself)")
            return False
        if self._trusted is not None:
            if self._chain is not None and self._trusted != genesis_key:
                self._fail(offset, 0, "checkpoint-signature", f"signer {self._trusted.text()} (given)",
                           f"signer {record.signer} (MACed into the genesis record)")
                return False
            self._key, self.report.signer_trust = self._trusted, self._trusted_as
        else:
            # With the seed the genesis MAC (checked next) authenticates this key; without, nothing does.
            self._key = genesis_key
            self.report.signer_trust = "seed" if self._chain is not None else "unverified"
        return True

    def _apply(self, offset: int, seq: int, record: object) -> bool:
        report = self.report
        if isinstance(record, Intent):
            if report.dangling is not None:
                self._fail(offset, seq, "pairing", f"outcome of intent {report.dangling.seq}", "a new intent")
                return False
            report.dangling = record
            self._intent_at = (self._line_no, offset)
            if self._scope == "store":
                return self._session_changes(offset, seq, record)
            return True
        if isinstance(record, Outcome):
            intent = report.dangling
            if intent is None or record.txn != intent.seq:
                want = f"txn {intent.seq}" if intent else "no outcome (no open intent)"
                self._fail(offset, seq, "pairing", want, f"txn {record.txn}")
                return False
            if record.result in COMMITTED_RESULTS:
                if record.sha256 != intent.sha256:
                    self._fail(offset, seq, "pairing", f"sha256 {intent.sha256}", f"sha256 {record.sha256}")
                    return False
                replaced = intent.op.endswith(".compact")
                self._commit(intent.target, intent.sha256, intent.seq, replace=replaced)
                for other in intent.also:
                    self._commit(other.target, other.sha256, intent.seq, replace=False)
                for name in self._pending_deletes:
                    report.live.pop(name, None)
                    report.deletions.append((name, intent.seq, record.ts, record.epoch))
                report.live.update(self._pending_creates)
            self._pending_creates, self._pending_deletes = {}, []
            report.in_flight = {}
            report.dangling = None
            return True
        if isinstance(record, Heads):
            if self._scope != "store":
                self._fail(offset, seq, "schema", "heads records only in the store log", "a heads record")
                return False
            for head in record.heads:
                best = report.heads.get(head.log)
                if best is None or head.size > best.head.size:
                    report.heads[head.log] = CommittedHead(head, seq)
            return True
        if isinstance(record, Genesis):
            if seq != 0:
                self._fail(offset, seq, "genesis", "one genesis record at seq 0", "another genesis record")
                return False
            return True
        if isinstance(record, Rejected):
            report.rejected += 1
            return True
        return True  # Recovery records carry facts only

    def _session_changes(self, offset: int, seq: int, intent: Intent) -> bool:
        """Store log: the sessions an intent creates or deletes. A session log's first key comes
        only from the intent that created it, so creating a session that is live is a failure:
        otherwise a forged create (MACed with a stolen current key) would hand the verifier a
        key the attacker knows for a session created long before."""
        report = self.report
        for target, sha256 in [(intent.target, intent.sha256), *((t.target, t.sha256) for t in intent.also)]:
            name = target.removeprefix(SESSIONS_PREFIX)
            if not target.startswith(SESSIONS_PREFIX) or "/" in name:
                continue
            if sha256 is None:
                self._pending_deletes.append(name)
                continue
            if name in report.live:
                self._fail(offset, seq, "lifecycle", f"no create of {target} while it is live",
                           f"a create (the session was created at seq {report.live[name].seq})")
                return False
            self._pending_creates[name] = Creation(seq, self._chain)
        report.in_flight = dict(self._pending_creates)
        return True

    def _commit(self, target: str, sha256: str | None, seq: int, *, replace: bool) -> None:
        commit = Commit(sha256, seq, *self._intent_at)
        name = target.rsplit("/", 1)[-1]
        if name in self._append_only and not replace:
            self.report.appended.setdefault(target, []).append(commit)
            return
        self.report.committed[target] = commit
        if name in self._append_only:
            self.report.appended[target] = []
        if sha256 is None and target.startswith(SESSIONS_PREFIX):
            self.report.deleted[target.removeprefix(SESSIONS_PREFIX)] = seq

    def finish(self) -> LogReport:
        report = self.report
        if report.records == 0 and report.failure is None:
            self._fail(0, None, "genesis", "a genesis record", "an empty log")
        if report.failure is not None:
            return report
        if report.checkpoints == 0 and self._checkpoints_expected:
            self._fail(0, 0, "checkpoint", "a signed checkpoint at size 1 (written with the genesis record)",
                       "no valid checkpoint (deleted?)", label=self._checkpoints_label, line=0)
            return report
        pending = self._next_checkpoint()
        if pending is not None:
            checkpoint, line, offset = pending
            self._fail(offset, report.records, "consistency", f"at least {checkpoint.size} records (signed checkpoint)",
                       f"{report.records} records (the tail was cut)", TRUNCATED, label=self._checkpoints_label,
                       line=line)
            return report
        anchor = self._anchor
        if anchor is not None and anchor.size > report.records:
            self._fail(self._end, report.records, "consistency", f"at least {anchor.size} records (anchored "
                       "checkpoint)", f"{report.records} records (truncated or rolled back)", TRUNCATED,
                       line=self._line_no + 1)
            report.anchor = "truncated"
            return report
        committed = self._committed
        if committed is not None and committed.head.size > report.records:
            self._fail(self._end, report.records, "consistency", f"at least {committed.head.size} records (the head "
                       f"committed to the store log at seq {committed.seq})", f"{report.records} records (truncated "
                       "or rolled back)", TRUNCATED, line=self._line_no + 1)
            return report
        if report.dangling is not None:
            report.incomplete.append(Failure(
                report.label, report.dangling.seq, self._intent_at[0], self._intent_at[1], "dangling-intent",
                "an outcome", f"none yet for {report.dangling.op}", INCOMPLETE))
        limit = self._max_unsealed if self._max_unsealed is not None else self._rule.records
        if report.unsealed > limit:
            report.incomplete.append(Failure(
                report.label, report.sealed_size, 0, 0, "unsealed", f"at most {limit} records after the last "
                "signed checkpoint", f"{report.unsealed} records", INCOMPLETE))
        return report
