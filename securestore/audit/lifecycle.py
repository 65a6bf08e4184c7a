"""What a log's changes did (pure, streaming): every outcome answers the one open intent; a
committed change records its targets (append-only files line by line) and, in the store log,
the sessions it created or deleted and the session log heads it committed to. Memory grows
with the number of targets and sessions, never with the length of the log.
"""

from __future__ import annotations

from collections.abc import Callable

from ..core.transcript import lines_digest
from .chain import COMMITTED_RESULTS, Genesis, Heads, Intent, Outcome, RecordBase, Rejected
from .report import Commit, CommittedHead, Creation, Failure, LogReport, keep_first_failure

SESSIONS_PREFIX = "sessions/"


class ChangeTracker:
    """Pairs intents with outcomes and applies each committed change to the report."""

    def __init__(self, report: LogReport, *, scope: str, append_only: Callable[[str], bool]) -> None:
        self._report = report
        self._store_log = scope == "store"
        self._append_only = append_only
        self._line = 0
        self.intent_at: tuple[int, int] = (0, 0)  # the open intent's line and byte offset
        self._pending_creates: dict[str, Creation] = {}
        self._pending_deletes: list[str] = []

    def _fail(self, offset: int, seq: int, check: str, expected: str, actual: str) -> bool:
        report = self._report
        keep_first_failure(report, Failure(report.label, seq, self._line, offset, check, expected, actual))
        return False

    def apply(self, line: int, offset: int, seq: int, record: RecordBase, chain: bytes | None) -> bool:
        """One record that passed the chain checks; False on a failure (kept in the report).
        `chain` is the chain key of the record's epoch (None without the seed)."""
        self._line = line
        if isinstance(record, Intent):
            return self._open(offset, seq, record, chain)
        if isinstance(record, Outcome):
            return self._close(offset, seq, record)
        if isinstance(record, Heads):
            return self._note_heads(offset, seq, record)
        if isinstance(record, Genesis):
            if seq != 0:
                return self._fail(offset, seq, "genesis", "one genesis record at seq 0", "another genesis record")
            return True
        if isinstance(record, Rejected):
            self._report.rejected += 1
            return True
        return True  # Recovery records carry facts only

    def _open(self, offset: int, seq: int, intent: Intent, chain: bytes | None) -> bool:
        report = self._report
        if report.dangling is not None:
            return self._fail(offset, seq, "pairing", f"outcome of intent {report.dangling.seq}", "a new intent")
        report.dangling = intent
        self.intent_at = (self._line, offset)
        if self._store_log:
            return self._session_changes(offset, seq, intent, chain)
        return True

    def _close(self, offset: int, seq: int, outcome: Outcome) -> bool:
        report = self._report
        intent = report.dangling
        if intent is None or outcome.txn != intent.seq:
            want = f"txn {intent.seq}" if intent else "no outcome (no open intent)"
            return self._fail(offset, seq, "pairing", want, f"txn {outcome.txn}")
        if outcome.result in COMMITTED_RESULTS:
            if outcome.sha256 != intent.sha256:
                return self._fail(offset, seq, "pairing", f"sha256 {intent.sha256}", f"sha256 {outcome.sha256}")
            replaced = intent.op.endswith(".compact")
            self._commit(intent.target, intent.sha256, intent.seq, replace=replaced)
            others = list(intent.also)
            sealing = intent.op.endswith(".seal") and bool(others)
            if sealing:  # the sealed file first, then the files the seal removed
                sealed = others.pop(0)
                if not self._seal(offset, seq, sealed.target, sealed.sha256, intent.seq):
                    return False
            for other in others:
                self._commit(other.target, other.sha256, intent.seq, replace=sealing)
            for name in self._pending_deletes:
                report.live.pop(name, None)
                report.deletions.append((name, intent.seq, outcome.ts, outcome.epoch))
            report.live.update(self._pending_creates)
        self._pending_creates, self._pending_deletes = {}, []
        report.in_flight = {}
        report.dangling = None
        return True

    def _note_heads(self, offset: int, seq: int, record: Heads) -> bool:
        if not self._store_log:
            return self._fail(offset, seq, "schema", "heads records only in the store log", "a heads record")
        heads = self._report.heads
        for head in record.heads:
            best = heads.get(head.log)
            if best is None or head.size > best.head.size:
                heads[head.log] = CommittedHead(head, seq)
        return True

    def _session_changes(self, offset: int, seq: int, intent: Intent, chain: bytes | None) -> bool:
        """Store log: the sessions an intent creates or deletes. A session log's first key comes
        only from the intent that created it, so creating a session that is live is a failure:
        otherwise a forged create (MACed with a stolen current key) would hand the verifier a
        key the attacker knows for a session created long before."""
        report = self._report
        for target, sha256 in [(intent.target, intent.sha256), *((t.target, t.sha256) for t in intent.also)]:
            name = target.removeprefix(SESSIONS_PREFIX)
            if not target.startswith(SESSIONS_PREFIX) or "/" in name:
                continue
            if sha256 is None:
                self._pending_deletes.append(name)
                continue
            if name in report.live:
                return self._fail(offset, seq, "lifecycle", f"no create of {target} while it is live",
                                  f"a create (the session was created at seq {report.live[name].seq})")
            self._pending_creates[name] = Creation(seq, chain)
        report.in_flight = dict(self._pending_creates)
        return True

    def _seal(self, offset: int, seq: int, target: str, digest: str | None, intent_seq: int) -> bool:
        """An append-only file made immutable: its digest must be that of exactly the lines the
        trail committed to it (so a line altered before the seal is caught, not laundered)."""
        report = self._report
        lines = report.appended.pop(target, [])
        want = lines_digest(commit.sha256 or "" for commit in lines)
        if digest != want:
            return self._fail(offset, seq, "seal", f"{target} sealed with the digest of its {len(lines)} committed lines",
                              f"a digest of other content ({digest})")
        report.committed[target] = Commit(digest, intent_seq, *self.intent_at)
        return True

    def _commit(self, target: str, sha256: str | None, seq: int, *, replace: bool) -> None:
        report = self._report
        commit = Commit(sha256, seq, *self.intent_at)
        name = target.rsplit("/", 1)[-1]
        if self._append_only(name) and not replace:
            report.appended.setdefault(target, []).append(commit)
            return
        report.committed[target] = commit
        if self._append_only(name):
            report.appended[target] = []
        if sha256 is None and target.startswith(SESSIONS_PREFIX):
            report.deleted[target.removeprefix(SESSIONS_PREFIX)] = seq
