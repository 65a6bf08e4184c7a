"""Log verification (pure, streaming): feed lines, get a report. Never trusts a stored hash.

Checks, in order, for every line: parse, schema, canonical, seq (continuity from 0), prev
(hash link, recomputed), log-id, genesis (first record, scope/session/store), pairing (an
outcome answers the one open intent; no intent while another is open). A final fragment
without a newline is a torn write: reported as torn, never as tampering.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .chain import (
    COMMITTED_RESULTS,
    GENESIS_PREV,
    Genesis,
    Intent,
    Outcome,
    RecordError,
    Rejected,
    parse_record,
    record_hash,
)


@dataclass(frozen=True)
class Failure:
    log: str
    seq: int | None
    line: int
    offset: int
    check: str
    expected: str
    actual: str

    def describe(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "an unreadable record"
        return (
            f"{self.log}: {where} (line {self.line}, byte {self.offset}) failed the {self.check} check: "
            f"expected {self.expected}, found {self.actual}"
        )


@dataclass(frozen=True)
class Commit:
    """The last committed change of one target: its content hash (None: removed) and where."""

    sha256: str | None
    seq: int
    line: int
    offset: int


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

    def _fail(self, offset: int, seq: int | None, check: str, expected: object, actual: object) -> None:
        if self.report.failure is None:
            self.report.failure = Failure(
                self.report.label, seq, self._line_no, offset, check, str(expected), str(actual)
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
        if not self._apply(offset, seq, record):
            return
        self._prev = record_hash(body)
        self.report.records += 1
        ts = record.ts
        if self.report.first_ts is None:
            self.report.first_ts = ts
        self.report.last_ts = ts

    def _check_genesis(self, offset: int, record: object) -> bool:
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
        self.report.log_id = record.log
        self.report.store_id = record.store
        return True

    def _apply(self, offset: int, seq: int, record: object) -> bool:
        report = self.report
        if isinstance(record, Genesis):
            if seq != 0:
                self._fail(offset, seq, "genesis", "one genesis record at seq 0", "another genesis record")
                return False
            return True
        if isinstance(record, Intent):
            if report.dangling is not None:
                self._fail(offset, seq, "pairing", f"outcome of intent {report.dangling.seq}", "a new intent")
                return False
            report.dangling = record
            self._intent_at = (self._line_no, offset)
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
            report.dangling = None
            return True
        if isinstance(record, Rejected):
            report.rejected += 1
            return True
        return True  # Recovery records carry facts only

    def _commit(self, target: str, sha256: str | None, seq: int, *, replace: bool) -> None:
        commit = Commit(sha256, seq, *self._intent_at)
        name = target.rsplit("/", 1)[-1]
        if name in self._append_only and not replace:
            self.report.appended.setdefault(target, []).append(commit)
            return
        self.report.committed[target] = commit
        if name in self._append_only:
            self.report.appended[target] = []

    def finish(self) -> LogReport:
        if self.report.records == 0 and self.report.failure is None:
            self._fail(0, None, "genesis", "a genesis record", "an empty log")
        return self.report
