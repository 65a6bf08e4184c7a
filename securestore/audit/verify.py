"""Log verification (pure, streaming): feed lines, get a report. Never trusts a stored hash.

Checks, in order, for every line: parse, schema, canonical, seq (continuity from 0), prev
(hash link, recomputed), log-id, genesis (first record, scope/session/store), epoch (the
ratchet rule in the MACed genesis, enforced exactly: nobody chooses an epoch), checkpoint (a
signed checkpoint at every epoch boundary), mac (with the seed: every record under its own
epoch's key), pairing (an outcome answers the one open intent), lifecycle (store log: no
session is created while it is live). Signed checkpoints are read alongside and must match the
recomputed Merkle root, head and epoch at their size; so must an anchor (a checkpoint kept
elsewhere) and, for a session log, the head the store log committed to. A final fragment
without a newline is a torn write: reported as torn, never as tampering. Memory is constant in
the length of the log.

LogVerifier runs the per-line checks; checkpoint_feed reads and matches the signed checkpoints,
lifecycle pairs intents with outcomes and applies what they committed, report holds the result.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

from .chain import GENESIS_PREV, Genesis, RecordBase, parse_record
from .checkpoint import Checkpoint
from .checkpoint_feed import CheckpointFeed
from .errors import RecordError
from .keys import EpochRule, RecordMac, VerifierKey, mac_key, parse_verifier_key, ratchet
from .lifecycle import SESSIONS_PREFIX, ChangeTracker
from .merkle import Frontier
from .report import INCOMPLETE, TAMPERED, TRUNCATED, Commit, CommittedHead, Creation, Failure, LogReport

__all__ = [
    "INCOMPLETE", "SESSIONS_PREFIX", "TAMPERED", "TRUNCATED", "Commit", "CommittedHead", "Creation", "Failure",
    "LogReport", "LogVerifier",
]

_sha256 = hashlib.sha256


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
        append_only: Callable[[str], bool] = lambda name: False,
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
        self._prev = GENESIS_PREV
        self._line_no = 0
        self._fragment_at: int | None = None
        self._chain_for = chain_for
        self._chain: bytes | None = None
        self._mac: RecordMac | None = None
        self._trusted = trusted
        self._trusted_as = trusted_as  # how the trusted key was obtained, for the report
        self._checkpoints = CheckpointFeed(self.report, checkpoints, checkpoints_label)
        self._anchor = anchor
        self._max_unsealed = max_unsealed
        # Session logs: the store's signer, never one a log declares for itself, and the head the
        # store log committed to (a rollback of this one log to an older copy falls short of it).
        self._signer_must_be = signer_must_be
        self._committed = committed
        self._changes = ChangeTracker(self.report, scope=scope, append_only=append_only)
        self._rule = EpochRule(1, 1)
        self._epoch = 0
        self._first_seq = 0
        self._start_ts = 0
        self._last_epoch = 0
        self._last_ts = 0
        self._frontier = Frontier()
        self._end = 0  # byte offset after the last good record

    def _fail(self, offset: int, seq: int | None, check: str, expected: object, actual: object,
              category: str = TAMPERED, *, line: int | None = None) -> None:
        if self.report.failure is None:
            self.report.failure = Failure(
                self.report.label, seq, self._line_no if line is None else line, offset, check,
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
                or record.epoch != self._epoch or self._checkpoints.closing_at == seq) \
                and not self._check_epoch(offset, seq, record):
            return  # (the common case, same epoch and nothing due, needs no call)
        if self._mac is not None and not self._mac.check(body):
            self._fail(offset, seq, "mac", f"a MAC under the epoch {record.epoch} key", "a different MAC")
            return
        if not self._changes.apply(self._line_no, offset, seq, record, self._chain):
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
        checkpoints = self._checkpoints
        pending = checkpoints.pending
        if pending is None or pending[0].size <= records:  # else nothing is due at this size
            checkpoints.match(self._store_id, self._frontier, self._prev, self._last_epoch)
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
        closed = self._checkpoints.closing_at == seq
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

    # -- anchors and committed heads: the log at their size must be the one they name ----------
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
            self._checkpoints.key, self.report.signer_trust = self._trusted, self._trusted_as
        else:
            # With the seed the genesis MAC (checked next) authenticates this key; without, nothing does.
            self._checkpoints.key = genesis_key
            self.report.signer_trust = "seed" if self._chain is not None else "unverified"
        return True

    def finish(self) -> LogReport:
        report = self.report
        if report.records == 0 and report.failure is None:
            self._fail(0, None, "genesis", "a genesis record", "an empty log")
        if report.failure is not None:
            return report
        if not self._checkpoints.finish():
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
            line, offset = self._changes.intent_at
            report.incomplete.append(Failure(
                report.label, report.dangling.seq, line, offset, "dangling-intent", "an outcome",
                f"none yet for {report.dangling.op}", INCOMPLETE))
        limit = self._max_unsealed if self._max_unsealed is not None else self._rule.records
        if report.unsealed > limit:
            report.incomplete.append(Failure(
                report.label, report.sealed_size, 0, 0, "unsealed", f"at most {limit} records after the last "
                "signed checkpoint", f"{report.unsealed} records", INCOMPLETE))
        return report
