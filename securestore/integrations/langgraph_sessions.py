"""The thread sessions a `SecureStoreSaver` writes through (see
`securestore.integrations.langgraph`): one securestore session per LangGraph thread, opened for
each write (its one-writer lock held while the write runs) or, with `hold`, kept open until
`close()`. Threads of this process queue on a local lock first, so they never spin on the file
lock; another process (or handle) holding the session gets `LockHeldError` after the store's
`lock_timeout_seconds`."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ..api.session import Session
from ..api.store import SecureStore
from ..errors import NotFoundError, PolicyError


class ThreadSessions:
    def __init__(self, store: SecureStore, workspace: str, hold: bool) -> None:
        self.store = store
        self.workspace = workspace
        self.hold = hold
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._held: dict[str, Session] = {}

    def close(self) -> None:
        """Release the sessions kept open (their writer locks)."""
        with self._guard:
            held, self._held = self._held, {}
        for session in held.values():
            session.close()

    def lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    @contextmanager
    def writing(self, key: str, *, create: bool) -> Iterator[Session | None]:
        """The thread's session, opened for writing (its lock held) for the block; None when it
        does not exist and `create` is false."""
        with self.lock_for(key):
            session: Session | None = self._held.get(key)
            if session is None:
                try:
                    session = self.store.open_session(
                        key, create=create,
                        metadata={"workspace": self.workspace, "agent": "langgraph"} if create else None)
                except NotFoundError:
                    if create:
                        raise
            keep = self.hold and session is not None
            try:
                yield session
            except PolicyError:
                raise  # refused before anything was written: the session is as it was
            except BaseException:
                keep = False  # after any other failure, start again from the files
                raise
            finally:
                if session is not None:
                    if keep:
                        self._held[key] = session
                    else:
                        self._held.pop(key, None)
                        session.close()

    def delete(self, key: str) -> None:
        """Delete the thread's session (releasing it first if held); a missing one is fine."""
        with self.lock_for(key):
            held = self._held.pop(key, None)
            if held is not None:
                held.close()
            try:
                self.store.delete_session(key)
            except NotFoundError:
                pass
