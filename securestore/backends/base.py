"""The seam between the API and storage: what `api/` needs from a backend.

`backends/local/` implements these on a directory tree (`SessionDir`, `StoreDir`); a second
backend (issue 13: PostgreSQL) implements the same protocols, and every write still runs
through `txn.apply` against its own `AuditSink`. mypy checks the local classes against these
(see `backends/local/conformance.py`)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ..config import Limits
from ..core.journal import Op
from ..core.records import Manifest, SessionMetadata, SlotEnvelope
from ..core.secrets.sink import VaultSink
from ..core.secrets.vault import Vault
from ..errors import PolicyError


@dataclass(frozen=True)
class Subject:
    """What a rejected write was aimed at, for its audit record; the backend names the target."""
    kind: str  # "transcript", "metadata" or "slot"
    ext_id: str | None = None

    TRANSCRIPT: ClassVar[Subject]
    METADATA: ClassVar[Subject]

    @staticmethod
    def slot(ext_id: str) -> Subject:
        return Subject("slot", ext_id)


Subject.TRANSCRIPT = Subject("transcript")
Subject.METADATA = Subject("metadata")


class SessionReadable(Protocol):
    """A session as its files hold it."""
    name: str
    key: str
    manifest: Manifest

    def slot(self, ext_id: str) -> SlotEnvelope | None: ...
    def slot_names(self) -> list[str]: ...
    def stored_vault(self) -> tuple[Vault | None, bytes] | None: ...


class SessionReader(SessionReadable, Protocol):
    """A session opened for reading: no lock, nothing repaired or written."""
    @property
    def revisions(self) -> list[Manifest]: ...
    def items(self, limit: int | None = None) -> list[Any]: ...
    def item_count(self) -> int: ...
    def slot_count(self) -> int: ...
    def lock_holder(self) -> str | None: ...


class SessionBackend(SessionReadable, Protocol):
    """A session opened for writing, holding its one-writer lock until `close`."""
    recovered: list[str]
    revisions: int

    @property
    def limits(self) -> Limits: ...
    @property
    def has_master_key(self) -> bool: ...
    def item_count(self) -> int: ...
    def count_if_loaded(self) -> int | None: ...
    def tail(self, limit: int | None) -> list[Any]: ...
    def stage_ops(self, ops: list[Op]) -> None: ...
    def discard_staged(self) -> None: ...
    def set_manifest(self, manifest: Manifest, revisions: int) -> None: ...
    def revisions_on_disk(self) -> list[Manifest]: ...
    def next_revision(self, metadata: SessionMetadata) -> Manifest: ...
    def slot_version_check(self, ext_id: str, current: int, expected: int | None, adding: bool,
                           staged: int = 0) -> None: ...
    def sink(self) -> VaultSink: ...
    def vault_in_memory(self) -> tuple[Vault, bytes] | None: ...
    def group(self) -> AbstractContextManager[None]:
        """The writes inside (a commit, its seal, the listing index's note) commit together."""
    def commit(self, ops: list[Op], *, alone: bool = False) -> None: ...
    def seal_due(self) -> bool: ...
    def seal(self) -> None: ...
    def record_rejection(self, op: str, subject: Subject | None, error: PolicyError) -> None: ...
    def close(self) -> None: ...
