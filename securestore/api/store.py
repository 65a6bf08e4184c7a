"""SecureStore: the object users call. A facade: reads go to `Reads`, writes through a
`Session` or the store directory's audited changes, maintenance and listings to their recipes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from ..audit.keys import SignerKey
from ..backends.local import migrate, migrate_records
from ..backends.local.catalog import Catalog
from ..backends.local.env import LocalEnv
from ..backends.local.layout import session_target
from ..backends.local.migrate_inspect import load_plan
from ..backends.local.store_dir import Listing, SealReport, StoreDir, StoreObservers
from ..backends.local.store_seal import seal_store
from ..backends.roots import disk_root, open_store_root, root_label
from ..config import MaintenancePolicy, StoreConfig
from ..core.listing import ListingCache, Order, Page, SessionSummary
from ..core.policy import describe_key, encode_name, session_name
from ..core.records import StoreIdentity
from ..core.retention import MaintenanceReport
from ..errors import AlreadyExistsError, OperationalError, PolicyError, SecureStoreError, UsageError
from ..fs import REAL_OS, FsContext, OsApi, PathArg, absolute_path, path_text, environment
from .keyring import find_keyring
from .keys import load_master_key, load_signing_key
from .maintain import maintain
from .opening import open_session
from .reads import Reads
from .session import Session, SessionHooks
from .views import SessionInfo, SessionView, SkippedEntry

# Store-log operations settled by other parts of the backend: a legacy import's intents.
OBSERVERS: StoreObservers = {"migrate.": lambda store: migrate_records.observer(store.env, store.root, store.sessions)}


class SecureStore:
    """An open store. Not thread-safe; use one per thread or guard it."""

    def __init__(
        self,
        root: PathArg,
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
        self.root_path = path_text(root)
        self.environ = environment() if environ is None else environ
        self.ctx = FsContext(os_api)

        def make_env(identity: StoreIdentity) -> LocalEnv:  # the keys are read once the store is known
            master = load_master_key(self.ctx, key_root, key=master_key, key_file=master_key_file,
                                     environ=self.environ)
            signer = load_signing_key(self.ctx, key_root, key=signing_key, key_file=signing_key_file,
                                      environ=self.environ)
            if master is None or signer is None:  # what is not configured comes from the store's key directory
                keyring = find_keyring(self.ctx, self.environ, identity.store_id)
                if keyring is not None and master is None and keyring.master_key is not None:
                    master = load_master_key(self.ctx, key_root, key=None, key_file=keyring.master_key,
                                             environ={})
                if keyring is not None and signer is None and keyring.signing_key is not None:
                    signer = load_signing_key(self.ctx, key_root, key=None, key_file=keyring.signing_key,
                                              environ={})
            return LocalEnv.make(self.ctx, self.config, identity, master_key=master, signer=signer, clock=clock)

        key_root = disk_root(self.root_path)
        tree = open_store_root(self.root_path, self.ctx, self.environ, create=False)
        self.backend = StoreDir(tree, root_label(self.root_path, self.environ), self.config, make_env, OBSERVERS)
        self.catalog = Catalog(self.backend)
        self._reads = Reads(self.backend, self.environ)
        self._creates = 0
        self.last_maintenance: MaintenanceReport | None = None

    # -- lifecycle -------------------------------------------------------------------------------
    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> SecureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def store_id(self) -> str:
        return self.backend.store_id

    @property
    def identity(self) -> StoreIdentity:
        return self.backend.env.identity

    def now_ms(self) -> int:
        """The store's clock (wall time in ms through the OS-call table; tests inject it)."""
        return self.backend.env.clock()

    @property
    def has_master_key(self) -> bool:
        return self.backend.env.master_key is not None

    @property
    def recovered(self) -> list[str]:
        """What this handle's writes repaired (torn tails, dangling intents, stale locks)."""
        return self.backend.recovered

    # -- writes ----------------------------------------------------------------------------------
    def open_session(self, key: str, *, create: bool = False, metadata: Mapping[str, Any] | None = None) -> Session:
        """Open a session for writing (the one-writer lock is held until `close`)."""
        return self._open(key, create=create, metadata=metadata)

    def _open(self, key: str, *, create: bool, metadata: Mapping[str, Any] | None, exclusive: bool = False) -> Session:
        hooks = SessionHooks(self.environ, self.catalog.note_write)
        listing = Listing(self.catalog.expect_write, partial(self.catalog.note_write, created=True))
        return open_session(self.backend, key, create=create, metadata=metadata, hooks=hooks,
                            record_rejection=self.record_rejection, on_create=self._after_create, exclusive=exclusive,
                            listing=listing)

    def create_session(self, key: str, metadata: Mapping[str, Any] | None = None) -> Session:
        """Create a new session (AlreadyExistsError if it exists) and open it for writing."""
        try:
            normalized, name = session_name(key, self.config.limits.max_key_bytes)
        except PolicyError as error:
            self.record_rejection("session.create", key, error)
            raise
        if self.backend.session_exists(name):  # fails fast, without the store lock (checked again under it)
            raise AlreadyExistsError(f"session {describe_key(normalized, name)} already exists")
        return self._open(normalized, create=True, metadata=metadata, exclusive=True)

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
        self.backend.delete_session(key, gone=self.catalog.note_gone)

    def record_rejection(self, op: str, session: object, error: PolicyError) -> None:
        """Audit a policy rejection in the store log (rate-bounded); never masks the error.
        Called with no lock held, so the lock order is always store, then session."""
        if error.audited or self.backend.env.signer is None:  # recorded already, or cannot be
            return
        error.audited = True
        try:
            target: str | None = session_target(session_name(session, self.config.limits.max_key_bytes)[1])
        except PolicyError:
            target = None
        try:
            self.backend.record_rejection(op, target, error)
        except OperationalError:
            pass

    # -- reads -----------------------------------------------------------------------------------
    def get(self, session: str, slot: str, *, resolve: bool = False, default: Any = None) -> Any:
        """A slot's value with references as `[secret:...]` markers, read without the lock;
        `resolve=True` puts the secrets back (vault references need the master key)."""
        return self._reads.get(session, slot, resolve=resolve, default=default)

    def slots(self, session: str) -> list[str]:
        return self._reads.slots(session)

    def history(self, session: str) -> list[dict[str, Any]]:
        """Every manifest revision of a session, oldest first."""
        return self._reads.history(session)

    def read_items(self, session: str, limit: int | None = None, *, resolve: bool = False) -> list[Any]:
        """The latest `limit` transcript items, oldest first, read without taking the lock."""
        return self._reads.items(session, limit, resolve=resolve)

    def describe_session(self, session: str) -> SessionView:
        return self._reads.describe(session)

    def scan_sessions(self) -> tuple[list[SessionInfo], list[SkippedEntry]]:
        """Every session, by reading every session directory: O(n). For pages, use list_sessions."""
        return self._reads.scan()

    def session_exists(self, name: str) -> bool:
        """Is there an entry for this encoded session name (whatever state it is in)?"""
        return self.backend.session_exists(name)

    # -- sealing, maintenance, legacy import -------------------------------------------------------
    def seal(self) -> SealReport:
        """Sign a checkpoint over every log with unsealed records and commit every changed
        session head to the store log. Run it from a timer (the idle heartbeat)."""
        return seal_store(self.backend)

    def maintain(self, *, enforce: bool = False, now_ms: int | None = None,
                 policy: MaintenancePolicy | None = None) -> MaintenanceReport:
        """Retention and disk budget. Warn mode (the default) writes nothing and reports what
        enforce would do; enforce evicts through audited deletes and reclaims stale leftovers."""
        now = self.backend.env.clock() if now_ms is None else now_ms
        return maintain(self.backend, policy or self.config.maintenance, now, enforce=enforce,
                        delete_session=self.delete_session, reopen=lambda key: self.open_session(key).close())

    def _after_create(self, session: Session) -> None:
        """After a create (listed inside it: `Listing`)."""
        every = self.config.maintenance.enforce_every_creates
        if every is None:
            return
        self._creates += 1
        if self._creates % every == 0:
            self.last_maintenance = self.maintain(enforce=True)

    def migrate(self, path: str, *, progress: migrate.Progress | None = None) -> migrate.MigrationReport:
        """Import a legacy store (sessions.json map, or a directory of <id>.json files)."""
        path = absolute_path(path)
        backend = self.backend
        _, plan = load_plan(backend, path)
        if plan.rejected:
            where, why = plan.rejected[0]
            raise PolicyError(f"refused: {len(plan.rejected)} legacy entries fail policy; first: {where}: {why}")
        if not plan.sessions:
            raise UsageError(f"nothing to import: {path} holds no sessions")
        migrate.precheck(backend.env, plan)
        try:
            with backend.writer() as log:
                report = migrate.run(backend.env, log, backend.root, backend.sessions, path, plan,
                                     backend.count.check_room, progress)
                backend.count.changed(len(report.sessions))
                for key in report.sessions:
                    backend.mark_head(encode_name(key))
        except SecureStoreError:
            backend.settle_now()
            raise
        self.catalog.note_imported([encode_name(key) for key in report.sessions])
        return report

    def rollback_migration(self, path: str) -> list[str]:
        """Move the sessions of the latest import of `path` aside and restore its source."""
        path, backend = absolute_path(path), self.backend
        try:
            with backend.writer() as log:
                record = migrate_records.rollback(backend.env, log, backend.root, backend.sessions, path)
                backend.count.forget()
                for name in record.sessions:  # (inside the change: a re-create is listed after it)
                    self.catalog.note_gone(name)
        except SecureStoreError:
            backend.settle_now()
            raise
        return list(record.sessions)

    # -- the listing index -------------------------------------------------------------------------
    @property
    def index_stale(self) -> bool:
        return self.catalog.stale

    @property
    def index_skipped(self) -> list[str]:
        return self.catalog.skipped

    @property
    def index_repaired(self) -> list[str]:
        """What the last rebuild found wrong in the index."""
        return self.catalog.repaired

    def index_stamp(self) -> tuple[int, int] | None:
        """Moves on every write by any process: (inode, size) of the index's update log."""
        return self.catalog.stamp()

    def rebuild_index(self) -> int:
        """Recompute the listing index from the session directories (audited). Returns the count."""
        return self.catalog.rebuild()

    def list_sessions(self, page_size: int = 50, cursor: str | None = None, order: Order = "updated",
                      workspace: str | None = None) -> Page:
        """A page of session summaries, newest first, from the index: the first page costs
        O(page_size), not O(sessions). Pass `next_cursor` back for the next page."""
        if order not in ("updated", "created"):
            raise UsageError("order must be 'updated' or 'created'")
        return self.catalog.page(order=order, page_size=page_size, cursor=cursor, workspace=workspace)

    def most_recent(self, workspace: str | None = None) -> SessionSummary | None:
        page = self.list_sessions(page_size=1, workspace=workspace)
        return page.sessions[0] if page.sessions else None

    def listing_cache(self, ttl_seconds: float = 5.0) -> ListingCache:
        """Pages cached for `ttl_seconds` unless any process wrote in between (the stamp moved)."""
        return ListingCache(self.list_sessions, self.index_stamp, ttl_seconds, self.ctx.os.monotonic)


def open_store(root: PathArg, config: StoreConfig | None = None, **kwargs: Any) -> SecureStore:
    return SecureStore(root, config, **kwargs)
