"""The one write path. Every mutation of a store goes through `Pipeline`:

    validate -> redact -> canonicalize -> audit INTENT (durable) -> act -> audit OUTCOME

If the intent cannot be made durable, the act does not happen. A crash between intent and
outcome leaves a dangling intent; `reconcile` settles it on the next open by observing the
target (its content hash equals the intent's: recovered-committed; otherwise
recovered-not-applied), never by retrying the act.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from .audit.chain import Actor, Intent, Rejected, Suppressed
from .audit.log import LOG_FILE, AuditLog
from .canonical import canonical_bytes, sha256_hex
from .config import StoreConfig
from .errors import (
    AlreadyExistsError,
    DurabilityError,
    LimitExceededError,
    NotFoundError,
    PolicyError,
    SecretInKeyError,
    SecureStoreError,
    VersionConflictError,
)
from .fs import TEMP_PREFIX, Dir, FileLock, FsContext
from .layout import (
    AUDIT_DIR,
    BACKEND,
    LAYOUT_VERSION,
    MANIFEST_FILE,
    STAGING_PREFIX,
    STATE_DIR,
    TRASH_PREFIX,
    VAULT_FILE,
    Manifest,
    SlotEnvelope,
    StoreIdentity,
    decode_model,
    encode_model,
    session_target,
    slot_file,
    slot_target,
)
from .policy import check_value, encode_name, normalize_key
from .secrets import SECRET_TYPES, contains_secret, redact
from .secrets.vault import Vault, fingerprint, load_vault, new_vault, seal


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def checked_key(raw: object, *, what: str, max_bytes: int) -> str:
    """normalize_key, plus: a key is an identifier and is never redacted, so it must not hold
    a credential."""
    key = normalize_key(raw, what=what, max_bytes=max_bytes)
    if contains_secret(key):
        raise SecretInKeyError(f"{what} looks like it contains a credential; keys are never redacted")
    return key


@dataclass
class OpenSession:
    """A session opened for writing: its directories, its log, and the writer lock."""

    key: str
    name: str
    dir: Dir
    state: Dir
    log: AuditLog
    lock: FileLock
    manifest: Manifest
    vault: Vault | None = None
    data_key: bytes | None = None
    recovered: list[str] = field(default_factory=list)

    def close(self) -> None:
        self.state.close()
        self.log.dir.close()
        self.lock.release()
        self.dir.close()


@dataclass(frozen=True)
class Change:
    op: str
    target: str
    sha256: str | None  # content after the act; None when the act removes the target
    size: int | None
    act: Callable[[], None]
    observe: Callable[[], str | None]  # hash of what the target holds now (None: absent)


def observe_file(directory: Dir, name: str, cap: int) -> str | None:
    data = directory.read_optional(name, cap)
    return None if data is None else sha256_hex(data)


class _VaultSink:
    """Where redaction puts secret values: the session vault, or nowhere (fingerprint only)."""

    def __init__(self, pipeline: Pipeline, session: OpenSession) -> None:
        self.pipeline = pipeline
        self.session = session
        self.changed = False

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        master = self.pipeline.master_key
        if master is None:
            return "redacted", fingerprint(self.pipeline.fingerprint_key, value)
        vault, data_key = self.pipeline.vault_of(self.session)
        ref, changed = seal(vault, data_key, value, self.pipeline.ctx.os.urandom(12))
        self.changed |= changed
        return "vault", ref


class Pipeline:
    def __init__(
        self,
        ctx: FsContext,
        config: StoreConfig,
        identity: StoreIdentity,
        *,
        master_key: bytes | None,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.ctx = ctx
        self.config = config
        self.limits = config.limits
        self.identity = identity
        self.master_key = master_key
        self.fingerprint_key = bytes.fromhex(identity.fingerprint_key)
        self.clock = clock
        self.actor = Actor(uid=ctx.euid, pid=ctx.os.getpid(), principal=config.principal)

    def new_log(self, directory: Dir) -> AuditLog:
        return AuditLog(directory, clock=self.clock, actor=self.actor, max_line=self.limits.max_audit_line_bytes)

    # -- the core: intent, act, outcome --------------------------------------------------------
    def apply(self, log: AuditLog, change: Change) -> None:
        self.ctx.check_usable()
        intent = cast(Intent, log.append(
            {"kind": "intent", "op": change.op, "target": change.target, "sha256": change.sha256,
             "size": change.size},
            durable=True,
        ))
        try:
            change.act()
        except DurabilityError:
            raise  # the handle is dead; the next open reconciles by observation
        except SecureStoreError:
            self._settle(log, intent, change.observe, recovered=False)
            raise
        # Not fsynced: if this outcome is lost, reconciliation observes the target and records
        # the same result. The next intent's fsync makes it durable anyway.
        log.append({"kind": "outcome", "txn": intent.seq, "result": "committed", "sha256": change.sha256},
                   durable=False)

    def _settle(self, log: AuditLog, intent: Intent, observe: Callable[[], str | None], *, recovered: bool) -> str | None:
        try:
            observed = observe()
        except SecureStoreError:
            if recovered:
                raise
            return None  # stays dangling; the next open reconciles it
        applied = observed == intent.sha256
        if recovered:
            result = "recovered-committed" if applied else "recovered-not-applied"
        else:
            result = "committed" if applied else "failed"
        try:
            log.append({"kind": "outcome", "txn": intent.seq, "result": result, "sha256": observed}, durable=True)
        except SecureStoreError:
            if recovered:
                raise
            return None
        return result

    def reconcile(
        self, log: AuditLog, observe_target: Callable[[str], str | None], cleanup: Callable[[], list[dict[str, Any]]]
    ) -> list[str]:
        """Repair what a crash left behind in one log's scope. Caller holds the writer lock."""
        events: list[str] = []
        log.load()
        if log.torn:
            fragment = log.drop_torn_tail()
            log.load()
            log.append(
                {"kind": "recovery", "event": "torn-tail", "target": f"{AUDIT_DIR}/{LOG_FILE}",
                 "size": len(fragment), "sha256": sha256_hex(fragment)},
                durable=True,
            )
            events.append(f"torn tail of {log.label} ({len(fragment)} bytes) discarded")
        last = log.last
        if isinstance(last, Intent):
            result = self._settle(log, last, lambda: observe_target(last.target), recovered=True)
            events.append(f"dangling intent seq {last.seq} ({last.op} {last.target}): {result}")
        for fields in cleanup():
            log.append(fields, durable=True)
            events.append(f"leftover {fields['target']} removed")
        return events

    def _leftovers(self, directory: Dir, prefixes: tuple[str, ...], label: str) -> list[dict[str, Any]]:
        """Remove temp/staging entries of crashed writes; describe each for the audit log."""
        removed: list[dict[str, Any]] = []
        for name in directory.list():
            if not name.startswith(prefixes):
                continue
            info = directory.entry(name)
            if info is None:
                continue
            directory.remove_tree(name)
            removed.append({"kind": "recovery", "event": "temp-removed", "target": f"{label}{name}",
                            "size": info.size if info.kind == "file" else 0, "sha256": None})
        return removed

    # -- store scope -----------------------------------------------------------------------------
    def reconcile_store(self, log: AuditLog, root: Dir, sessions: Dir) -> list[str]:
        def observe(target: str) -> str | None:
            if target == "store.json":
                return observe_file(root, "store.json", 64 * 1024)
            name = target.removeprefix("sessions/")
            info = sessions.entry(name)
            if info is None:
                return None
            with sessions.open_dir(name) as directory:
                return observe_file(directory, MANIFEST_FILE, self.limits.max_manifest_bytes)

        def cleanup() -> list[dict[str, Any]]:
            return self._leftovers(sessions, (STAGING_PREFIX, TRASH_PREFIX, TEMP_PREFIX), "sessions/") + \
                self._leftovers(root, (TEMP_PREFIX,), "")

        return self.reconcile(log, observe, cleanup)

    def create_session(self, log: AuditLog, sessions: Dir, raw_key: object) -> tuple[str, str]:
        key = checked_key(raw_key, what="session key", max_bytes=self.limits.max_key_bytes)
        name = encode_name(key)
        if sessions.entry(name) is not None:
            raise AlreadyExistsError(f"session {name} already exists")
        count = sum(1 for entry in sessions.list() if not entry.startswith("."))
        if count >= self.limits.max_sessions:
            raise LimitExceededError(f"the store already holds {count} sessions (limit {self.limits.max_sessions})")
        log_id = self.ctx.random_hex(16)
        manifest = Manifest(
            v=1, key=key, name=name, store_id=self.identity.store_id, backend=BACKEND,
            layout_version=LAYOUT_VERSION, audit_log_id=log_id, created_ms=self.clock(),
        )
        manifest_bytes = encode_model(manifest)
        if len(manifest_bytes) > self.limits.max_manifest_bytes:
            raise LimitExceededError("session manifest exceeds its size cap")
        staging = STAGING_PREFIX + self.ctx.random_hex(8)

        def act() -> None:
            # Build the whole session under a temporary name, then publish it with one rename.
            with sessions.make_dir(staging) as directory:
                directory.write_new(MANIFEST_FILE, manifest_bytes)
                directory.make_dir(STATE_DIR).close()
                with directory.make_dir(AUDIT_DIR) as audit_dir:
                    self.new_log(audit_dir).create(
                        log_id, {"store": self.identity.store_id, "scope": "session", "session": name}
                    )
            sessions.rename(staging, name)

        def observe() -> str | None:
            if sessions.entry(name) is None:
                return None
            with sessions.open_dir(name) as directory:
                return observe_file(directory, MANIFEST_FILE, self.limits.max_manifest_bytes)

        try:
            self.apply(log, Change("session.create", session_target(name), sha256_hex(manifest_bytes),
                                   len(manifest_bytes), act, observe))
        finally:
            if sessions.entry(staging) is not None and not self.ctx.failed:
                sessions.remove_tree(staging)
        return key, name

    def delete_session(self, log: AuditLog, sessions: Dir, session: OpenSession) -> None:
        trash = TRASH_PREFIX + self.ctx.random_hex(8)
        name = session.name

        def observe() -> str | None:
            if sessions.entry(name) is None:
                return None
            with sessions.open_dir(name) as directory:
                return observe_file(directory, MANIFEST_FILE, self.limits.max_manifest_bytes)

        self.apply(log, Change("session.delete", session_target(name), None, None,
                               lambda: sessions.rename(name, trash), observe))
        sessions.remove_tree(trash)  # the session is gone once renamed; this frees the space

    def record_rejection(self, log: AuditLog, op: str, target: str | None, error: PolicyError) -> None:
        """Audit a rejected write, at most `records_per_window` per window; then one marker."""
        policy = self.config.rejection_audit
        now = self.clock()
        window = now // 1000 // policy.window_seconds
        in_window = [r for r in log.recent(64 * 1024)
                     if isinstance(r, (Rejected, Suppressed)) and r.ts // 1000 // policy.window_seconds == window]
        if any(isinstance(r, Suppressed) for r in in_window):
            return
        if len(in_window) < policy.records_per_window:
            log.append({"kind": "rejected", "op": op, "target": target, "reason": error.reason}, durable=True)
        else:
            log.append({"kind": "suppressed", "window": window, "window_seconds": policy.window_seconds},
                       durable=True)

    # -- session scope -------------------------------------------------------------------------
    def reconcile_session(self, session: OpenSession) -> list[str]:
        def observe(target: str) -> str | None:
            if target == VAULT_FILE:
                return observe_file(session.dir, VAULT_FILE, self.limits.max_vault_bytes)
            return observe_file(session.state, target.removeprefix(f"{STATE_DIR}/"), self._slot_cap())

        def cleanup() -> list[dict[str, Any]]:
            return self._leftovers(session.dir, (TEMP_PREFIX,), "") + \
                self._leftovers(session.state, (TEMP_PREFIX,), f"{STATE_DIR}/")

        return self.reconcile(session.log, observe, cleanup)

    def _slot_cap(self) -> int:
        return self.limits.max_value_bytes + self.limits.max_key_bytes + 4096

    def vault_of(self, session: OpenSession) -> tuple[Vault, bytes]:
        if self.master_key is None:
            raise AssertionError("vault used without a master key")  # pragma: no cover
        if session.vault is None or session.data_key is None:
            data = session.dir.read_optional(VAULT_FILE, self.limits.max_vault_bytes)
            if data is None:
                session.vault, session.data_key = new_vault(
                    self.master_key, self.identity.store_id, session.name, self.ctx.os.urandom(32)
                )
            else:
                session.vault, session.data_key = load_vault(
                    data, self.master_key, self.identity.store_id, session.name
                )
        return session.vault, session.data_key

    def prepare(self, value: Any, sink: _VaultSink) -> Any:
        """validate -> redact. Nothing is written; a PolicyError leaves the store unchanged."""
        check_value(value, self.limits, leaf_types=SECRET_TYPES, hide=contains_secret)
        return redact(value, sink, max_secrets=self.limits.max_secrets_per_value).value

    def put_slot(self, session: OpenSession, raw_slot: object, value: Any, expected_version: int | None = None) -> int:
        slot = checked_key(raw_slot, what="slot name", max_bytes=self.limits.max_key_bytes)
        name = encode_name(slot)
        file = slot_file(name)
        current = session.state.read_optional(file, self._slot_cap())
        version = 0 if current is None else decode_model(SlotEnvelope, current, f"slot {name}").slot_version
        if expected_version is not None and expected_version != version:
            raise VersionConflictError(f"slot {name} is at version {version}, expected {expected_version}")
        if current is None:
            count = sum(1 for entry in session.state.list() if not entry.startswith("."))
            if count >= self.limits.max_slots_per_session:
                raise LimitExceededError(
                    f"session already holds {count} slots (limit {self.limits.max_slots_per_session})"
                )
        sink = _VaultSink(self, session)
        vault_before = dict(session.vault.entries) if session.vault is not None else None
        try:
            payload = self.prepare(value, sink)
            payload_bytes = canonical_bytes(payload)
            if len(payload_bytes) > self.limits.max_value_bytes:
                raise LimitExceededError(
                    f"value of {len(payload_bytes)} bytes exceeds {self.limits.max_value_bytes}"
                )
            vault_bytes = session.vault.to_bytes() if sink.changed and session.vault is not None else None
            if vault_bytes is not None and len(vault_bytes) > self.limits.max_vault_bytes:
                raise LimitExceededError(f"session vault would exceed {self.limits.max_vault_bytes} bytes")
        except BaseException:
            if session.vault is not None:  # forget secrets sealed for a write that will not happen
                if vault_before is None:
                    session.vault = session.data_key = None
                else:
                    session.vault.entries = vault_before
            raise
        data = encode_model(SlotEnvelope(ext_id=slot, slot_version=version + 1, payload=payload))
        if vault_bytes is not None:
            self.apply(session.log, Change(
                "vault.put", VAULT_FILE, sha256_hex(vault_bytes), len(vault_bytes),
                lambda: session.dir.write_atomic(VAULT_FILE, vault_bytes),
                lambda: observe_file(session.dir, VAULT_FILE, self.limits.max_vault_bytes),
            ))
        self.apply(session.log, Change(
            "slot.put", slot_target(name), sha256_hex(data), len(data),
            lambda: session.state.write_atomic(file, data),
            lambda: observe_file(session.state, file, self._slot_cap()),
        ))
        return version + 1

    def delete_slot(self, session: OpenSession, raw_slot: object) -> None:
        slot = checked_key(raw_slot, what="slot name", max_bytes=self.limits.max_key_bytes)
        name = encode_name(slot)
        file = slot_file(name)
        if session.state.entry(file) is None:
            raise NotFoundError(f"slot {name} does not exist")
        self.apply(session.log, Change(
            "slot.delete", slot_target(name), None, None,
            lambda: session.state.unlink(file),
            lambda: observe_file(session.state, file, self._slot_cap()),
        ))
