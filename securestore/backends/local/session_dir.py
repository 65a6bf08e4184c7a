"""SessionDir: one session directory opened for writing, holding its one-writer lock.

It owns the session's state in memory (the latest manifest, the journal counters, the vault)
and nobody else writes it: every change goes through `commit` (a batch: one journal record) or,
for a batch that is one slot change, a direct atomic replace; both through `txn.apply`. The
transcript is read only when something needs it (session_transcript.py), so a one-slot write
reads the manifest once and never replays the journal.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any

from ... import txn
from ...audit.checkpoint import Checkpoint
from ...config import Limits
from ...core.canonical import sha256_hex
from ...core.journal import Op, encode_record
from ...core.policy import describe_key, encode_name
from ...core.records import Manifest, SessionMetadata, SlotEnvelope, encode_model
from ...core.secrets.sink import VaultSink
from ...core.secrets.vault import Vault
from ...errors import IntegrityError, LimitExceededError, LockHeldError, NotFoundError, PolicyError, VersionConflictError
from ..tree import Expected, TreeDir, TreeLock
from .auditlog import AuditLog, handover
from .batch import Materialize, check_caps, materializations
from .env import LocalEnv, observe_file
from ..base import Subject
from .rejections import record_rejection
from .layout import (
    AUDIT_DIR,
    JOURNAL_FILE,
    MANIFEST_FILE,
    SESSION_LOCK,
    SNAPSHOT_FILE,
    STATE_DIR,
    VAULT_FILE,
    VAULT_KEY_FILE,
    file_cap,
    is_append_only,
    is_journal,
    slot_file,
    slot_target,
)
from .session_transcript import SessionTranscript
from .session_vault import SessionVault
from .session_files import (
    ManifestHistory,
    check_resumable,
    last_line_hash,
    parse_manifest,
    read_manifest,
    read_slot,
    slot_names,
)


@dataclass(frozen=True)
class NewSession:
    """What creating a session wrote, for the creator to open it without reading it back."""

    manifest: bytes  # its manifest (revision 1)
    log: AuditLog  # its audit log, on the staging directory it was built in
    genesis: Checkpoint  # that log's first checkpoint
    lock: TreeLock  # its writer lock, taken before it was published


class SessionDir:
    def __init__(self, env: LocalEnv, key: str, name: str, directory: TreeDir, state: TreeDir, log: AuditLog,
                 writer_lock: TreeLock, history: ManifestHistory, after_seal: Callable[[], None] | None) -> None:
        self.env, self.key, self.name = env, key, name
        self.dir, self.state, self.log, self.lock = directory, state, log, writer_lock
        self.history = history  # as read for the resume check; `load` re-reads it only if it changed
        self.manifest: Manifest = history.latest
        self.revisions = len(history.revisions)
        self.manifest_touched = False  # recovery truncated or appended to it
        self.transcript = SessionTranscript(env, directory, f"session {name}", self._repaired)
        self.vault = SessionVault(env, directory, name)
        self.recovered: list[str] = []
        self.deleted = False  # renamed away by a delete: nothing left to seal
        self._after_seal = after_seal  # called when close signed a new checkpoint

    @classmethod
    def open(cls, env: LocalEnv, sessions: TreeDir, key: str | None, name: str, timeout: float,
             after_seal: Callable[[], None] | None = None, locked: Callable[[], None] | None = None) -> SessionDir:
        """`locked`: called once the writer lock is held (StoreDir.open_session opens its group
        then: the wait for the lock holds nothing of the handle)."""
        with ExitStack() as cleanup:  # on any failure, everything opened so far is closed
            try:
                directory = cleanup.enter_context(sessions.open_dir(name))
            except NotFoundError:
                raise NotFoundError(f"session {describe_key(key, name)} does not exist") from None
            # Resume rules first, read-only: a foreign or newer session is refused untouched.
            history = read_manifest(directory, env.limits, f"session {name}")
            manifest = check_resumable(history, name, key, env.identity)
            audit = cleanup.enter_context(directory.open_dir(AUDIT_DIR))
            log = env.new_log(audit)
            try:
                writer_lock = cleanup.enter_context(directory.lock(SESSION_LOCK, timeout, env.clock(), lasting=True))
            except LockHeldError as exc:  # name the session as the caller knows it, not its directory
                holder = str(exc).partition(" is held by ")[2] or "another writer"
                raise LockHeldError(f"session {describe_key(key, name)} is held by {holder} (one writer at a time; "
                                    f"waited {timeout:g} s: retry once it closes the session)") from None
            if locked is not None:
                locked()
            # What the open and recovery read first, guarded by the lock from now on (asked ahead).
            sessions.expect_reads([Expected("dir", name)])
            directory.expect_reads([Expected("dir", STATE_DIR), Expected("entry", MANIFEST_FILE)])
            log.expect_load()
            # The directory may have been deleted or replaced while we waited for the lock.
            if not sessions.holds(name, directory):
                raise NotFoundError(f"session {describe_key(key, name)} was deleted")
            state = cleanup.enter_context(directory.open_dir(STATE_DIR))
            session = cls(env, manifest.key, name, directory, state, log, writer_lock, history, after_seal)
            cleanup.pop_all()
            return session

    @classmethod
    def created(cls, env: LocalEnv, sessions: TreeDir, name: str, made: NewSession,
                after_seal: Callable[[], None] | None = None) -> SessionDir:
        """The session `made` a moment ago under the store lock, still held: opened with what
        its creation wrote (its manifest, its log's head) and the writer lock it took before
        publishing it, so nobody else can have written it. (The caller releases `made.lock` if
        this fails.)"""
        with ExitStack() as cleanup:
            directory = cleanup.enter_context(sessions.open_dir(name))
            history = parse_manifest(made.manifest, f"session {name}")
            log = handover(made.log, cleanup.enter_context(directory.open_dir(AUDIT_DIR)))
            state = cleanup.enter_context(directory.open_dir(STATE_DIR))
            session = cls(env, history.latest.key, name, directory, state, log, made.lock, history, after_seal)
            session.transcript.start_empty()
            cleanup.pop_all()
            return session

    def close(self) -> None:
        """Seal the log (a signed checkpoint over everything written), then let go."""
        try:
            if self.log.head is not None and not self.log.torn and not self.deleted and not self.dir.ctx.failed:
                with self.group():
                    if self.log.seal() is not None and self._after_seal is not None:
                        self._after_seal()
        finally:
            self.state.close()
            self.log.dir.close()
            self.lock.release()
            self.dir.close()

    @contextmanager
    def group(self) -> Iterator[None]:
        """The writes inside commit together (see TreeDir.group). What a write reads first that
        this handle has not read yet is asked ahead (the session's lock guards it)."""
        with self.dir.group(f"a write of session {self.name}"):
            self.log.expect_reads()
            self.transcript.expect_reads()
            yield

    @property
    def limits(self) -> Limits:
        return self.env.limits

    @property
    def has_master_key(self) -> bool:
        return self.env.master_key is not None

    # -- state -----------------------------------------------------------------------------------
    def load(self) -> None:
        """After reconciliation: the latest manifest revision (re-read only if the file changed
        since the resume check). The transcript waits until something needs it."""
        what = f"session {self.name}"
        if self.manifest_touched or self.history.torn_bytes:
            self.history = read_manifest(self.dir, self.env.limits, what)
        if self.history.torn_bytes:
            raise IntegrityError(f"{what}: a torn record survived recovery")
        self.manifest, self.revisions = self.history.latest, len(self.history.revisions)

    def item_count(self) -> int:
        """The transcript's items (in a turn, as staged so far)."""
        return self.transcript.count()

    def count_if_loaded(self) -> int | None:
        """The item count if the transcript's counters were read (None: never needed so far)."""
        return self.transcript.count() if self.transcript.is_loaded() else None

    def tail(self, limit: int | None) -> list[Any]:
        """The latest `limit` items (None: all), oldest first (in a turn, as staged so far)."""
        return self.transcript.tail(limit)

    def stage_ops(self, ops: list[Op]) -> None:
        """A turn's transcript op, visible to this handle's reads ahead of its commit."""
        self.transcript.stage(ops)

    def discard_staged(self) -> None:
        self.transcript.discard_staged()

    def set_manifest(self, manifest: Manifest, revisions: int) -> None:
        self.manifest, self.revisions = manifest, revisions

    def revisions_on_disk(self) -> list[Manifest]:
        return read_manifest(self.dir, self.env.limits, f"session {self.name}").revisions

    def _repaired(self, record: dict[str, Any]) -> None:
        self.log.append(record, durable=True)
        self.recovered.append(f"torn tail of {record['target']} ({record['size']} bytes) discarded")

    def record_rejection(self, op: str, subject: Subject | None, error: PolicyError) -> None:
        """A policy rejection made through this handle, in the session's own log (rate-bounded)."""
        record_rejection(self.env, self.log, op, rejection_target(subject), error)

    def slot(self, ext_id: str) -> SlotEnvelope | None:
        return read_slot(self.state, ext_id, self.env.slot_cap(), self.name)

    def slot_names(self) -> list[str]:
        return slot_names(self.state, self.env.slot_cap(), self.name)

    def slot_version_check(self, ext_id: str, current: int, expected: int | None, adding: bool,
                           staged: int = 0) -> None:
        """`staged`: slots a turn has added (minus those it removed) and not yet committed."""
        if expected is not None and expected != current:
            raise VersionConflictError(f"slot {encode_name(ext_id)} is at version {current}, expected {expected}")
        if adding:
            limit = self.env.limits.max_slots_per_session
            count = sum(1 for entry in self.state.list() if not entry.startswith(".")) + staged
            if count >= limit:
                raise LimitExceededError(f"session already holds {count} slots (limit {limit})")

    def next_revision(self, metadata: SessionMetadata) -> Manifest:
        now = max(self.env.clock(), self.manifest.updated_ms)
        return self.manifest.model_copy(update={"rev": self.revisions + 1, "ts": now, "updated_ms": now,
                                                "metadata": metadata})

    # -- the vault -------------------------------------------------------------------------------
    def sink(self) -> VaultSink:
        return self.vault.sink()

    def stored_vault(self) -> tuple[Vault | None, bytes] | None:
        return self.vault.stored()

    def vault_in_memory(self) -> tuple[Vault, bytes] | None:
        return self.vault.in_memory()

    # -- writes ----------------------------------------------------------------------------------
    def put_slot(self, ext_id: str, envelope: SlotEnvelope, vault_changed: bool) -> None:
        """A slot update on its own: one atomic replace (plus the vault, if it gained a secret)."""
        data = encode_model(envelope)
        file = slot_file(encode_name(ext_id))
        if vault_changed and self.vault.in_memory() is not None:
            vault_bytes = self.vault.encoded()
            self.vault.write_key(self.log)
            txn.apply(self.log, txn.Change(
                "vault.put", VAULT_FILE, sha256_hex(vault_bytes), len(vault_bytes),
                lambda: self.dir.write_atomic(VAULT_FILE, vault_bytes),
                lambda: observe_file(self.dir, VAULT_FILE, self.env.limits.max_vault_bytes),
            ))
        txn.apply(self.log, txn.Change(
            "slot.put", slot_target(encode_name(ext_id)), sha256_hex(data), len(data),
            lambda: self.state.write_atomic(file, data),
            lambda: observe_file(self.state, file, self.env.slot_cap()),
        ))

    def delete_slot(self, ext_id: str) -> None:
        file = slot_file(encode_name(ext_id))
        if self.state.entry(file) is None:
            raise NotFoundError(f"slot {encode_name(ext_id)} does not exist")
        txn.apply(self.log, txn.Change(
            "slot.delete", slot_target(encode_name(ext_id)), None, None,
            lambda: self.state.unlink(file),
            lambda: observe_file(self.state, file, self.env.slot_cap()),
        ))

    def commit(self, ops: list[Op], *, alone: bool = False) -> None:
        """Commit a batch durably. `alone`: one change outside a turn; a lone slot change is then
        one atomic replace of its file (a slot needs no journal record), anything else is one
        journal record: one intent, one append (the commit point), then its materialization."""
        changes = [op for op in ops if op["op"] != "vault"]
        if alone and len(changes) == 1 and changes[0]["op"] == "slot":
            op = changes[0]
            envelope = SlotEnvelope(ext_id=op["ext_id"], slot_version=op["slot_version"], payload=op["payload"])
            self.put_slot(op["ext_id"], envelope, vault_changed=len(ops) > 1)
        elif alone and len(changes) == 1 and changes[0]["op"] == "slot-delete":
            self.delete_slot(changes[0]["ext_id"])
        else:
            self._append_record(ops)

    def _append_record(self, ops: list[Op]) -> None:
        limits, active = self.env.limits, self.transcript.active()
        seq = active.seq + 1
        line = encode_record(seq, self.env.clock(), ops)
        if len(line) > limits.max_record_bytes:
            raise LimitExceededError(f"journal record of {len(line)} bytes exceeds {limits.max_record_bytes}")
        steps = self.materializations(ops)
        check_caps(steps, limits, lambda: self.state.list(sort=False), self._manifest_size)
        if active.bytes + len(line) > limits.max_journal_bytes:
            self.seal()  # the segment is full: start the next one
        file = self.transcript.active().head.active
        self.vault.write_key(self.log)

        def act() -> None:
            self.dir.append(file, line, durable=True)
            for step in steps:
                self.materialize(step)

        try:
            txn.apply(self.log, txn.Change(
                "journal.append", file, sha256_hex(line), len(line), act,
                lambda: self.observe(file), tuple(step.describe() for step in steps),
            ))
        except BaseException:
            self.transcript.forget()  # whether the record landed is for the next open to settle
            raise
        self.transcript.committed(line, seq, ops)

    def _manifest_size(self) -> int:
        current = self.dir.size_of(MANIFEST_FILE)
        return current[1] if current else 0

    def materializations(self, ops: list[Op]) -> list[Materialize]:
        return materializations(ops, lambda: self.dir.read_optional(VAULT_FILE, self.env.limits.max_vault_bytes))

    def materialize(self, step: Materialize) -> None:
        if is_append_only(step.target):
            if step.data is None:
                raise AssertionError("append-only files are never removed")  # pragma: no cover
            self.dir.append(step.target, step.data, durable=True)
        elif step.target.startswith(f"{STATE_DIR}/"):
            name = step.target.removeprefix(f"{STATE_DIR}/")
            if step.data is None:
                if self.state.entry(name) is not None:
                    self.state.unlink(name)
            else:
                self.state.write_atomic(name, step.data)
        else:
            if step.data is None:
                raise AssertionError("only slots are removed by a batch")  # pragma: no cover
            self.dir.write_atomic(step.target, step.data)

    def observe(self, target: str, op: str = "") -> str | None:
        """The target's state in the terms its intent uses: the last line of an append-only file
        (the whole file for a compaction), the whole content otherwise."""
        limits = self.env.limits
        if is_append_only(target) and op != "journal.compact":  # (compaction: layout 1)
            return last_line_hash(self.dir, target, limits.max_record_bytes + 1024)
        if target.startswith(f"{STATE_DIR}/"):
            return observe_file(self.state, target.removeprefix(f"{STATE_DIR}/"), self.env.slot_cap())
        if target not in (VAULT_FILE, SNAPSHOT_FILE, VAULT_KEY_FILE) and not is_journal(target):
            raise IntegrityError(f"session {self.name}: the audit log names an unknown target {target}")
        return observe_file(self.dir, target, file_cap(target, limits))

    def seal_due(self) -> bool:
        return self.transcript.seal_due()

    def seal(self) -> None:
        """Seal the active journal segment (see session_transcript.py); nothing if it is empty."""
        self.transcript.seal(self.log)


def rejection_target(subject: Subject | None) -> str | None:
    """The file a rejected write was aimed at, as the audit record names it."""
    if subject is None:
        return None
    if subject.kind == "slot" and subject.ext_id is not None:
        return slot_target(encode_name(subject.ext_id))
    return {"transcript": JOURNAL_FILE, "metadata": MANIFEST_FILE}[subject.kind]
