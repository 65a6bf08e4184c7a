"""The async API: `store = await securestore.aio.open_store(root, ...)`.

It wraps the sync core, as filelock's asyncio module does, instead of duplicating it: every call
runs in a worker thread (`asyncio.to_thread`), so lock waits, file I/O and fsyncs never block the
event loop. One store handle serves many tasks on many sessions at once; the calls on one session
handle run one at a time, in the order they were awaited.

Cancellation never leaves a half-done write. A write, once started, runs to completion in its
thread (durable, audited, outcome recorded) or fails as it would have; a task cancelled while
awaiting it waits for that end, records it in `AsyncSecureStore.interrupted`, and only then
raises `CancelledError`, with a note saying whether the write happened. Reads are simply
abandoned.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from .api.store import SecureStore
from .api.session import Session, SlotHandle
from .api.verify import VerifyOptions, VerifyReport, verify_store
from .config import StoreConfig
from .core.listing import Order, Page, SessionSummary
from .fs import PathArg

T = TypeVar("T")


@dataclass(frozen=True)
class InterruptedWrite:
    """A write whose caller was cancelled while it ran: what it was, and how it ended."""

    operation: str
    session: str | None
    completed: bool
    error: str | None  # the error's one-line message when it failed


async def _finish(run: Callable[[], T], operation: str, session: str | None,
                  interrupted: deque[InterruptedWrite], abandon: Callable[[T], object] | None = None) -> T:
    """Run a write in a worker thread; if the caller is cancelled meanwhile, wait for the write
    to end (it cannot be stopped halfway), record how it ended, then re-raise the cancellation.
    `abandon` undoes what nobody will receive now (a session opened for a cancelled caller is
    closed, so its writer lock is not held by a handle no one has)."""
    future = asyncio.ensure_future(asyncio.to_thread(run))
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(future)
            break
        except asyncio.CancelledError as exc:
            if future.done() and future.cancelled():
                raise
            cancelled = exc
            if future.done():
                break
        except BaseException:
            if cancelled is None:
                raise  # the write failed, and nobody cancelled its caller
            break
    if cancelled is None:
        return result
    error = future.exception()
    if error is None and abandon is not None:
        closing = asyncio.ensure_future(asyncio.to_thread(abandon, future.result()))
        while not closing.done():
            try:
                await asyncio.shield(closing)
            except asyncio.CancelledError:
                continue
            except BaseException:  # noqa: S110 - closing a handle nobody has: its failure changes nothing
                break
    interrupted.append(InterruptedWrite(operation, session, error is None,
                                        None if error is None else str(error)))
    cancelled.add_note(f"securestore: the {operation} {'completed' if error is None else 'failed: ' + str(error)}"
                       " before the cancellation took effect")
    raise cancelled


class AsyncSlot:
    def __init__(self, session: AsyncSession, slot: SlotHandle) -> None:
        self._session, self._slot = session, slot

    async def get(self, *, resolve: bool = False, default: Any = None) -> Any:
        return await self._session._read(lambda: self._slot.get(resolve=resolve, default=default))

    async def put(self, payload: Any, *, expected_version: int | None = None) -> int:
        return await self._session._write("slot.put", lambda: self._slot.put(payload, expected_version=expected_version))

    async def delete(self) -> None:
        await self._session._write("slot.delete", self._slot.delete)


class AsyncSession:
    """The async twin of `Session`: one writer, until `close()` (or the end of `async with`)."""

    def __init__(self, store: AsyncSecureStore, session: Session) -> None:
        self._store, self.sync = store, session
        self._lock = asyncio.Lock()  # a Session is used by one thread at a time

    @property
    def key(self) -> str:
        return self.sync.key

    async def _read(self, run: Callable[[], T]) -> T:
        async with self._lock:
            return await asyncio.to_thread(run)

    async def _write(self, operation: str, run: Callable[[], T]) -> T:
        async with self._lock:
            return await _finish(run, operation, self.sync.key, self._store.interrupted)

    async def close(self) -> None:
        await self._write("session.close", self.sync.close)

    async def __aenter__(self) -> AsyncSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def append_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        return await self._write("append_items", lambda: self.sync.append_items(items))

    async def items(self, limit: int | None = None, *, resolve: bool = False) -> list[Any]:
        return await self._read(lambda: self.sync.items(limit, resolve=resolve))

    async def pop_item(self, *, resolve: bool = False) -> Any:
        return await self._write("pop_item", lambda: self.sync.pop_item(resolve=resolve))

    async def clear(self) -> None:
        await self._write("clear", self.sync.clear)

    def slot(self, ext_id: str) -> AsyncSlot:
        return AsyncSlot(self, self.sync.slot(ext_id))

    async def slots(self) -> list[str]:
        return await self._read(self.sync.slots)

    async def get_metadata(self, *, resolve: bool = False) -> dict[str, Any]:
        return await self._read(lambda: self.sync.get_metadata(resolve=resolve))

    async def update_metadata(self, **fields: Any) -> int:
        return await self._write("update_metadata", lambda: self.sync.update_metadata(**fields))

    async def history(self) -> list[dict[str, Any]]:
        return await self._read(self.sync.history)

    async def commit_turn(self) -> None:
        await self._write("commit_turn", self.sync.commit_turn)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[AsyncSession]:
        """Stage every write in the block; one atomic batch on success, nothing on an error or
        a cancellation inside the block."""
        block = self.sync.turn()
        await self._write("begin_turn", block.__enter__)
        try:
            yield self
        except BaseException as exc:
            error = exc  # bound for the worker thread (an `except` name is unbound when the block ends)
            await self._write("abort_turn", lambda: block.__exit__(type(error), error, error.__traceback__))
            raise
        await self._write("commit_turn", lambda: block.__exit__(None, None, None))


class AsyncSecureStore:
    """The async twin of `SecureStore`. `interrupted` holds the latest 256 writes whose caller
    was cancelled while they ran, with how each ended (newest last)."""

    def __init__(self, store: SecureStore) -> None:
        self.sync = store
        self.interrupted: deque[InterruptedWrite] = deque(maxlen=256)  # the latest ones

    async def _write(self, operation: str, session: str | None, run: Callable[[], T],
                     abandon: Callable[[T], object] | None = None) -> T:
        return await _finish(run, operation, session, self.interrupted, abandon)

    async def run_write(self, operation: str, session: str | None, run: Callable[[], T]) -> T:
        """Run `run` (a sync write on this store, e.g. an adapter's batch) in a worker thread with
        the same promise as every write here: a cancelled caller waits for it to finish or fail,
        and the outcome is recorded in `interrupted` under `operation`."""
        return await self._write(operation, session, run)

    async def close(self) -> None:
        await asyncio.to_thread(self.sync.close)

    async def __aenter__(self) -> AsyncSecureStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def store_id(self) -> str:
        return self.sync.store_id

    async def open_session(self, key: str, *, create: bool = False,
                           metadata: Mapping[str, Any] | None = None) -> AsyncSession:
        session = await self._write("open_session", key, lambda: self.sync.open_session(key, create=create,
                                                                                        metadata=metadata),
                                    abandon=Session.close)
        return AsyncSession(self, session)

    async def create_session(self, key: str, metadata: Mapping[str, Any] | None = None) -> AsyncSession:
        session = await self._write("create_session", key, lambda: self.sync.create_session(key, metadata),
                                    abandon=Session.close)
        return AsyncSession(self, session)

    async def put(self, session: str, slot: str, value: Any, *, create: bool = True,
                  expected_version: int | None = None) -> int:
        return await self._write("put", session, lambda: self.sync.put(session, slot, value, create=create,
                                                                       expected_version=expected_version))

    async def delete_slot(self, session: str, slot: str) -> None:
        await self._write("delete_slot", session, lambda: self.sync.delete_slot(session, slot))

    async def delete_session(self, session: str) -> None:
        await self._write("delete_session", session, lambda: self.sync.delete_session(session))

    async def get(self, session: str, slot: str, *, resolve: bool = False, default: Any = None) -> Any:
        return await asyncio.to_thread(lambda: self.sync.get(session, slot, resolve=resolve, default=default))

    async def slots(self, session: str) -> list[str]:
        return await asyncio.to_thread(self.sync.slots, session)

    async def history(self, session: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.sync.history, session)

    async def read_items(self, session: str, limit: int | None = None, *, resolve: bool = False) -> list[Any]:
        return await asyncio.to_thread(lambda: self.sync.read_items(session, limit, resolve=resolve))

    async def list_sessions(self, page_size: int = 50, cursor: str | None = None, order: Order = "updated",
                            workspace: str | None = None) -> Page:
        return await asyncio.to_thread(lambda: self.sync.list_sessions(page_size, cursor, order, workspace))

    async def most_recent(self, workspace: str | None = None) -> SessionSummary | None:
        return await asyncio.to_thread(self.sync.most_recent, workspace)

    async def seal(self) -> Any:
        return await self._write("seal", None, self.sync.seal)

    async def maintain(self, *, enforce: bool = False) -> Any:
        return await self._write("maintain", None, lambda: self.sync.maintain(enforce=enforce))

    async def rebuild_index(self) -> int:
        return await self._write("rebuild_index", None, self.sync.rebuild_index)

    async def verify(self, session: str | None = None, options: VerifyOptions | None = None) -> VerifyReport:
        return await asyncio.to_thread(lambda: verify_store(self.sync, session, options))


async def open_store(root: PathArg, config: StoreConfig | None = None, **kwargs: Any) -> AsyncSecureStore:
    """Open a store off the event loop (opening reads keys and may reconcile a crashed write)."""
    return AsyncSecureStore(await asyncio.to_thread(lambda: SecureStore(root, config, **kwargs)))
