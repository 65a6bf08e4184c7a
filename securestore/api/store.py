"""SecureStore: the object users call. Reads happen here; every write goes through the pipeline."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..audit.keys import SignerKey, encode_seed, store_log_key
from ..backends.local.auditlog import AuditLog
from .keys import MISSING_SIGNER, SIGNING_KEY_FILE_ENV, SeedOut, export_seed, load_signing_key
from ..core.canonical import sha256_hex
from ..config import MaintenancePolicy, StoreConfig
from ..backends.local.session_files import read_manifest, read_transcript
from ..errors import (
    AlreadyExistsError,
    IntegrityError,
    InvalidValueError,
    KeyMaterialError,
    LayoutVersionError,
    LimitExceededError,
    LockHeldError,
    NotFoundError,
    OperationalError,
    PolicyError,
    ResumeMismatchError,
    SecretUnavailableError,
    SecureStoreError,
    UnsafeFileError,
    UsageError,
)
from ..fs import (REAL_OS, TEMP_PREFIX, Dir, FileLock, FsContext, OsApi, locks, open_root, read_key_file, size_of, walk,
                 write_key_file)
from ..fs.locks import is_alive
from ..backends.local.index import CREATED_LOG, ENTRIES_DIR, INDEX_DIR, UPDATES_LOG, IndexReader, disagreements
from ..core.listing import ListingCache, Order, Page, SessionSummary, Skipped
from ..backends.local.layout import (
    AUDIT_DIR,
    BACKEND,
    LAYOUT_VERSION,
    SESSIONS_DIR,
    SESSION_LOCK,
    STATE_DIR,
    STORE_FILE,
    STORE_FILE_CAP,
    STORE_LOCK,
    VAULT_FILE,
    VAULT_KEY_CAP,
    VAULT_KEY_FILE,
    session_target,
    slot_file,
)
from ..core.records import Manifest, SessionMetadata, SlotEnvelope, StoreIdentity, decode_model, encode_model
from ..backends.local import heads
from ..core.retention import MaintenanceReport, SessionUsage, plan, protection
from ..backends.local.migrate import MigrationReport, Progress, precheck
from ..backends.local.migrate import rollback as importer_rollback
from ..backends.local.migrate import run as importer_run
from ..backends.local.migrate_inspect import load_plan
from ..txn import Change
from ..backends.local.pipeline import (
    OpenSession,
    Pipeline,
    checked_key,
    observe_file,
    session_name,
    wall_clock_ms,
)
from ..core.policy import check_value, encode_name, is_session_name, name_matches_key
from ..core.secrets import SECRET_TYPES, contains_secret, redact, resolve_value, unescape_value
from ..core.secrets.vault import encode_master_key, load_vault, parse_master_key, unseal, unwrap_data_key
from .session import Session

MASTER_KEY_ENV = "SECURESTORE_MASTER_KEY"
MASTER_KEY_FILE_ENV = "SECURESTORE_MASTER_KEY_FILE"


def load_master_key(
    ctx: FsContext, root_path: str, *, key: bytes | str | None, key_file: str | None, environ: Mapping[str, str]
) -> bytes | None:
    """Explicit key, else key file, else $SECURESTORE_MASTER_KEY, else $SECURESTORE_MASTER_KEY_FILE."""
    if key is not None:
        return parse_master_key(key)
    path = key_file or None
    if path is None and environ.get(MASTER_KEY_ENV):
        return parse_master_key(environ[MASTER_KEY_ENV])
    path = path or environ.get(MASTER_KEY_FILE_ENV) or None
    if path is None:
        return None
    return parse_master_key(read_key_file(path, ctx, root_path=root_path))


def generate_master_key(path: str, *, root_path: str | None = None, os_api: OsApi = REAL_OS) -> None:
    """Write a new random master key to a 0600 file outside the store root."""
    ctx = FsContext(os_api)
    write_key_file(path, (encode_master_key(os_api.urandom(32)) + "\n").encode(), ctx, root_path=root_path)


@dataclass(frozen=True)
class SessionInfo:
    key: str
    name: str
    created_ms: int
    updated_ms: int
    title: str | None
    slots: int


@dataclass(frozen=True)
class SessionView:
    key: str
    name: str
    metadata: dict[str, Any]
    revisions: int
    created_ms: int
    updated_ms: int
    items: int
    slots: list[str]
    lock_holder: str | None


@dataclass
class SealReport:
    sealed: list[str] = field(default_factory=list)  # sessions given a new checkpoint
    busy: list[str] = field(default_factory=list)  # a live writer holds them (it seals on close)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SkippedEntry:
    name: str
    reason: str


def init_store(
    root: str | os.PathLike[str],
    config: StoreConfig | None = None,
    *,
    seed_out: SeedOut,
    signing_key: SignerKey | str | None = None,
    signing_key_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    os_api: OsApi = REAL_OS,
    clock: Callable[[], int] | None = None,
) -> str:
    """Create a new store at `root` (an absent or empty directory). Returns the store id.

    The audit verification seed is created here and handed to `seed_out` (a new file outside
    the root, or a callback) exactly once; the store never keeps it. The signing key (argument,
    file or environment) must exist: every log is sealed from its first record."""
    ctx = FsContext(os_api)
    clock = clock or wall_clock_ms(ctx)
    root_path = os.fspath(root)
    signer = load_signing_key(ctx, root_path, key=signing_key, key_file=signing_key_file,
                              environ=os.environ if environ is None else environ)
    if signer is None:
        raise KeyMaterialError("init needs an audit signing key: pass --generate-signing-key PATH or --signing-key-file "
                               f"FILE, or set ${SIGNING_KEY_FILE_ENV}")
    with open_root(root_path, ctx, create=True) as root_dir:
        if root_dir.entry(STORE_FILE) is not None:
            raise AlreadyExistsError(f"a store already exists at {root_path}")
        present = root_dir.list()
        if present:
            # init deletes nothing it did not create in this call: a store whose store.json was
            # lost still holds every session and its audit trail.
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise OperationalError(
                f"refused to init {root_path}: the directory is not empty ({shown}); init never deletes anything. "
                "If it is a store whose store.json is missing, the store is damaged: run `securestore audit verify`; "
                "if an interrupted init left it, look, then remove it yourself")
        with locks.lock(root_dir, STORE_LOCK, 0.0, clock()):
            identity = StoreIdentity(
                v=1, store_id=ctx.random_hex(16), layout_version=LAYOUT_VERSION, backend=BACKEND,
                created_ms=clock(), fingerprint_key=ctx.random_hex(32),
            )
            data = encode_model(identity)
            pipeline = Pipeline(ctx, config or StoreConfig(), identity, master_key=None, signer=signer, clock=clock)
            seed = ctx.os.urandom(32)
            log_id = ctx.random_hex(16)
            with root_dir.make_dir(AUDIT_DIR) as audit_dir:
                log = pipeline.new_log(audit_dir)
                log.create(log_id, {"store": identity.store_id, "scope": "store", "session": None},
                           store_id=identity.store_id, chain=store_log_key(seed, identity.store_id, log_id),
                           rule=pipeline.epoch_rule)
                # Handed out before the store exists (store.json): a store whose seed was lost
                # in a failed export is never completed.
                export_seed(ctx, encode_seed(identity.store_id, seed), seed_out, root_path=root_path)
                del seed
                root_dir.make_dir(SESSIONS_DIR).close()
                with root_dir.make_dir(INDEX_DIR) as index:  # an empty listing index
                    index.make_dir(ENTRIES_DIR).close()
                    index.write_new(UPDATES_LOG, b"")
                    index.write_new(CREATED_LOG, b"")
                # store.json last: its presence means the store is complete.
                pipeline.apply(log, Change(
                    "store.init", STORE_FILE, sha256_hex(data), len(data),
                    lambda: root_dir.write_new(STORE_FILE, data),
                    lambda: observe_file(root_dir, STORE_FILE, STORE_FILE_CAP),
                ))
                log.seal()
    return identity.store_id


class SecureStore:
    """An open store. Not thread-safe; use one per thread or guard it."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        config: StoreConfig | None = None,
        *,
        master_key: bytes | str | None = None,
        master_key_file: str | None = None,
        signing_key: SignerKey | str | None = None,
        signing_key_file: str | None = None,
        environ: Mapping[str, str] | None = None,
        os_api: OsApi = REAL_OS,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self.config = config or StoreConfig()
        self.root_path = os.fspath(root)
        self.environ = os.environ if environ is None else environ
        self.ctx = FsContext(os_api)
        self._root = open_root(self.root_path, self.ctx, create=False)
        try:
            data = self._root.read_optional(STORE_FILE, STORE_FILE_CAP)
            if data is None:
                found = [name for name in (AUDIT_DIR, SESSIONS_DIR, INDEX_DIR) if self._root.entry(name) is not None]
                if found:  # damage, not "no store": never send the user to init over their data
                    raise IntegrityError(
                        f"store.json is missing in {self.root_path}, which holds a store ({', '.join(found)}): "
                        "the store is damaged; restore store.json from a backup (`securestore init` refuses it)")
                raise NotFoundError(f"no store at {self.root_path} (run `securestore init`)")
            self.identity: StoreIdentity = decode_model(StoreIdentity, data, STORE_FILE)
            if self.identity.layout_version > LAYOUT_VERSION:
                raise OperationalError(
                    f"store layout version {self.identity.layout_version} is newer than this securestore "
                    f"supports ({LAYOUT_VERSION}); nothing was modified"
                )
            if self.identity.backend != BACKEND:
                raise OperationalError(f"store backend {self.identity.backend!r} is not {BACKEND!r}")
            master = load_master_key(self.ctx, self.root_path, key=master_key, key_file=master_key_file,
                                     environ=self.environ)
            signer = load_signing_key(self.ctx, self.root_path, key=signing_key, key_file=signing_key_file,
                                      environ=self.environ)
            self.pipeline = Pipeline(self.ctx, self.config, self.identity, master_key=master, signer=signer,
                                     clock=clock)
            self._sessions = self._root.open_dir(SESSIONS_DIR)
            self._audit_dir = self._root.open_dir(AUDIT_DIR)
        except BaseException:
            self._root.close()
            raise
        self.recovered: list[str] = []
        self._heads_dir: Dir | None = None
        self._creates = 0
        self.last_maintenance: MaintenanceReport | None = None
        self.index_stale = False
        self.index_skipped: list[str] = []
        self.index_repaired: list[str] = []  # what the last rebuild found wrong in the index

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        for handle in ("_heads_dir", "_audit_dir", "_sessions", "_root"):
            directory = getattr(self, handle, None)
            if directory is not None:
                directory.close()

    def __enter__(self) -> SecureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def store_id(self) -> str:
        return self.identity.store_id

    @property
    def has_master_key(self) -> bool:
        return self.pipeline.master_key is not None

    def _writable(self) -> None:
        """Configuration first: a write that cannot be sealed is refused before any lock is
        taken or any byte (a marker, a staging directory) is written."""
        self.ctx.check_usable()
        if self.pipeline.signer is None:
            raise KeyMaterialError(MISSING_SIGNER)

    # -- locking ---------------------------------------------------------------------------------
    def _lock(self, directory: Dir, name: str, timeout: float | None = None) -> FileLock:
        wait = self.config.lock_timeout_seconds if timeout is None else timeout
        return locks.lock(directory, name, wait, self.pipeline.clock())

    def _note_stale_lock(self, lock: FileLock, log: AuditLog, target: str) -> list[str]:
        """After reconciliation (so the log's tail is repaired first): audit a takeover."""
        dead = lock.recovered_from
        if dead is None:
            return []
        log.append({"kind": "recovery", "event": "stale-lock", "target": target, "size": 0,
                    "detail": f"holder {dead.describe()} is gone"}, durable=True)
        return [f"stale lock of a dead holder ({dead.describe()}) taken over"]

    @contextmanager
    def _store_writer(self, *, commit_heads: bool = True) -> Iterator[AuditLog]:
        self._writable()
        log = self.pipeline.new_log(self._audit_dir)
        with self._lock(self._root, STORE_LOCK) as lock:
            self.recovered += self.pipeline.reconcile_store(log, self._root, self._sessions)
            self.recovered += self._note_stale_lock(lock, log, STORE_LOCK)
            yield log
            if log.head is not None and not self.ctx.failed:
                if commit_heads:
                    self._commit_heads(log, heads.take_marked(self._heads()))
                log.seal()  # each store operation ends sealed

    def _heads(self) -> Dir:
        if self._heads_dir is None:
            self._heads_dir = self._audit_dir.open_or_make_dir(heads.HEADS_DIR)
        return self._heads_dir

    def _mark_head(self, name: str) -> None:
        """A session signed a new checkpoint: the next store operation commits its head."""
        try:
            heads.mark(self._heads(), name)
        except SecureStoreError:
            pass  # lost, like a marker lost in a crash: the next `audit seal` commits this head

    def _commit_heads(self, log: AuditLog, names: list[str]) -> None:
        try:
            signer = self.pipeline.signer
            if signer is not None:
                heads.commit(log, self._sessions, names, self.pipeline.new_log, signer.verifier)
        except SecureStoreError:
            if self.ctx.failed:
                raise

    def record_rejection(self, op: str, session: object, error: PolicyError) -> None:
        """Audit a policy rejection in the store log (rate-bounded); never masks the error.

        Called with no lock held, so the lock order is always store, then session."""
        if error.audited or self.pipeline.signer is None:  # recorded already, or cannot be (no signer)
            return
        error.audited = True
        try:
            name = session_name(session, self.config.limits.max_key_bytes)[1]
            target: str | None = session_target(name)
        except PolicyError:
            target = None
        try:
            # A rejection is a record, not an operation: it commits no session heads.
            with self._store_writer(commit_heads=False) as log:
                self.pipeline.record_rejection(log, op, target, error)
        except OperationalError:
            pass

    def _open_for_write(self, key: str, name: str, timeout: float | None = None) -> OpenSession:
        self._writable()
        with ExitStack() as cleanup:  # on any failure, everything opened so far is closed
            directory = cleanup.enter_context(self._open_session_dir(name))
            # Resume rules first, read-only: a foreign or newer session is refused untouched.
            manifest = self._check_resumable(directory, name, key)
            audit = cleanup.enter_context(directory.open_dir(AUDIT_DIR))
            log = self.pipeline.new_log(audit)
            lock = cleanup.enter_context(self._lock(directory, SESSION_LOCK, timeout))
            # The directory may have been deleted or replaced while we waited for the lock.
            if not self._sessions.holds(name, directory):
                raise NotFoundError(f"session {name} was deleted")
            state = cleanup.enter_context(directory.open_dir(STATE_DIR))
            session = OpenSession(key, name, directory, state, log, lock, manifest,  # _load completes it
                                  after_seal=lambda: self._mark_head(name))
            cleanup.pop_all()
            return session

    def _load(self, session: OpenSession) -> None:
        """After reconciliation: the latest manifest and the transcript, into memory."""
        what = f"session {session.name}"
        history = read_manifest(session.dir, self.config.limits, what)
        transcript = read_transcript(session.dir, self.config.limits, what)
        if transcript.torn_bytes or history.torn_bytes:
            raise IntegrityError(f"{what}: a torn record survived recovery")
        session.manifest, session.revisions = history.latest, len(history.revisions)
        session.items, session.seq = transcript.items, transcript.seq
        session.journal_records, session.journal_bytes = transcript.journal_records, transcript.journal_bytes

    def _open_session_dir(self, name: str) -> Dir:
        try:
            return self._sessions.open_dir(name)
        except NotFoundError:
            raise NotFoundError(f"session {name} does not exist") from None

    def _check_resumable(self, directory: Dir, name: str, key: str | None) -> Manifest:
        """The session this directory holds, if this store may open it: its name must encode
        the key in its manifest (never trusted otherwise), written by this store and backend,
        in a layout this code knows. Read-only. Returns the latest revision."""
        latest: Manifest = read_manifest(directory, self.config.limits, f"session {name}").latest
        if not name_matches_key(name, latest.key) or latest.name != name:
            raise IntegrityError(f"session {name}: its directory name does not encode the key in its manifest")
        if key is not None and latest.key != key:
            raise IntegrityError(f"session {name}: manifest names a different key")
        if latest.layout_version > LAYOUT_VERSION:
            raise LayoutVersionError(
                f"session {name} has layout version {latest.layout_version}, newer than this securestore "
                f"supports ({LAYOUT_VERSION}); nothing was modified"
            )
        if latest.store_id != self.identity.store_id or latest.backend != BACKEND:
            raise ResumeMismatchError(
                f"session {name} was written by store {latest.store_id} ({latest.backend}), "
                f"not this store {self.identity.store_id} ({BACKEND}); nothing was modified"
            )
        return latest

    # -- sessions ----------------------------------------------------------------------------------
    def _initial_metadata(self, metadata: Mapping[str, Any] | None) -> SessionMetadata | None:
        """Metadata for revision 1, or None when it holds a secret: that needs the session's
        vault, so it is written as revision 2 once the session exists."""
        if not metadata:
            return SessionMetadata()
        unknown = set(metadata) - set(SessionMetadata.model_fields)
        if unknown:
            raise InvalidValueError(f"unknown metadata field(s): {', '.join(sorted(unknown))}")
        check_value(dict(metadata), self.config.limits, leaf_types=SECRET_TYPES, hide=contains_secret)
        try:
            redacted = redact(dict(metadata), _NoSecretsSink(), max_secrets=0).value
        except (_HoldsSecret, LimitExceededError):
            return None
        return Session._validated_metadata(redacted)

    def open_session(self, key: str, *, create: bool = False,
                     metadata: Mapping[str, Any] | None = None) -> Session:
        """Open a session for writing (the one-writer lock is held until `close`)."""
        self._writable()
        try:
            normalized, name = session_name(key, self.config.limits.max_key_bytes)
            deferred, created = None, False
            if create and self._sessions.entry(name) is None:
                initial = self._initial_metadata(metadata)
                deferred = metadata if initial is None else None
                with self._store_writer() as log:
                    if self._sessions.entry(name) is None:
                        try:
                            self.pipeline.create_session(log, self._sessions, normalized,
                                                         initial or SessionMetadata())
                        except SecureStoreError:
                            self.pipeline.note_leftover(self._root)  # a staging directory may remain
                            raise
                        created = True
                        self._mark_head(name)  # its genesis checkpoint: committed as this operation ends
        except PolicyError as error:
            self.record_rejection("session.create" if create else "session.open", key, error)
            raise
        session = self._open_for_write(normalized, name)
        try:
            session.recovered = self.pipeline.reconcile_session(session)
            session.recovered += self._note_stale_lock(session.lock, session.log, SESSION_LOCK)
            self.recovered += session.recovered
            self._load(session)
        except BaseException:
            session.close()
            raise
        handle = Session(self, session)
        if created:
            self._index_note(name, session, created=True)
            self._after_create()
        if deferred:
            try:
                handle.update_metadata(**deferred)
            except BaseException:
                handle.close()
                raise
        return handle

    def create_session(self, key: str, metadata: Mapping[str, Any] | None = None) -> Session:
        """Create a new session (AlreadyExistsError if it exists) and open it for writing."""
        normalized, name = session_name(key, self.config.limits.max_key_bytes)
        if self._sessions.entry(name) is not None:
            raise AlreadyExistsError(f"session {name} already exists")
        return self.open_session(normalized, create=True, metadata=metadata)

    def put(self, session: str, slot: str, value: Any, *, create: bool = True,
            expected_version: int | None = None) -> int:
        """Store `value` in a slot (creating the session if needed); returns the slot version."""
        try:
            with self.open_session(session, create=create) as handle:
                handle.rejections_in_session_log = False  # recorded in the store log, below
                version: int = handle.slot(slot).put(value, expected_version=expected_version)
                return version
        except PolicyError as error:
            self.record_rejection("slot.put", session, error)
            raise

    def delete_slot(self, session: str, slot: str) -> None:
        try:
            with self.open_session(session) as handle:
                handle.rejections_in_session_log = False
                handle.slot(slot).delete()
        except PolicyError as error:
            self.record_rejection("slot.delete", session, error)
            raise

    def delete_session(self, session: str) -> None:
        try:
            key = session_name(session, self.config.limits.max_key_bytes)[0]
        except PolicyError as error:
            self.record_rejection("session.delete", session, error)
            raise
        with self._store_writer() as log, self.open_session(key) as handle:
            try:
                self.pipeline.delete_session(log, self._sessions, handle._open)
            except SecureStoreError:
                self.pipeline.note_leftover(self._root)  # a trash directory may remain
                raise
        self._index_note(encode_name(key), None)

    # -- reads -----------------------------------------------------------------------------------
    def get(self, session: str, slot: str, *, resolve: bool = False, default: Any = None) -> Any:
        """A slot's value with references as `[secret:...]` markers, read without the lock;
        `resolve=True` puts the secrets back (vault references need the master key)."""
        slot_key = checked_key(slot, what="slot name", max_bytes=self.config.limits.max_key_bytes)
        with self._reader(session) as (directory, name), directory.open_dir(STATE_DIR) as state:
            data = state.read_optional(slot_file(encode_name(slot_key)), self.pipeline.slot_cap())
            if data is None:
                return default
            envelope: SlotEnvelope = decode_model(SlotEnvelope, data, f"slot of session {name}")
            if envelope.ext_id != slot_key:
                raise IntegrityError(f"session {name}: a slot file does not hold the slot it is named for")
            if not resolve:
                return unescape_value(envelope.payload)
            return resolve_value(envelope.payload, self._resolver(directory, name))

    def _resolver(self, directory: Dir, name: str) -> Any:
        cache: dict[str, Any] = {}

        def lookup(scheme: str, ident: str) -> str | bytes:
            if scheme == "env":
                value = self.environ.get(ident)
                if value is None:
                    raise SecretUnavailableError(f"env reference {ident} is not set in the environment")
                return value
            if scheme == "redacted":
                raise SecretUnavailableError(
                    f"reference redacted:{ident} cannot be resolved: the value was dropped (no master key at write time)"
                )
            if self.pipeline.master_key is None:
                raise KeyMaterialError("resolving vault references needs the master key")
            if "vault" not in cache:
                key_file = directory.read_optional(VAULT_KEY_FILE, VAULT_KEY_CAP)
                data = directory.read_optional(VAULT_FILE, self.config.limits.max_vault_bytes)
                if data is None or key_file is None:
                    raise SecretUnavailableError(f"session {name} has no vault")
                data_key = unwrap_data_key(key_file, self.pipeline.master_key, self.store_id, name)
                cache["vault"] = (load_vault(data, data_key, self.store_id, name), data_key)
            vault, data_key = cache["vault"]
            return unseal(vault, data_key, ident)

        return lookup

    def _slot_names(self, state: Dir, name: str) -> list[str]:
        names = []
        for file in state.list():
            if file.startswith("."):
                continue
            data = state.read(file, self.pipeline.slot_cap())
            envelope: SlotEnvelope = decode_model(SlotEnvelope, data, f"slot of session {name}")
            names.append(envelope.ext_id)
        return sorted(names)

    def _history(self, directory: Dir, name: str) -> list[dict[str, Any]]:
        history = read_manifest(directory, self.config.limits, f"session {name}")
        return [unescape_value(revision.model_dump()) for revision in history.revisions]

    @contextmanager
    def _reader(self, session: str) -> Iterator[tuple[Dir, str]]:
        """A session directory opened for reading: no lock, nothing repaired or written."""
        key, name = session_name(session, self.config.limits.max_key_bytes)
        with self._open_session_dir(name) as directory:
            self._check_resumable(directory, name, key)
            yield directory, name

    def session_exists(self, name: str) -> bool:
        """Is there an entry for this encoded session name (whatever state it is in)?"""
        return self._sessions.entry(name) is not None

    def slots(self, session: str) -> list[str]:
        with self._reader(session) as (directory, name), directory.open_dir(STATE_DIR) as state:
            return self._slot_names(state, name)

    def history(self, session: str) -> list[dict[str, Any]]:
        """Every manifest revision of a session, oldest first."""
        with self._reader(session) as (directory, name):
            return self._history(directory, name)

    def read_items(self, session: str, limit: int | None = None, *, resolve: bool = False) -> list[Any]:
        """The latest `limit` transcript items, oldest first, read without taking the lock."""
        with self._reader(session) as (directory, name):
            items = read_transcript(directory, self.config.limits, f"session {name}").items
            chosen = items if limit is None else items[max(0, len(items) - limit):]
            if not resolve:
                return [unescape_value(item) for item in chosen]
            lookup = self._resolver(directory, name)
            return [resolve_value(item, lookup) for item in chosen]

    def describe_session(self, session: str) -> SessionView:
        with self._reader(session) as (directory, name):
            history = read_manifest(directory, self.config.limits, f"session {name}")
            transcript = read_transcript(directory, self.config.limits, f"session {name}")
            with directory.open_dir(STATE_DIR) as state:
                slots = self._slot_names(state, name)
            holder = locks.lock_owner(directory, SESSION_LOCK)
            latest = history.latest
            return SessionView(
                key=latest.key, name=name, metadata=unescape_value(latest.metadata.model_dump()),
                revisions=len(history.revisions), created_ms=latest.created_ms, updated_ms=latest.updated_ms,
                items=len(transcript.items), slots=slots,
                lock_holder=holder.describe() if holder is not None else None,
            )

    def scan_sessions(self) -> tuple[list[SessionInfo], list[SkippedEntry]]:
        """Every session, by reading every session directory: O(n). For pages, use list_sessions.
        A directory whose name does not re-encode from its manifest key is skipped and reported."""
        found: list[SessionInfo] = []
        skipped: list[SkippedEntry] = []
        for name in self._sessions.list():
            if name.startswith("."):
                continue
            if not is_session_name(name):
                skipped.append(SkippedEntry(name, "not a session name"))
                continue
            try:
                with self._sessions.open_dir(name) as directory:
                    manifest = self._check_resumable(directory, name, None)
                    with directory.open_dir(STATE_DIR) as state:
                        slots = sum(1 for f in state.list() if not f.startswith("."))
            except (IntegrityError, UnsafeFileError, NotFoundError, ResumeMismatchError, LayoutVersionError) as exc:
                skipped.append(SkippedEntry(name, str(exc)))
                continue
            found.append(SessionInfo(manifest.key, name, manifest.created_ms, manifest.updated_ms,
                                     manifest.metadata.title, slots))
            if len(found) > self.config.limits.max_sessions:
                raise LimitExceededError(f"more than {self.config.limits.max_sessions} session directories; "
                                         "refusing to scan further")
        found.sort(key=lambda info: (info.created_ms, info.key))
        return found, skipped


    # -- sealing (the idle heartbeat) ------------------------------------------------------------
    def seal(self) -> SealReport:
        """Sign a checkpoint over every log with unsealed records (each session whose writer is
        not active: a live writer seals at its own close), then commit every session head that
        changed since the previous seal to the store log, and seal it. Run it from a timer, so
        an idle store's tail does not stay unsealed and every head is committed."""
        self._writable()
        report = SealReport()
        names = [name for name in self._sessions.list(sort=False) if is_session_name(name)]
        for name in names:
            try:
                with self._sessions.open_dir(name) as directory:
                    with directory.open_dir(AUDIT_DIR) as audit:
                        if self.pipeline.new_log(audit).is_sealed():
                            continue
                    key = self._check_resumable(directory, name, None).key
                session = self._open_for_write(key, name, timeout=0.0)
            except LockHeldError:
                report.busy.append(name)
                continue
            except SecureStoreError as exc:
                report.skipped.append(f"{name}: {exc}")
                continue
            try:
                try:
                    session.recovered = self.pipeline.reconcile_session(session)
                    session.recovered += self._note_stale_lock(session.lock, session.log, SESSION_LOCK)
                    self.recovered += session.recovered
                finally:
                    session.close()  # seals, and marks its head for the commit below
            except SecureStoreError as exc:  # e.g. a log that is not ours to sign: never signed
                if self.ctx.failed:
                    raise
                report.skipped.append(f"{name}: {exc}")
                continue
            report.sealed.append(name)
        with self._store_writer() as log:  # under the store lock: one sweep at a time; seals on the way out
            changed, stamp = heads.changed_since_last_sweep(self._heads(), self._sessions, names)
            self._commit_heads(log, changed + heads.take_marked(self._heads()))
            log.seal()  # the heads are durable before the stamp says they were committed
            heads.finish_sweep(self._heads(), stamp)
        return report

    # -- maintenance -------------------------------------------------------------------------------
    def _after_create(self) -> None:
        """Maintenance on writes, when configured: every N sessions created through this handle."""
        every = self.config.maintenance.enforce_every_creates
        if every is None:
            return
        self._creates += 1
        if self._creates % every == 0:
            self.last_maintenance = self.maintain(enforce=True)

    def _last_write_ms(self, directory: Dir, manifest: Manifest) -> int:
        """When the session last changed: its audit log's last record (an O(1) tail read)."""
        with directory.open_dir(AUDIT_DIR) as audit_dir:
            log = self.pipeline.new_log(audit_dir)
            log.load()
            return log.last.ts if log.last is not None else manifest.updated_ms

    def _usage(self, name: str, policy: MaintenancePolicy, now_ms: int) -> SessionUsage:
        """What maintenance needs of one session, read without locking: O(its files)."""
        with self._sessions.open_dir(name) as directory:
            manifest = self._check_resumable(directory, name, None)
            updated = self._last_write_ms(directory, manifest)
            size, stale, stale_bytes = 0, 0, 0
            grace_ns = (now_ms - policy.temp_grace_seconds * 1000) * 1_000_000
            for rel, info in walk(directory):
                if info.kind == "file":
                    size += info.size
                    if rel.rsplit("/", 1)[-1].startswith(TEMP_PREFIX) and info.mtime_ns < grace_ns:
                        stale, stale_bytes = stale + 1, stale_bytes + info.size
            owner = locks.lock_owner(directory, SESSION_LOCK)
            live = owner.describe() if owner is not None and is_alive(self.ctx.os, owner) else None
        return SessionUsage(manifest.key, name, updated, size, protection(manifest.key, policy, live),
                            stale, stale_bytes)

    def maintain(self, *, enforce: bool = False, now_ms: int | None = None,
                 policy: MaintenancePolicy | None = None) -> MaintenanceReport:
        """Retention and disk budget. Warn mode (the default) writes nothing and reports what
        enforce would do; enforce evicts through audited deletes and reclaims stale leftovers."""
        policy = policy or self.config.maintenance
        now = self.pipeline.clock() if now_ms is None else now_ms
        usages: list[SessionUsage] = []
        skipped: list[str] = []
        for name in self._sessions.list():
            if name.startswith(".") or not is_session_name(name):
                continue
            try:
                usages.append(self._usage(name, policy, now))
            except SecureStoreError as exc:
                skipped.append(f"{name}: {exc}")
        evictions = plan(usages, policy, now)
        report = MaintenanceReport(
            mode="enforce" if enforce else "warn", now_ms=now,
            sessions_before=len(usages), bytes_before=sum(u.bytes for u in usages),
            sessions_after=len(usages), bytes_after=sum(u.bytes for u in usages), skipped=skipped,
            protected=[(u.key, u.protected) for u in usages if u.protected is not None],
        )
        evicted = {e.name for e in evictions}
        stale = [u for u in usages if u.stale_temp_files and u.name not in evicted and u.protected is None]
        if not enforce:
            report.evictions = evictions
        for eviction in evictions:
            if enforce:
                try:
                    self.delete_session(eviction.key)
                except (LockHeldError, NotFoundError) as exc:
                    report.skipped.append(f"{eviction.name}: not evicted: {exc}")
                    continue
                report.evictions.append(eviction)
            report.sessions_after -= 1
            report.bytes_after -= eviction.bytes
        if enforce:
            with self._store_writer() as log:  # store-level leftovers and index temp files
                for fields in self.pipeline.sweep_store(self._root, self._sessions):
                    log.append(fields, durable=True)
        for usage in stale:
            if enforce:
                try:
                    self.open_session(usage.key).close()  # its recovery removes the leftovers
                except (LockHeldError, NotFoundError) as exc:
                    report.skipped.append(f"{usage.name}: leftovers not reclaimed: {exc}")
                    continue
            report.temp_files += usage.stale_temp_files
            report.temp_bytes += usage.stale_temp_bytes
            report.bytes_after -= usage.stale_temp_bytes
        return report


    # -- legacy import -----------------------------------------------------------------------------
    def migrate(self, path: str, *, progress: Progress | None = None) -> MigrationReport:
        """Import a legacy store (sessions.json map, or a directory of <id>.json files)."""
        path = os.path.abspath(path)
        _, plan = load_plan(self, path)
        if plan.rejected:
            where, why = plan.rejected[0]
            raise PolicyError(f"refused: {len(plan.rejected)} legacy entries fail policy; first: {where}: {why}")
        if not plan.sessions:
            raise UsageError(f"nothing to import: {path} holds no sessions")
        precheck(self.pipeline, plan)
        try:
            with self._store_writer() as log:
                report = importer_run(self.pipeline, log, self._root, self._sessions, path, plan, progress)
                for key in report.sessions:
                    self._mark_head(encode_name(key))
        except SecureStoreError:
            self._settle_now()
            raise
        for key in report.sessions:
            name = encode_name(key)
            try:
                summary = self._summary_from_disk(name)
                self.pipeline.index_note(self._root, summary, name=name, created=True)
            except OperationalError:
                self.index_stale = True
        return report

    def rollback_migration(self, path: str) -> list[str]:
        """Move the sessions of the latest import of `path` aside and restore its source."""
        path = os.path.abspath(path)
        try:
            with self._store_writer() as log:
                record = importer_rollback(self.pipeline, log, self._root, self._sessions, path)
        except SecureStoreError:
            self._settle_now()
            raise
        for name in record.sessions:
            self._index_note(name, None)
        return record.sessions

    def _settle_now(self) -> None:
        """Reconcile the store log right away (a failed multi-step change is undone now)."""
        try:
            with self._store_writer():
                pass
        except SecureStoreError:
            pass  # the next writer will


    # -- the listing index -------------------------------------------------------------------------
    def _summary(self, session: OpenSession) -> SessionSummary:
        metadata = session.manifest.metadata
        return SessionSummary(key=session.key, name=session.name, title=metadata.title, workspace=metadata.workspace,
                              created_ms=session.manifest.created_ms, updated_ms=self.pipeline.clock(),
                              items=len(session.items))

    def _summary_from_disk(self, name: str) -> SessionSummary:
        """A session's summary read off its directory (for a rebuild): O(its transcript)."""
        with self._sessions.open_dir(name) as directory:
            latest = self._check_resumable(directory, name, None)
            updated = self._last_write_ms(directory, latest)
            items = len(read_transcript(directory, self.config.limits, f"session {name}").items)
        return SessionSummary(key=latest.key, name=name, title=latest.metadata.title,
                              workspace=latest.metadata.workspace, created_ms=latest.created_ms,
                              updated_ms=updated, items=items)

    def _index_note(self, name: str, session: OpenSession | None, *, created: bool = False) -> None:
        """After a committed write. The write stands even if this fails; the listing says the
        index may be stale until `index rebuild`."""
        try:
            summary = self._summary(session) if session is not None else None
            self.pipeline.index_note(self._root, summary, name=name, created=created)
        except OperationalError:
            self.index_stale = True

    def index_stamp(self) -> tuple[int, int] | None:
        """Moves on every write by any process: (inode, size) of the index's update log."""
        if self._root.entry(INDEX_DIR) is None:
            return None
        with self._root.open_dir(INDEX_DIR) as index:
            return size_of(index, UPDATES_LOG)

    def rebuild_index(self) -> int:
        """Recompute the listing index from the session directories (audited). Returns the count."""
        with self._store_writer() as log:
            summaries, skipped = [], []
            for name in self._sessions.list():
                if name.startswith(".") or not is_session_name(name):
                    continue
                try:
                    summaries.append(self._summary_from_disk(name))
                except SecureStoreError as exc:
                    skipped.append(f"{name}: {exc}")
                if len(summaries) > self.config.limits.max_sessions:
                    raise LimitExceededError(f"more than {self.config.limits.max_sessions} sessions to index")
            self.index_repaired = self._index_disagreements({summary.name for summary in summaries})
            self.pipeline.rebuild_index(log, self._root, summaries)
        self.index_stale = False
        self.index_skipped = skipped
        return len(summaries)

    def _index_disagreements(self, live: set[str]) -> list[str]:
        """What the index got wrong before a rebuild (reported: a hidden session is news)."""
        if self._root.entry(INDEX_DIR) is None:
            return [f"{INDEX_DIR}: missing"] if live else []
        with self._root.open_dir(INDEX_DIR) as index:
            found = disagreements(index, live, ignore=set(), max_index_bytes=self.config.limits.max_index_bytes)
        return [line.removesuffix("; run `securestore index rebuild`") for line in found]

    def list_sessions(self, page_size: int = 50, cursor: str | None = None, order: Order = "updated",
                      workspace: str | None = None) -> Page:
        """A page of session summaries, newest first, from the index: the first page costs
        O(page_size), not O(sessions). Pass `next_cursor` back for the next page."""
        if order not in ("updated", "created"):
            raise UsageError("order must be 'updated' or 'created'")
        if self._root.entry(INDEX_DIR) is None:
            self.rebuild_index()  # a store made before the index existed, or an index removed
        with self._root.open_dir(INDEX_DIR) as index:
            reader = IndexReader(index, max_index_bytes=self.config.limits.max_index_bytes)
            page = reader.page(order=order, page_size=page_size, cursor=cursor, workspace=workspace)
        if self.index_stale:
            page.skipped.append(Skipped("index", "an index update failed; run `securestore index rebuild`"))
        return page

    def most_recent(self, workspace: str | None = None) -> SessionSummary | None:
        page = self.list_sessions(page_size=1, workspace=workspace)
        return page.sessions[0] if page.sessions else None

    def listing_cache(self, ttl_seconds: float = 5.0) -> ListingCache:
        """Pages cached for `ttl_seconds` unless any process wrote in between (the stamp moved)."""
        return ListingCache(self.list_sessions, self.index_stamp, ttl_seconds, self.ctx.os.monotonic)


class _HoldsSecret(Exception):
    pass


class _NoSecretsSink:
    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        raise _HoldsSecret()


def open_store(root: str | os.PathLike[str], config: StoreConfig | None = None, **kwargs: Any) -> SecureStore:
    return SecureStore(root, config, **kwargs)
