"""The one write path. Every mutation of a store goes through `Pipeline`:

    validate -> redact -> canonicalize -> audit INTENT (durable) -> act -> audit OUTCOME

If the intent cannot be made durable, the act does not happen. A crash between intent and
outcome leaves a dangling intent; `reconcile` settles it on the next open by observing the
target (its content hash equals the intent's: recovered-committed; otherwise
recovered-not-applied), never by retrying the act.

A batch (one update, or a whole turn) is one journal record: ONE intent, ONE append as the
commit point, then its materialization into slot files, the vault and the manifest. Those
writes are derived from the journal record, so recovery redoes them when a crash cut them off.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from ... import txn
from ...txn import Change
from ...audit.chain import Actor, Intent, Rejected, Suppressed, TargetState
from ...audit.keys import EpochRule, SignerKey
from .auditlog import LOG_FILE, AuditLog
from ...core.canonical import canonical_bytes, sha256_hex
from ...config import StoreConfig
from .session_files import last_line_hash, split_lines
from ...core.journal import Op, encode_record, parse_journal
from ...errors import (
    AlreadyExistsError,
    IntegrityError,
    LimitExceededError,
    LockHeldError,
    NotFoundError,
    PolicyError,
    SecretInKeyError,
    SecureStoreError,
    UnsafeFileError,
    VersionConflictError,
)
from ...fs import TEMP_PREFIX, Dir, FileLock, FsContext, locks, read_tail, shred, size_of
from .index import CREATED_LOG, ENTRIES_DIR, INDEX_DIR, INDEX_LOCK, UPDATES_LOG
from ...core.listing import SessionSummary, created_line, entry_bytes, summary_line, tombstone_line
from .layout import (
    APPEND_ONLY,
    AUDIT_DIR,
    BACKEND,
    JOURNAL_FILE,
    LAYOUT_VERSION,
    MANIFEST_FILE,
    SNAPSHOT_FILE,
    STAGING_PREFIX,
    STATE_DIR,
    STORE_FILE,
    STORE_FILE_CAP,
    TRASH_PREFIX,
    VAULT_FILE,
    VAULT_KEY_CAP,
    VAULT_KEY_FILE,
    file_cap,
    session_target,
    slot_file,
    slot_target,
)
from ...core.records import Manifest, SessionMetadata, SlotEnvelope, Snapshot, StoreIdentity, decode_model, encode_model
from ...core.policy import check_value, encode_name, normalize_key
from ...core.secrets import SECRET_TYPES, contains_secret, redact
from ...core.secrets.vault import (
    Vault,
    VaultEntry,
    fingerprint,
    load_vault,
    new_vault,
    seal,
    unwrap_data_key,
    wrap_data_key,
)


SWEEP_MARKER = ".sweep-needed"  # in the store root: a failed act may have left something


def wall_clock_ms(ctx: FsContext) -> Callable[[], int]:
    """The store's clock: wall time in ms, read through the OS-call table."""
    return lambda: ctx.os.now_ns() // 1_000_000


def checked_key(raw: object, *, what: str, max_bytes: int) -> str:
    """normalize_key, plus: a key is an identifier and is never redacted, so it must not hold
    a credential."""
    key = normalize_key(raw, what=what, max_bytes=max_bytes)
    if contains_secret(key):
        raise SecretInKeyError(f"{what} looks like it contains a credential; keys are never redacted")
    return key


def session_name(raw: object, max_bytes: int) -> tuple[str, str]:
    """The one check of a session key: (the normalized key, its directory name)."""
    key = checked_key(raw, what="session key", max_bytes=max_bytes)
    return key, encode_name(key)


@dataclass
class OpenSession:
    """A session opened for writing: its directories, its log, the writer lock, and its state."""

    key: str
    name: str
    dir: Dir
    state: Dir
    log: AuditLog
    lock: FileLock
    manifest: Manifest  # the latest revision
    revisions: int = 1
    items: list[Any] = field(default_factory=list)
    seq: int = 0  # the last journal record
    journal_records: int = 0  # since the last snapshot
    journal_bytes: int = 0
    vault: Vault | None = None
    data_key: bytes | None = None
    pending_key: bytes | None = None  # vault.key content not written yet (a brand-new vault)
    recovered: list[str] = field(default_factory=list)
    deleted: bool = False  # renamed away by a delete: nothing left to seal
    # Called after close signed a new checkpoint (the store log then commits to this head).
    after_seal: Callable[[], None] | None = None

    def close(self) -> None:
        """Seal the log (a signed checkpoint over everything written), then let go."""
        try:
            if self.log.head is not None and not self.log.torn and not self.deleted and not self.dir.ctx.failed:
                if self.log.seal() is not None and self.after_seal is not None:
                    self.after_seal()
        finally:
            self.state.close()
            self.log.dir.close()
            self.lock.release()
            self.dir.close()


@dataclass(frozen=True)
class Materialize:
    """A write that follows a journal commit and is redone from the journal after a crash."""

    target: str  # state/<slot>.json, vault.json or manifest.jsonl
    data: bytes | None  # new content, the line to append (append-only files), or None: remove

    def describe(self) -> TargetState:
        if self.data is None:
            return TargetState(target=self.target)
        return TargetState(target=self.target, sha256=sha256_hex(self.data), size=len(self.data))


def observe_file(directory: Dir, name: str, cap: int) -> str | None:
    data = directory.read_optional(name, cap)
    return None if data is None else sha256_hex(data)


class VaultSink:
    """Where redaction puts secret values: the session vault, or nowhere (fingerprint only)."""

    def __init__(self, pipeline: Pipeline, session: OpenSession) -> None:
        self.pipeline = pipeline
        self.session = session
        self.new_entries: dict[str, VaultEntry] = {}

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        if self.pipeline.master_key is None:
            return "redacted", fingerprint(self.pipeline.fingerprint_key, value)
        vault, data_key = self.pipeline.vault_of(self.session)
        ref, changed = seal(vault, data_key, value, self.pipeline.ctx.os.urandom(12))
        if changed:
            self.new_entries[ref] = vault.entries[ref]
        return "vault", ref

    def mark(self) -> frozenset[str]:
        return frozenset(self.new_entries)

    def rollback(self, mark: frozenset[str] = frozenset()) -> None:
        """Forget entries sealed since `mark` for a write that did not happen. Otherwise a later
        write of the same secret would find it "already stored" and never persist it."""
        vault = self.session.vault
        for ref in [ref for ref in self.new_entries if ref not in mark]:
            del self.new_entries[ref]
            if vault is not None:
                vault.entries.pop(ref, None)

    def vault_op(self) -> Op | None:
        """The journal op that carries this batch's new vault entries (encrypted)."""
        if not self.new_entries or self.session.vault is None:
            return None
        # Never the vault key, not even wrapped: it lives in vault.key alone, so destroying that
        # one file crypto-shreds every copy of the session (journal and backups included).
        return {"op": "vault", "check": self.session.vault.to_json()["check"],
                "entries": {ref: entry.model_dump() for ref, entry in self.new_entries.items()}}


class Pipeline:
    def __init__(
        self,
        ctx: FsContext,
        config: StoreConfig,
        identity: StoreIdentity,
        *,
        master_key: bytes | None,
        signer: SignerKey | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.ctx = ctx
        self.signer = signer
        self.epoch_rule = EpochRule(config.audit.epoch_records, config.audit.epoch_seconds)
        self.config = config
        self.limits = config.limits
        self.identity = identity
        self.master_key = master_key
        self.fingerprint_key = bytes.fromhex(identity.fingerprint_key)
        self.clock = clock or wall_clock_ms(ctx)
        self.actor = Actor(uid=ctx.euid, pid=ctx.os.getpid(), principal=config.principal)

    def new_log(self, directory: Dir) -> AuditLog:
        return AuditLog(directory, clock=self.clock, actor=self.actor, max_line=self.limits.max_audit_line_bytes,
                        signer=self.signer)

    # -- the core: the audit-before-act contract lives in txn.py -------------------------------
    def apply(self, log: AuditLog, change: Change) -> None:
        txn.apply(log, change)

    def reconcile(
        self,
        log: AuditLog,
        observe_target: Callable[[Intent], str | None],
        cleanup: Callable[[], list[dict[str, Any]]],
        finish: Callable[[Intent], None] | None = None,
        torn_files: Callable[[], list[dict[str, Any]]] | None = None,
        undo: Callable[[Intent], None] | None = None,
        sweep_if: Callable[[bool], bool] | None = None,
    ) -> list[str]:
        """Repair what a crash left behind in one log's scope (see txn.reconcile)."""
        observers = txn.Observers(txn.Observer(observe_target, finish, undo))
        return txn.reconcile(log, observers, cleanup, torn_files=torn_files, sweep_if=sweep_if)

    def _leftovers(self, directory: Dir, prefixes: tuple[str, ...], label: str) -> list[dict[str, Any]]:
        """Remove temp/staging entries of crashed writes; describe each for the audit log."""
        removed: list[dict[str, Any]] = []
        for name in directory.list(sort=False):
            if not name.startswith(prefixes):
                continue
            info = directory.entry(name)
            if info is None:
                continue
            detail = None
            if name.startswith(TRASH_PREFIX) and info.kind == "dir":
                try:
                    self.shred_vault_key(directory, name)  # a delete that crashed before shredding
                except UnsafeFileError as exc:  # e.g. a planted hard link: say so, still remove the name
                    detail = f"vault.key not shredded: {exc}"[:256]
            directory.remove_tree(name)
            removed.append({"kind": "recovery", "event": "temp-removed", "target": f"{label}{name}",
                            "size": info.size if info.kind == "file" else 0, "sha256": None, "detail": detail})
        return removed

    # -- store scope -----------------------------------------------------------------------------
    def session_identity(self, sessions: Dir, name: str) -> str | None:
        """What the store log records for a session: the hash of its first manifest revision."""
        if sessions.entry(name) is None:
            return None
        with sessions.open_dir(name) as directory:
            data = directory.read_optional(MANIFEST_FILE, self.limits.max_manifest_bytes)
        if data is None:
            return None
        lines, _ = split_lines(data)
        return sha256_hex(lines[0]) if lines else None

    def reconcile_store(self, log: AuditLog, root: Dir, sessions: Dir) -> list[str]:
        from . import migrate as importer

        def observe(intent: Intent) -> str | None:
            if intent.op.startswith("migrate."):
                return importer.observe(self, root, sessions, intent)
            if intent.op == "index.rebuild":  # derived data: a half-done rebuild is simply redone later
                if root.entry(INDEX_DIR) is None:
                    return None
                with root.open_dir(INDEX_DIR) as index:
                    return observe_file(index, UPDATES_LOG, 1 << 40)
            if intent.target == "store.json":
                return observe_file(root, STORE_FILE, STORE_FILE_CAP)
            return self.session_identity(sessions, intent.target.removeprefix("sessions/"))

        def undo(intent: Intent) -> None:
            if intent.op == "migrate.run":
                importer.undo(self, root, sessions, intent)

        def sweep_if(evidence: bool) -> bool:
            # A ratchet interrupted before its rename leaves a temp file beside epoch.key (cheap to see).
            stray_key = any(name.startswith(TEMP_PREFIX) for name in log.dir.list(sort=False))
            return evidence or stray_key or root.entry(SWEEP_MARKER) is not None

        def cleanup() -> list[dict[str, Any]]:
            return self._leftovers(log.dir, (TEMP_PREFIX,), f"{AUDIT_DIR}/") + self.sweep_store(root, sessions)

        return self.reconcile(log, observe, cleanup, undo=undo, sweep_if=sweep_if)

    def note_leftover(self, root: Dir) -> None:
        """A failed act may have left a staging or trash directory: have the next writer sweep."""
        try:
            root.ensure_file(SWEEP_MARKER)
        except SecureStoreError:
            pass

    def sweep_store(self, root: Dir, sessions: Dir) -> list[dict[str, Any]]:
        """Remove leftovers of interrupted store-level writes, and temp files of interrupted
        index writes. O(sessions): run on crash evidence, a marker, or by maintenance."""
        removed = self._leftovers(sessions, (STAGING_PREFIX, TRASH_PREFIX, TEMP_PREFIX), "sessions/") + \
            self._leftovers(root, (TEMP_PREFIX,), "")
        if root.entry(INDEX_DIR) is not None:
            with root.open_dir(INDEX_DIR) as index:
                try:  # writers appending hold it shared: exclusive means no temp file is in use
                    lock = locks.lock_plain(index, INDEX_LOCK, exclusive=True, timeout=0.0)
                except LockHeldError:
                    return removed  # a later sweep
                with lock:
                    removed += self._leftovers(index, (STAGING_PREFIX, TRASH_PREFIX, TEMP_PREFIX), "index/")
                    if index.entry(ENTRIES_DIR) is not None:
                        with index.open_dir(ENTRIES_DIR) as entries:
                            removed += self._leftovers(entries, (TEMP_PREFIX,), "index/entries/")
        if root.entry(SWEEP_MARKER) is not None:
            root.unlink(SWEEP_MARKER)
        return removed



    def check_room(self, sessions: Dir, adding: int) -> None:
        count = sum(1 for entry in sessions.list(sort=False) if not entry.startswith("."))
        if count + adding > self.limits.max_sessions:
            raise LimitExceededError(f"the store already holds {count} sessions (limit {self.limits.max_sessions}); "
                                     f"{adding} more do not fit")

    def manifest_line(self, key: str, metadata: SessionMetadata, log_id: str) -> tuple[str, bytes]:
        """Revision 1 of a new session's manifest: (encoded name, the line)."""
        name, now = encode_name(key), self.clock()
        manifest = Manifest(
            v=1, rev=1, ts=now, key=key, name=name, store_id=self.identity.store_id, backend=BACKEND,
            layout_version=LAYOUT_VERSION, audit_log_id=log_id, created_ms=now, updated_ms=now, metadata=metadata,
        )
        line = encode_model(manifest) + b"\n"
        if len(line) > self.limits.max_manifest_bytes:
            raise LimitExceededError("session manifest exceeds its size cap")
        return name, line

    def build_session(self, parent: Dir, dirname: str, name: str, line: bytes, log_id: str, store_log: AuditLog) -> None:
        """A complete, empty session directory: manifest, journal, state/, audit/ with genesis.
        Its log's first key derives from the store log's current key and the creating intent."""
        with parent.make_dir(dirname) as directory:
            directory.write_new(MANIFEST_FILE, line)
            directory.write_new(JOURNAL_FILE, b"")
            directory.make_dir(STATE_DIR).close()
            with directory.make_dir(AUDIT_DIR) as audit_dir:
                self.new_log(audit_dir).create(
                    log_id, {"store": self.identity.store_id, "scope": "session", "session": name},
                    store_id=self.identity.store_id, chain=store_log.child_key(name), rule=self.epoch_rule)

    def create_session(self, log: AuditLog, sessions: Dir, key: str, metadata: SessionMetadata) -> str:
        """Create a session directory (manifest revision 1, empty journal, state/, audit/)."""
        name = encode_name(key)
        if sessions.entry(name) is not None:
            raise AlreadyExistsError(f"session {name} already exists")
        self.check_room(sessions, 1)
        log_id = self.ctx.random_hex(16)
        name, line = self.manifest_line(key, metadata, log_id)
        staging = STAGING_PREFIX + self.ctx.random_hex(8)

        def act() -> None:
            # Build the whole session under a temporary name, then publish it with one rename.
            self.build_session(sessions, staging, name, line, log_id, log)
            sessions.rename(staging, name)

        try:
            self.apply(log, Change("session.create", session_target(name), sha256_hex(line), len(line), act,
                                   lambda: self.session_identity(sessions, name)))
        finally:
            if sessions.entry(staging) is not None and not self.ctx.failed:
                sessions.remove_tree(staging)
        return name

    def delete_session(self, log: AuditLog, sessions: Dir, session: OpenSession) -> None:
        trash = TRASH_PREFIX + self.ctx.random_hex(8)
        name = session.name
        def act() -> None:
            sessions.rename(name, trash)  # the commit point: the session is gone
            session.deleted = True
            self.shred_vault_key(sessions, trash)

        self.apply(log, Change("session.delete", session_target(name), None, None, act,
                               lambda: self.session_identity(sessions, name)))
        sessions.remove_tree(trash)  # frees the space; a crash before this is cleaned up later

    @staticmethod
    def shred_vault_key(sessions: Dir, trash: str) -> None:
        """Crypto-shred: without its wrapped data key no copy of the vault can be decrypted."""
        with sessions.open_dir(trash) as directory:
            if directory.entry(VAULT_KEY_FILE) is not None:
                shred(directory, VAULT_KEY_FILE)

    def record_rejection(self, log: AuditLog, op: str, target: str | None, error: PolicyError) -> None:
        """Audit a rejected write, at most `records_per_window` per window; then one marker."""
        policy = self.config.rejection_audit
        window = self.clock() // 1000 // policy.window_seconds
        in_window = [r for r in log.recent(64 * 1024)
                     if isinstance(r, (Rejected, Suppressed)) and r.ts // 1000 // policy.window_seconds == window]
        if any(isinstance(r, Suppressed) for r in in_window):
            return
        if len(in_window) < policy.records_per_window:
            log.append({"kind": "rejected", "op": op, "target": target, "reason": error.reason}, durable=True)
        else:
            log.append({"kind": "suppressed", "window": window, "window_seconds": policy.window_seconds},
                       durable=True)

    # -- the listing index (derived data) --------------------------------------------------------
    def index_note(self, root: Dir, summary: SessionSummary | None, *, name: str, created: bool = False) -> None:
        """Record a committed write in the listing index (summary None: the session is gone).
        Not fsynced and not separately audited: it restates audited state, readers validate it,
        and `rebuild_index` recomputes it."""
        with root.open_or_make_dir(INDEX_DIR) as index, \
                locks.lock_plain(index, INDEX_LOCK, exclusive=False, timeout=self.config.lock_timeout_seconds), \
                index.open_or_make_dir(ENTRIES_DIR) as entries:
            if summary is None:
                if entries.entry(f"{name}.json") is not None:
                    entries.unlink(f"{name}.json")
            else:
                entries.write_atomic(f"{name}.json", entry_bytes(summary), durable=False)
            for log in (UPDATES_LOG, CREATED_LOG):
                index.ensure_file(log)
            line = summary_line(summary) if summary is not None else tombstone_line(name, self.clock())
            index.append(UPDATES_LOG, line, durable=False)
            if created and summary is not None:
                index.append(CREATED_LOG, created_line(summary), durable=False)

    def rebuild_index(self, log: AuditLog, root: Dir, summaries: list[SessionSummary]) -> None:
        """Rewrite the whole index from summaries read off the session directories (audited)."""
        by_update = sorted(summaries, key=lambda s: (s.updated_ms, s.name))
        updates = b"".join(summary_line(s) for s in by_update)
        created = b"".join(created_line(s) for s in sorted(summaries, key=lambda s: (s.created_ms, s.name)))
        staging = STAGING_PREFIX + self.ctx.random_hex(8)

        def act() -> None:
            with root.open_or_make_dir(INDEX_DIR) as index, \
                    locks.lock_plain(index, INDEX_LOCK, exclusive=True, timeout=self.config.lock_timeout_seconds):
                with index.make_dir(staging) as fresh:
                    for summary in summaries:
                        fresh.write_atomic(f"{summary.name}.json", entry_bytes(summary), durable=False)
                    fresh.sync()
                if index.entry(ENTRIES_DIR) is not None:
                    old = TRASH_PREFIX + self.ctx.random_hex(8)
                    index.rename(ENTRIES_DIR, old)
                    index.remove_tree(old)
                index.rename(staging, ENTRIES_DIR)
                index.write_atomic(CREATED_LOG, created)
                index.write_atomic(UPDATES_LOG, updates)

        self.apply(log, Change(
            "index.rebuild", f"{INDEX_DIR}/{UPDATES_LOG}", sha256_hex(updates), len(updates), act, lambda: None,
            (TargetState(target=f"{INDEX_DIR}/{CREATED_LOG}", sha256=sha256_hex(created), size=len(created)),),
        ))

    # -- session scope: recovery -----------------------------------------------------------------
    def _observe_session(self, session: OpenSession, target: str, op: str = "") -> str | None:
        """The target's state in the terms its intent uses: the last line of an append-only file
        (the whole file for a compaction), the whole content otherwise."""
        if target in APPEND_ONLY and op != "journal.compact":
            return last_line_hash(session.dir, target, self.limits.max_record_bytes + 1024)
        if target.startswith(f"{STATE_DIR}/"):
            return observe_file(session.state, target.removeprefix(f"{STATE_DIR}/"), self.slot_cap())
        if target not in (VAULT_FILE, SNAPSHOT_FILE, JOURNAL_FILE, VAULT_KEY_FILE):
            raise IntegrityError(f"session {session.name}: the audit log names an unknown target {target}")
        return observe_file(session.dir, target, file_cap(target, self.limits))

    def _drop_torn_lines(self, session: OpenSession) -> list[dict[str, Any]]:
        """A crash mid-append leaves a partial last line, or (journal) a bad final record. Only
        the tail is read: damage further back is left for the loader to refuse."""
        records = []
        for name in (MANIFEST_FILE, JOURNAL_FILE):
            if session.dir.entry(name) is None:
                continue
            size, tail = read_tail(session.dir, name, self.limits.max_record_bytes + 2)
            lines, fragment = split_lines(tail)
            cut = len(fragment)
            if not fragment and lines and name == JOURNAL_FILE and (len(lines) > 1 or len(tail) == size):
                if parse_journal(lines[-1], after_seq=None).torn_bytes:
                    cut = len(lines[-1])  # complete line, bad checksum: torn all the same
            if cut:
                session.dir.truncate(name, size - cut)
                records.append({"kind": "recovery", "event": "torn-tail", "target": name,
                                "size": cut, "sha256": sha256_hex(tail[len(tail) - cut:])})
        return records

    def _redo(self, session: OpenSession, intent: Intent) -> None:
        """Finish materializing a committed journal record that a crash interrupted."""
        if intent.op != "journal.append":
            return
        data = session.dir.read(JOURNAL_FILE, self.limits.max_journal_bytes)
        lines, _ = split_lines(data)
        record = parse_journal(lines[-1], after_seq=None).records[0]
        steps = self.materializations(session, record.ops)
        if tuple(step.describe() for step in steps) != tuple(intent.also):
            raise IntegrityError(f"session {session.name}: journal record {record.seq} does not match its intent")
        for step in steps:  # a record that passed the caps when it was written still does, unless tampered
            if step.target == VAULT_FILE and step.data is not None and len(step.data) > self.limits.max_vault_bytes:
                raise IntegrityError(f"session {session.name}: journal record {record.seq} exceeds the vault cap")
        for step in steps:
            if self._observe_session(session, step.target) != step.describe().sha256:
                self._materialize(session, step)

    def reconcile_session(self, session: OpenSession) -> list[str]:
        def cleanup() -> list[dict[str, Any]]:
            return self._leftovers(session.dir, (TEMP_PREFIX,), "") + \
                self._leftovers(session.state, (TEMP_PREFIX,), f"{STATE_DIR}/") + \
                self._leftovers(session.log.dir, (TEMP_PREFIX,), f"{AUDIT_DIR}/")  # an interrupted ratchet

        return self.reconcile(
            session.log,
            lambda intent: self._observe_session(session, intent.target, intent.op),
            cleanup,
            finish=lambda intent: self._redo(session, intent),
            torn_files=lambda: self._drop_torn_lines(session),
        )

    # -- session scope: writes -------------------------------------------------------------------
    def slot_cap(self) -> int:
        """Largest slot file: a value at its cap plus the envelope."""
        return file_cap(f"{STATE_DIR}/", self.limits)

    def vault_of(self, session: OpenSession) -> tuple[Vault, bytes]:
        master = self.master_key
        if master is None:
            raise AssertionError("vault used without a master key")  # pragma: no cover
        if session.vault is None or session.data_key is None:
            store_id, name = self.identity.store_id, session.name
            key_file = session.dir.read_optional(VAULT_KEY_FILE, VAULT_KEY_CAP)
            if key_file is None:
                if session.dir.entry(VAULT_FILE) is not None:
                    raise IntegrityError(f"session {name}: vault.json exists without its vault.key")
                data_key = self.ctx.os.urandom(32)
                session.pending_key = wrap_data_key(master, data_key, self.ctx.os.urandom(12), store_id, name)
                session.vault = new_vault(data_key, store_id, name)
            else:
                data_key = unwrap_data_key(key_file, master, store_id, name)
                data = session.dir.read_optional(VAULT_FILE, self.limits.max_vault_bytes)
                session.vault = (new_vault(data_key, store_id, name) if data is None
                                 else load_vault(data, data_key, store_id, name))
            session.data_key = data_key
        return session.vault, session.data_key

    def prepare(self, session: OpenSession, value: Any, sink: VaultSink | None = None) -> tuple[Any, VaultSink]:
        """validate -> redact. Nothing is written; a PolicyError leaves the store unchanged and
        forgets any secret sealed into the in-memory vault for this value."""
        sink = sink or VaultSink(self, session)
        mark = sink.mark()
        try:
            check_value(value, self.limits, leaf_types=SECRET_TYPES, hide=contains_secret)
            redacted = redact(value, sink, max_secrets=self.limits.max_secrets_per_value).value
            size = len(canonical_bytes(redacted))
            if size > self.limits.max_value_bytes:
                raise LimitExceededError(f"value of {size} bytes exceeds {self.limits.max_value_bytes}")
        except BaseException:
            sink.rollback(mark)
            raise
        return redacted, sink

    def _vault_bytes(self, session: OpenSession) -> bytes:
        if session.vault is None:
            raise AssertionError("no vault to write")  # pragma: no cover
        data = session.vault.to_bytes()
        if len(data) > self.limits.max_vault_bytes:
            raise LimitExceededError(f"session vault would exceed {self.limits.max_vault_bytes} bytes")
        return data

    def current_slot(self, session: OpenSession, slot: str) -> SlotEnvelope | None:
        name = encode_name(slot)
        data = session.state.read_optional(slot_file(name), self.slot_cap())
        if data is None:
            return None
        envelope: SlotEnvelope = decode_model(SlotEnvelope, data, f"slot {name}")
        if envelope.ext_id != slot:
            raise IntegrityError(f"session {session.name}: slot file {name} holds another slot")
        return envelope

    def slot_version_check(self, session: OpenSession, slot: str, current: int, expected: int | None,
                           adding: bool, staged: int = 0) -> None:
        """`staged`: slots a turn has added (minus those it removed) and not yet committed."""
        if expected is not None and expected != current:
            raise VersionConflictError(f"slot {encode_name(slot)} is at version {current}, expected {expected}")
        if adding:
            count = sum(1 for entry in session.state.list() if not entry.startswith(".")) + staged
            if count >= self.limits.max_slots_per_session:
                raise LimitExceededError(f"session already holds {count} slots (limit {self.limits.max_slots_per_session})")

    def put_slot(self, session: OpenSession, slot: str, value: Any, expected_version: int | None = None) -> int:
        """A slot update on its own: one atomic replace (plus the vault, if it gained a secret)."""
        current = self.current_slot(session, slot)
        version = current.slot_version if current else 0
        self.slot_version_check(session, slot, version, expected_version, adding=current is None)
        payload, sink = self.prepare(session, value)
        data = encode_model(SlotEnvelope(ext_id=slot, slot_version=version + 1, payload=payload))
        file = slot_file(encode_name(slot))
        try:
            if sink.new_entries:
                vault_bytes = self._vault_bytes(session)
                self.write_vault_key(session)
                self.apply(session.log, Change(
                    "vault.put", VAULT_FILE, sha256_hex(vault_bytes), len(vault_bytes),
                    lambda: session.dir.write_atomic(VAULT_FILE, vault_bytes),
                    lambda: observe_file(session.dir, VAULT_FILE, self.limits.max_vault_bytes),
                ))
            self.apply(session.log, Change(
                "slot.put", slot_target(encode_name(slot)), sha256_hex(data), len(data),
                lambda: session.state.write_atomic(file, data),
                lambda: observe_file(session.state, file, self.slot_cap()),
            ))
        except BaseException:
            sink.rollback()
            raise
        return version + 1

    def write_vault_key(self, session: OpenSession) -> None:
        """A new vault's wrapped data key, written to vault.key (its only copy) before anything
        that needs it."""
        key_bytes = session.pending_key
        if key_bytes is None:
            return
        self.apply(session.log, Change(
            "vault.key", VAULT_KEY_FILE, sha256_hex(key_bytes), len(key_bytes),
            lambda: session.dir.write_atomic(VAULT_KEY_FILE, key_bytes),
            lambda: observe_file(session.dir, VAULT_KEY_FILE, VAULT_KEY_CAP),
        ))
        session.pending_key = None

    def delete_slot(self, session: OpenSession, slot: str) -> None:
        file = slot_file(encode_name(slot))
        if session.state.entry(file) is None:
            raise NotFoundError(f"slot {encode_name(slot)} does not exist")
        self.apply(session.log, Change(
            "slot.delete", slot_target(encode_name(slot)), None, None,
            lambda: session.state.unlink(file),
            lambda: observe_file(session.state, file, self.slot_cap()),
        ))

    def next_revision(self, session: OpenSession, metadata: SessionMetadata) -> Manifest:
        now = max(self.clock(), session.manifest.updated_ms)
        return session.manifest.model_copy(update={"rev": session.revisions + 1, "ts": now, "updated_ms": now,
                                                   "metadata": metadata})

    # -- session scope: the journal --------------------------------------------------------------
    def materializations(self, session: OpenSession, ops: list[Op]) -> list[Materialize]:
        """The file writes a journal record implies, computed from the record alone (plus the
        vault on disk for merging), so recovery can recompute and redo them."""
        steps: list[Materialize] = []
        for op in ops:
            kind = op["op"]
            if kind == "slot":
                envelope = SlotEnvelope(ext_id=op["ext_id"], slot_version=op["slot_version"], payload=op["payload"])
                steps.append(Materialize(slot_target(encode_name(op["ext_id"])), encode_model(envelope)))
            elif kind == "slot-delete":
                steps.append(Materialize(slot_target(encode_name(op["ext_id"])), None))
            elif kind == "meta":
                steps.append(Materialize(MANIFEST_FILE, canonical_bytes(op["revision"]) + b"\n"))
            elif kind == "vault":
                steps.append(Materialize(VAULT_FILE, self._merged_vault(session, op)))
        return steps

    def _merged_vault(self, session: OpenSession, op: Op) -> bytes:
        existing = session.dir.read_optional(VAULT_FILE, self.limits.max_vault_bytes)
        entries = {} if existing is None else dict(_vault_entries(existing))
        entries.update(op["entries"])
        return canonical_bytes({"check": op["check"], "entries": entries, "v": 2})

    def _materialize(self, session: OpenSession, step: Materialize) -> None:
        if step.target in APPEND_ONLY:
            if step.data is None:
                raise AssertionError("append-only files are never removed")  # pragma: no cover
            session.dir.append(step.target, step.data, durable=True)
        elif step.target.startswith(f"{STATE_DIR}/"):
            name = step.target.removeprefix(f"{STATE_DIR}/")
            if step.data is None:
                if session.state.entry(name) is not None:
                    session.state.unlink(name)
            else:
                session.state.write_atomic(name, step.data)
        else:
            if step.data is None:
                raise AssertionError("only slots are removed by a batch")  # pragma: no cover
            session.dir.write_atomic(step.target, step.data)

    def append_record(self, session: OpenSession, ops: list[Op]) -> None:
        """Commit a batch: one intent, one journal append (the commit point), then materialize."""
        seq = session.seq + 1
        line = encode_record(seq, self.clock(), ops)
        if len(line) > self.limits.max_record_bytes:
            raise LimitExceededError(f"journal record of {len(line)} bytes exceeds {self.limits.max_record_bytes}")
        if session.journal_bytes + len(line) > self.limits.max_journal_bytes:
            raise LimitExceededError("the journal is full; commit a turn to snapshot it")
        steps = self.materializations(session, ops)
        self.check_caps(session, steps)
        self.write_vault_key(session)

        def act() -> None:
            session.dir.append(JOURNAL_FILE, line, durable=True)
            for step in steps:
                self._materialize(session, step)

        self.apply(session.log, Change(
            "journal.append", JOURNAL_FILE, sha256_hex(line), len(line), act,
            lambda: self._observe_session(session, JOURNAL_FILE), tuple(step.describe() for step in steps),
        ))
        session.seq = seq
        session.journal_records += 1
        session.journal_bytes += len(line)

    def check_caps(self, session: OpenSession, steps: list[Materialize]) -> None:
        """Every file a batch writes stays within its cap, checked before any byte is written
        (so no input can grow a file past what its readers accept; recovery's redo re-checks)."""
        limits = self.limits
        slots = {f"{STATE_DIR}/{name}" for name in session.state.list(sort=False) if not name.startswith(".")} \
            if any(step.target.startswith(f"{STATE_DIR}/") for step in steps) else set()
        adding = False
        manifest: int | None = None
        for step in steps:
            size = len(step.data) if step.data is not None else 0
            if step.target == VAULT_FILE and size > limits.max_vault_bytes:
                raise LimitExceededError(f"the session vault would grow to {size} bytes (limit {limits.max_vault_bytes})")
            if step.target == MANIFEST_FILE:
                if manifest is None:
                    current = size_of(session.dir, MANIFEST_FILE)
                    manifest = current[1] if current else 0
                manifest += size
                total = manifest
                if total > limits.max_manifest_bytes:
                    raise LimitExceededError(f"the manifest would grow to {total} bytes (limit "
                                             f"{limits.max_manifest_bytes}); the session holds too many revisions")
            if step.target.startswith(f"{STATE_DIR}/"):
                if size > self.slot_cap():
                    raise LimitExceededError(f"a slot file of {size} bytes exceeds {self.slot_cap()}")
                if step.data is None:
                    slots.discard(step.target)
                elif step.target not in slots:
                    slots.add(step.target)
                    adding = True
        if adding and len(slots) > limits.max_slots_per_session:
            raise LimitExceededError(f"the session would hold {len(slots)} slots (limit {limits.max_slots_per_session})")

    def snapshot(self, session: OpenSession) -> None:
        """Materialize the transcript at the current record, then empty the journal.

        Crash-safe in either order of failure: the snapshot names the last record it holds, and
        replay skips journal records at or below it, so a journal not yet emptied is harmless."""
        data = encode_model(Snapshot(v=1, seq=session.seq, ts=self.clock(), items=session.items))
        if len(data) > self.limits.max_snapshot_bytes:
            raise LimitExceededError(f"snapshot of {len(data)} bytes exceeds {self.limits.max_snapshot_bytes}")
        self.apply(session.log, Change(
            "snapshot.write", SNAPSHOT_FILE, sha256_hex(data), len(data),
            lambda: session.dir.write_atomic(SNAPSHOT_FILE, data),
            lambda: observe_file(session.dir, SNAPSHOT_FILE, self.limits.max_snapshot_bytes),
        ))
        if session.journal_bytes:
            self.apply(session.log, Change(
                "journal.compact", JOURNAL_FILE, sha256_hex(b""), 0,
                lambda: session.dir.write_atomic(JOURNAL_FILE, b""),
                lambda: observe_file(session.dir, JOURNAL_FILE, self.limits.max_journal_bytes),
            ))
        session.journal_records = session.journal_bytes = 0

    def snapshot_due(self, session: OpenSession) -> bool:
        every_records, every_bytes = self.config.snapshot_every_records, self.config.snapshot_every_bytes
        return bool((every_records and session.journal_records >= every_records)
                    or (every_bytes and session.journal_bytes >= every_bytes))


def _vault_entries(data: bytes) -> dict[str, Any]:
    try:
        entries = orjson.loads(data)["entries"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise IntegrityError("vault is malformed") from None
    if not isinstance(entries, dict):
        raise IntegrityError("vault is malformed")
    return entries
