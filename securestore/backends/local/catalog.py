"""The listing index of one open store: kept current after every committed write (not
durable and not audited on its own: it restates audited state, and readers validate it),
paged for readers, and rebuilt from the session directories (audited) when in doubt."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from ...core.listing import Order, Page, SessionSummary, Skipped
from ...errors import LimitExceededError, SecureStoreError

from . import index
from .index import INDEX_DIR, IndexReader
from .index_compact import UPDATES_LOG, CompactionPolicy
from ..base import SessionBackend
from .store_dir import StoreDir

STALE = "an index update failed; run `securestore index rebuild`"


class Catalog:
    def __init__(self, store: StoreDir) -> None:
        self.store = store
        self.stale = False  # an update failed: listings say so until a rebuild
        self.skipped: list[str] = []  # what the last rebuild could not read
        self.repaired: list[str] = []  # what the last rebuild found wrong in the index
        limits = store.env.limits
        self.compaction = CompactionPolicy(limits.index_compact_bytes, limits.max_index_bytes)

    # -- after writes ----------------------------------------------------------------------------
    def note_write(self, session: SessionBackend, *, created: bool = False) -> None:
        """After a write (inside its group: on PostgreSQL, in its transaction). The write stands
        even if this fails, unless the failure aborted that transaction (then nothing of either
        was committed and the handle is latched). A write that left the transcript alone
        restates the listed item count instead of reading the transcript."""
        items = session.count_if_loaded()
        if items is None and not created:  # (a session created just now, and locked since, holds no item)
            try:
                self._note(session.name, lambda: self._summary(session, 0), created, keep_listed_items=True)
                return
            except index.NotListed:  # no entry to keep the count of (the index lost it): count them
                pass
        count = items if items is not None else 0 if created else None
        self._note(session.name, lambda: self._summary(session, session.item_count() if count is None else count), created)

    def expect_write(self) -> None:
        """Inside a create's group, before it: `note_write` follows (index.expect_note). (A
        session write asks nothing ahead: its listing mostly follows its commit, index.note.)"""
        index.expect_note(self.store.root)

    def note_gone(self, name: str, created_ms: int | None = None) -> None:
        """The session left (`created_ms`: when the one that left was created, so a re-created
        one's line in the created log stays)."""
        self._note(name, lambda: None, False, gone_created_ms=created_ms)

    def note_imported(self, names: list[str]) -> None:
        for name in names:
            self._note(name, partial(self.summary_from_disk, name), True)

    def _note(self, name: str, summary: Callable[[], SessionSummary | None], created: bool,
              keep_listed_items: bool = False, gone_created_ms: int | None = None) -> None:
        store = self.store
        try:  # derived data: whatever goes wrong here, the committed write stands
            index.note(store.root, summary(), name=name, created=created, keep_listed_items=keep_listed_items,
                       timeout=store.config.lock_timeout_seconds, now_ms=store.env.clock(),
                       compaction=self.compaction, gone_created_ms=gone_created_ms, late_failure=self._went_stale)
        except SecureStoreError:  # a lock timeout, a damaged transcript to count: never the caller's failure
            if store.env.ctx.failed:
                raise
            self.stale = True

    def _went_stale(self, why: str) -> None:
        self.stale = True  # (`why` names a lock timeout or a lost connection: the write itself stands)

    def _summary(self, session: SessionBackend, items: int) -> SessionSummary:
        metadata, manifest = session.manifest.metadata, session.manifest
        return SessionSummary(key=session.key, name=session.name, title=metadata.title,
                              workspace=metadata.workspace, created_ms=manifest.created_ms,
                              updated_ms=self.store.env.clock(), items=items)

    def summary_from_disk(self, name: str) -> SessionSummary:
        """A session's summary read off its directory (for a rebuild): its transcript's head and
        active segment, not its items."""
        with self.store.read_session(None, name) as session:
            latest = session.manifest
            return SessionSummary(key=latest.key, name=name, title=latest.metadata.title,
                                  workspace=latest.metadata.workspace, created_ms=latest.created_ms,
                                  updated_ms=session.last_write_ms(), items=session.item_count())

    # -- readers ---------------------------------------------------------------------------------
    def page(self, *, order: Order, page_size: int, cursor: str | None, workspace: str | None) -> Page:
        store = self.store
        if store.root.entry(INDEX_DIR) is None:
            self.rebuild()  # a store made before the index existed, or an index removed
        with store.root.open_dir(INDEX_DIR) as directory:
            reader = IndexReader(directory, max_index_bytes=store.env.limits.max_index_bytes)
            page = reader.page(order=order, page_size=page_size, cursor=cursor, workspace=workspace)
        if self.stale:
            page.skipped.append(Skipped("index", STALE))
        return page

    def stamp(self) -> tuple[int, int] | None:
        """Moves on every write by any process: (inode, size) of the index's update log."""
        root = self.store.root
        if root.entry(INDEX_DIR) is None:
            return None
        with root.open_dir(INDEX_DIR) as directory:
            return directory.size_of(UPDATES_LOG)

    # -- rebuild ---------------------------------------------------------------------------------
    def rebuild(self) -> int:
        """Recompute the index from the session directories (audited). Returns the count."""
        store = self.store
        limit = store.env.limits.max_sessions
        with store.writer() as log:
            summaries, skipped = [], []
            for name in store.session_names():
                try:
                    summaries.append(self.summary_from_disk(name))
                except SecureStoreError as exc:
                    skipped.append(f"{name}: {exc}")
                if len(summaries) > limit:
                    raise LimitExceededError(f"more than {limit} sessions to index")
            self.repaired = self._disagreements({summary.name for summary in summaries})
            index.rebuild(log, store.root, summaries, store.env.ctx, store.config.lock_timeout_seconds)
        self.stale = False
        self.skipped = skipped
        return len(summaries)

    def _disagreements(self, live: set[str]) -> list[str]:
        """What the index got wrong before a rebuild (reported: a hidden session is news)."""
        root = self.store.root
        if root.entry(INDEX_DIR) is None:
            return [f"{INDEX_DIR}: missing"] if live else []
        with root.open_dir(INDEX_DIR) as directory:
            found = index.disagreements(directory, live, ignore=set(),
                                        max_index_bytes=self.store.env.limits.max_index_bytes)
        return [line.removesuffix("; run `securestore index rebuild`") for line in found]
