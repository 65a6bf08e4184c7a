"""What verifying one audit log found: the report, its failures and what the log committed."""

from __future__ import annotations

from dataclasses import dataclass, field

from .chain import Intent, SessionHead
from .keys import session_log_key

TAMPERED, TRUNCATED, INCOMPLETE = "tampered", "truncated", "incomplete"


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


def keep_first_failure(report: LogReport, failure: Failure) -> None:
    """Verification stops at the first failure: a later one never replaces it."""
    if report.failure is None:
        report.failure = failure
