"""StoreDir: an open store directory. Store-level changes run inside `writer()` (the store lock,
reconciliation of the store log, then, on the way out, the session heads committed and the
log sealed); sessions are opened for writing through `open_session`."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ... import txn
from ...audit.chain import Intent
from ...audit.checkpoint import Checkpoint
from ...config import StoreConfig
from ...core.policy import describe_key, encode_name, is_session_name
from ...core.records import SessionMetadata, StoreIdentity, decode_model
from ...errors import (
    AlreadyExistsError,
    IntegrityError,
    KeyMaterialError,
    NotFoundError,
    OperationalError,
    PolicyError,
    SecureStoreError,
)
from ...fs import TEMP_PREFIX
from ..tree import Expected, TreeDir
from . import heads
from .auditlog import AuditLog
from .env import LocalEnv, observe_file
from .index import INDEX_DIR
from .index_compact import UPDATES_LOG
from .layout import (
    AUDIT_DIR,
    BACKENDS,
    LAYOUT_VERSION,
    SESSION_LOCK,
    SESSIONS_DIR,
    STORE_FILE,
    STORE_FILE_CAP,
    STORE_LOCK,
)
from .rejections import record_rejection
from .session_count import SessionCount
from .session_dir import SessionDir
from .session_files import check_resumable, read_manifest
from .session_reader import ReadOnlySession
from .session_recovery import note_stale_lock, reconcile_session
from .store_sessions import create_session, delete_session, session_identity
from .sweeps import SWEEP_MARKER, leftovers, note_leftover, sweep_store

MISSING_SIGNER = ("no audit signing key configured: writes need it to seal the audit trail; pass --signing-key-file "
                  "FILE, or set $SECURESTORE_AUDIT_SIGNING_KEY_FILE (or $SECURESTORE_AUDIT_SIGNING_KEY to the key text)")
# Store-log operations of other parts of the backend (a legacy import) register how their
# dangling intents are settled: op prefix -> the observer for this store.
StoreObservers = Mapping[str, Callable[["StoreDir"], txn.Observer]]


@dataclass
class SealReport:
    sealed: list[str] = field(default_factory=list)  # sessions given a new checkpoint
    busy: list[str] = field(default_factory=list)  # a live writer holds them (it seals on close)
    skipped: list[str] = field(default_factory=list)


def read_identity(root: TreeDir, root_path: str) -> StoreIdentity:
    data = root.read_optional(STORE_FILE, STORE_FILE_CAP)
    if data is None:
        found = [name for name in (AUDIT_DIR, SESSIONS_DIR, INDEX_DIR) if root.entry(name) is not None]
        if found:  # damage, not "no store": never send the user to init over their data
            raise IntegrityError(
                f"store.json is missing in {root_path}, which holds a store ({', '.join(found)}): "
                "the store is damaged; restore store.json from a backup (`securestore init` refuses it)")
        raise NotFoundError(f"no store at {root_path} (run `securestore init`)")
    identity: StoreIdentity = decode_model(StoreIdentity, data, STORE_FILE)
    if identity.layout_version > LAYOUT_VERSION:
        raise OperationalError(
            f"store layout version {identity.layout_version} is newer than this securestore "
            f"supports ({LAYOUT_VERSION}); nothing was modified"
        )
    if identity.backend not in BACKENDS:
        raise OperationalError(f"store backend {identity.backend!r} is not one of {sorted(BACKENDS)}")
    return identity


@dataclass(frozen=True)
class Listing:
    """How a create lists its session inside the store change (catalog.py)."""

    expect: Callable[[], None]  # the listing's lock may be tried ahead (TreeDir.expect_locked)
    note: Callable[[SessionDir], None]  # list the session just created


class StoreDir:
    def __init__(self, root: TreeDir, root_path: str, config: StoreConfig,
                 make_env: Callable[[StoreIdentity], LocalEnv], observers: StoreObservers) -> None:
        """`root` (opened by the caller, closed by `close`) is named `root_path` in messages."""
        self.root_path = root_path
        self.root = root
        try:
            self.env = make_env(read_identity(self.root, root_path))
            self.sessions = self.root.open_dir(SESSIONS_DIR)
            self.audit_dir = self.root.open_dir(AUDIT_DIR)
        except BaseException:
            self.root.close()
            raise
        self.config = config
        self.recovered: list[str] = []
        self.count: SessionCount  # the session count, during each store-lock hold (`writer`)
        self._heads_dir: TreeDir | None = None
        self._genesis: dict[str, Checkpoint] = {}  # sessions created by the open store change
        self._observers = observers

    def close(self) -> None:
        for directory in (self._heads_dir, getattr(self, "audit_dir", None), getattr(self, "sessions", None),
                          self.root):
            if directory is not None:
                directory.close()

    @property
    def store_id(self) -> str:
        return self.env.identity.store_id

    def writable(self) -> None:
        """Configuration first: a write that cannot be sealed is refused before any lock is
        taken or any byte (a marker, a staging directory) is written."""
        self.env.ctx.check_usable()
        if self.env.signer is None:
            raise KeyMaterialError(MISSING_SIGNER)

    def lock_timeout(self, timeout: float | None) -> float:
        return self.config.lock_timeout_seconds if timeout is None else timeout

    # -- the store log ---------------------------------------------------------------------------
    @contextmanager
    def writer(self, *, commit_heads: bool = True, expect: Callable[[], None] | None = None) -> Iterator[AuditLog]:
        """The store lock, the store log reconciled, and one group for the change. `expect`:
        called once the lock is held, to name what the change will read or lock
        (TreeDir.expect_reads, expect_locked: on PostgreSQL asked with the first round trip)."""
        self.writable()
        log = self.env.new_log(self.audit_dir)
        # One group: on PostgreSQL the change, its records and the seal are one transaction (and
        # the store lock is let go after it commits); on disk, nothing changes.
        with self.root.group("a store change"), \
                self.root.lock(STORE_LOCK, self.lock_timeout(None), self.env.clock()) as store_lock:
            # What the change reads first, asked ahead now that the lock guards it (one round trip
            # on PostgreSQL instead of one each).
            log.expect_reads()
            self.root.expect_reads([Expected("entry", SWEEP_MARKER), SessionCount.expected()])
            if expect is not None:
                expect()  # (after the store lock: never a lock held while waiting for it)
            self.recovered += self._reconcile(log)
            self.recovered += note_stale_lock(store_lock, log, STORE_LOCK)
            self.count = SessionCount(self.root, self.sessions, log, self.env.limits.max_sessions)
            self._genesis = {}
            yield log
            if log.head is not None and not self.env.ctx.failed:
                if commit_heads:
                    self.commit_heads(log, heads.take_marked(self.heads_dir()), self._genesis)
                log.seal()  # each store operation ends sealed
                self._save_count()

    def _save_count(self) -> None:
        try:
            self.count.save()
        except SecureStoreError:
            if self.env.ctx.failed:
                raise  # otherwise harmless: a count that lags the log is recounted

    def settle_now(self) -> None:
        """Reconcile the store log right away (a failed multi-step change is undone now)."""
        try:
            with self.writer():
                pass
        except SecureStoreError:
            pass  # the next writer will

    def _reconcile(self, log: AuditLog) -> list[str]:
        root, sessions = self.root, self.sessions

        def observe(intent: Intent) -> str | None:
            if intent.target == STORE_FILE:
                return observe_file(root, STORE_FILE, STORE_FILE_CAP)
            return session_identity(self.env, sessions, intent.target.removeprefix(f"{SESSIONS_DIR}/"))

        def observe_index(intent: Intent) -> str | None:  # derived data: a half-done rebuild is simply redone later
            if root.entry(INDEX_DIR) is None:
                return None
            with root.open_dir(INDEX_DIR) as index:
                return observe_file(index, UPDATES_LOG, 1 << 40)

        observers = txn.Observers(txn.Observer(observe))
        observers.register("index.rebuild", txn.Observer(observe_index))
        for prefix, observer_for in self._observers.items():
            observers.register(prefix, observer_for(self))

        def sweep_if(evidence: bool) -> bool:
            # A ratchet interrupted before its rename leaves a temp file beside epoch.key (cheap to see).
            stray_key = log.dir.crash_leftovers and any(name.startswith(TEMP_PREFIX)
                                                        for name in log.dir.list(sort=False))
            return evidence or stray_key or root.entry(SWEEP_MARKER) is not None

        def cleanup() -> list[dict[str, Any]]:
            return leftovers(log.dir, (TEMP_PREFIX,), f"{AUDIT_DIR}/") + sweep_store(root, sessions)

        return txn.reconcile(log, observers, cleanup, sweep_if=sweep_if)

    # -- session heads ---------------------------------------------------------------------------
    def heads_dir(self) -> TreeDir:
        if self._heads_dir is None:
            self._heads_dir = self.audit_dir.open_or_make_dir(heads.HEADS_DIR)
        return self._heads_dir

    def mark_head(self, name: str) -> None:
        """A session signed a new checkpoint: the next store operation commits its head."""
        try:
            heads.mark(self.heads_dir(), name)
        except SecureStoreError:
            pass  # lost, like a marker lost in a crash: the next `audit seal` commits this head

    def commit_heads(self, log: AuditLog, names: list[str], known: Mapping[str, Checkpoint] | None = None) -> None:
        try:
            signer = self.env.signer
            if signer is not None:
                heads.commit(log, self.sessions, names, self.env.new_log, signer.verifier, known or {})
        except SecureStoreError:
            if self.env.ctx.failed:
                raise

    # -- sessions --------------------------------------------------------------------------------
    def session_exists(self, name: str) -> bool:
        """Is there an entry for this encoded session name (whatever state it is in)?"""
        return self.sessions.entry(name) is not None

    def entry_names(self) -> list[str]:
        """Every visible entry of sessions/, session or not (for a scan that reports strays)."""
        return [name for name in self.sessions.list() if not name.startswith(".")]

    def session_names(self) -> list[str]:
        return [name for name in self.sessions.list() if not name.startswith(".") and is_session_name(name)]

    def open_session(self, key: str | None, name: str, timeout: float | None = None) -> SessionDir:
        """A session opened for writing: locked, recovered, its manifest loaded."""
        self.writable()
        # Once the writer lock is held, one group: on PostgreSQL the reads are asked in few round
        # trips and any repair commits as one transaction (the writer lock, `lasting`, outlives it).
        with ExitStack() as grouped:
            session = SessionDir.open(self.env, self.sessions, key, name, self.lock_timeout(timeout),
                                      after_seal=lambda: self.mark_head(name), locked=lambda: grouped.enter_context(
                                          self.root.group(f"the opening of session {name}")))
            try:
                session.recovered = reconcile_session(session)
                session.recovered += note_stale_lock(session.lock, session.log, SESSION_LOCK)
                self.recovered += session.recovered
                session.load()
            except BaseException:
                session.close()
                raise
        return session

    @contextmanager
    def read_session(self, key: str | None, name: str) -> Iterator[ReadOnlySession]:
        """A session opened for reading: no lock, nothing repaired or written. Refused like a
        write would be if the directory does not hold this store's session `key`."""
        try:
            directory = self.sessions.open_dir(name)
        except NotFoundError:
            raise NotFoundError(f"session {describe_key(key, name)} does not exist") from None
        with directory:
            history = read_manifest(directory, self.env.limits, f"session {name}")
            check_resumable(history, name, key, self.env.identity)
            yield ReadOnlySession(self.env, directory, name, history)

    # -- store-level changes ---------------------------------------------------------------------
    def create_session(self, key: str, metadata: SessionMetadata, *, exclusive: bool = False,
                       listing: Listing | None = None) -> SessionDir | None:
        """Create the session, under the store lock and audited, and return it opened for
        writing, with the writer lock `create_session` took before publishing it: nobody can
        have written or crashed in it (no recovery, nothing read back). None if it exists by
        now (AlreadyExistsError if `exclusive`, once the store change has ended sealed).
        `listing`: the session is listed inside the store change (on PostgreSQL, in its
        transaction)."""
        name = encode_name(key)
        exists = False
        with ExitStack() as opened:
            def expect() -> None:
                self.sessions.expect_reads([Expected("entry", name)])
                if listing is not None:
                    listing.expect()

            with self.writer(expect=expect) as log:
                exists = self.sessions.entry(name) is not None
                if not exists:
                    try:
                        made = create_session(self.env, log, self.sessions, key, metadata, self.count.check_room,
                                              self.lock_timeout(None))
                    except SecureStoreError:
                        note_leftover(self.root)  # a staging directory may remain
                        raise
                    opened.callback(made.lock.release)  # (until the session holds it)
                    self.count.changed(+1)
                    self._genesis[name] = made.genesis  # its head: committed as this operation ends
                    session = opened.enter_context(closing(SessionDir.created(
                        self.env, self.sessions, name, made, after_seal=lambda: self.mark_head(name))))
                    if listing is not None:
                        listing.note(session)
            if exists:
                if exclusive:
                    raise AlreadyExistsError(f"session {describe_key(key, name)} already exists")
                return None
            opened.pop_all()  # the store change committed: the session is the caller's
            return session

    def delete_session(self, key: str, *, gone: Callable[[str, int], None] | None = None) -> None:
        """Store lock, then the session's lock (always in that order), then one audited rename.
        `gone(name, created_ms)`: the session leaves the listing inside the store change, so a
        re-create of the same key (under the store lock too) is always listed after it."""
        name = encode_name(key)
        with self.writer() as log:
            session = self.open_session(key, name)
            try:
                delete_session(self.env, log, self.sessions, session)
            except SecureStoreError:
                note_leftover(self.root)  # a trash directory may remain
                raise
            finally:
                session.close()
            self.count.changed(-1)
            if gone is not None:
                gone(name, session.manifest.created_ms)

    def record_rejection(self, op: str, target: str | None, error: PolicyError) -> None:
        """A rejection in the store log. A record, not an operation: it commits no session heads."""
        with self.writer(commit_heads=False) as log:
            record_rejection(self.env, log, op, target, error)

    def sweep(self) -> None:
        """Remove store-level leftovers and index temp files, each removal audited."""
        with self.writer() as log:
            for fields in sweep_store(self.root, self.sessions):
                log.append(fields, durable=True)
