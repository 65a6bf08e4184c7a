"""What `audit verify` takes from the auditor and reports: the same for every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .anchor import Anchor
from .keys import VerifierKey
from .verify import INCOMPLETE, TAMPERED, TRUNCATED, Failure, LogReport


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class VerifyOptions:
    """What the auditor brings from outside the store. Each raises what verify can prove."""

    seed: bytes | None = None  # checks every record's MAC (forward integrity)
    public_key: VerifierKey | None = None  # the trusted checkpoint signer
    public_key_from: str = "public-key"  # where it came from: given (public-key), or the store's key directory (keyring)
    anchor: Anchor | None = None  # checkpoints kept elsewhere: catches cut tails and rollbacks
    max_unsealed: int | None = None  # records allowed after the last checkpoint (default: one epoch)


@dataclass
class VerifyReport:
    logs: list[LogReport] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    incomplete: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    anchors: list[str] = field(default_factory=list)
    files_checked: int = 0
    seed: bool = False
    public_key: str | None = None
    trust_root: str = "none"  # where the trusted checkpoint signer came from (see _Checker._trust_root)
    deletions: list[str] = field(default_factory=list)  # every session deletion the store log records
    index: list[str] = field(default_factory=list)  # where the listing index disagrees with the trail

    @property
    def ok(self) -> bool:
        return not self.failures and not self.incomplete

    @property
    def exit_code(self) -> int:
        """0 ok; 1 tampered; 5 truncated or rolled back against an anchor; 6 incomplete."""
        categories = {f.category for f in self.failures}
        if TAMPERED in categories:
            return 1
        if TRUNCATED in categories:
            return 5
        return 6 if self.incomplete or INCOMPLETE in categories else 0

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "exit_code": self.exit_code,
            "files_checked": self.files_checked,
            "seed": self.seed,
            "public_key": self.public_key,
            "trust_root": self.trust_root,
            "deletions": self.deletions,
            "anchors": self.anchors,
            "index": self.index,
            "logs": [
                {"log": r.label, "log_id": r.log_id, "records": r.records, "first_seq": 0 if r.records else None,
                 "last_seq": r.last_seq, "first_ts": r.first_ts, "last_ts": r.last_ts, "torn_bytes": r.torn_bytes,
                 "pending_intent": r.dangling.seq if r.dangling else None, "rejections": r.rejected,
                 "mac_checked": r.mac_checked, "signer": r.signer, "signer_trust": r.signer_trust,
                 "epochs": r.epochs, "checkpoints": r.checkpoints, "sealed_size": r.sealed_size,
                 "unsealed": r.unsealed, "anchor": r.anchor, "ok": r.ok}
                for r in self.logs
            ],
            "failures": [f.to_json() for f in self.failures],
            "incomplete": [f.to_json() for f in self.incomplete],
            "warnings": self.warnings,
        }
