"""Google ADK session service on securestore: `SecureStoreSessionService(store)`.

A drop-in `google.adk.sessions.BaseSessionService` (extra `adk`): pass it to
`Runner(session_service=...)`. It takes an open `SecureStore` or `AsyncSecureStore`; every store
call runs in a worker thread, so the event loop never waits on a lock or an fsync.

What is stored where (`q(x)` is `x` percent-encoded with nothing kept but letters, digits and
`_.-~`, so no two different (app, user, session) triples ever share a key, whatever `:` they hold):

- An ADK session is the store session `adk:<q(app)>:<q(user)>:<q(session id)>`, its metadata
  `workspace` set to `adk:<q(app)>:<q(user)>` (the exact-match filter of the listing index).
  Each event is one transcript item `{"rev": n, "event": <event.model_dump_json(exclude_none=True)>}`
  (the n-th event of the session); `get_session(num_recent_events=k)` reads the last k items only
  (O(k)). The slot `adk.session` holds `{"incarnation", "created", "state"}`: the session-scope
  state (keys without a prefix), and while a shared-state write is in flight, `"pending"`.
- App state (`app:` keys) is the slot `adk.state` of the store session `adk-app:<q(app)>`, user
  state (`user:` keys) that of `adk-user:<q(app)>:<q(user)>`: each scope has its own writer lock,
  and counts against `Limits.max_sessions`. Keys are stored without their prefix; reads merge
  them back with the prefix. `temp:` keys are never written anywhere.

Stale writers. A session read through this service carries the marker `<incarnation>:<rev>`.
`append_event` takes the session's writer lock for the call and refuses with `StaleSessionError`
when the stored marker differs (another writer appended since this copy was read, or the session
was deleted and created again): a revision, not ADK's float timestamps (google/adk-python#3717),
so two runners on one session, in one process or several, get a clear error and never
interleave events (#4751). A writer that holds the lock past the store's `lock_timeout_seconds`
makes the other's call fail with securestore's `LockHeldError` naming it. A session object built
by hand (no marker) must end with the stored session's last event. Reads (`get_session`,
`list_sessions`) take no lock. Each `append_event` costs one session open (lock taken, released)
and one atomic turn, plus one write per shared scope it touches and one to drop the mark below.

Crash safety of one `append_event` (or a `create_session` with state): 1) ONE atomic turn in the
ADK session: the event item, the new session-scope state and, if app or user keys changed,
`"pending": {app delta, user delta}`; 2) the app delta, then the user delta, each one atomic
write under that scope's lock; 3) `"pending"` removed. The call returns after 3. A crash after 1
leaves the event durable and the shared deltas pending: the next `append_event`/`get_session` on
that session applies them (a dict update, so applying twice is harmless) before anything else.
Until then, other sessions read the shared state without them, and a later write by another
session to the same shared key is overwritten by the older pending value (a window that only a
crash opens).

Secrets. Every value written (event content, state) is scanned; a secret is replaced by a
reference `[secret:vault:...]` before it reaches the disk (encrypted into the session's vault
when the store has a master key). By default every read returns references: on the next turn
the model sees `[secret:vault:...]`, never the value. With `resolve_secrets=True`, `get_session`,
`list_sessions_page` and `get_user_state` return the values (the master key is needed): the model
sees them, the disk still holds only references.

Divergences from ADK's SQL services, on purpose:
- `list_sessions` reads only the listing index, in one pass over its lines: no session file is
  opened, whatever the number of sessions (a session whose app, user and id add up to more than
  about 400 bytes does not fit its index line, and costs one index entry read). Each session's
  `last_update_time` is the store's time of its latest write (milliseconds), not the latest
  event's timestamp; its `state` holds the app state, and with a
  `user_id` that user's state, but NOT the session-scope state (that would open every session;
  ADK's `ListSessionsResponse` says states are not set). `list_sessions_page` returns the whole
  merged state of a page (O(page) reads), newest first (the index order).
- Events come back in append order (ADK's SQL services re-sort by float timestamp);
  `after_timestamp` assumes timestamps do not decrease in append order (one runner's do not).
- A session id is `.strip()`ped, as ADK's InMemory and SQLite services do.
- `list_sessions` shows a session whose creation crashed before its first write (it holds no
  `adk.session` slot); `get_session` returns None for it and `create_session` takes it over.

Code: `adk_keys` (the layout above), `adk_state` (scopes, merge, the crash-ordered commit and its
recovery), `adk_writes` (create, append, delete), `adk_events` (get_session), `adk_listing`.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
from google.adk.events.event import Event
from google.adk.sessions import _session_util
from google.adk.sessions.base_session_service import BaseSessionService, GetSessionConfig, ListSessionsResponse
from google.adk.sessions.session import Session as AdkSession

from ..api.store import SecureStore
from . import adk_events, adk_listing, adk_state, adk_writes
from ._handles import StoreHandle, as_async
from .adk_keys import SESSION_SLOT, STATE_SLOT, app_state_key, session_key, user_state_key, user_workspace

__all__ = ["SESSION_SLOT", "STATE_SLOT", "SecureStoreSessionService", "app_state_key", "session_key",
           "user_state_key", "user_workspace"]


class SecureStoreSessionService(BaseSessionService):
    """ADK sessions, events and app/user/session state in a securestore (see the module doc)."""

    def __init__(self, store: StoreHandle, *, resolve_secrets: bool = False) -> None:
        self._astore = as_async(store)
        self._resolve = resolve_secrets

    @property
    def _store(self) -> SecureStore:
        return self._astore.sync

    async def create_session(self, *, app_name: str, user_id: str, state: dict[str, Any] | None = None,
                             session_id: str | None = None) -> AdkSession:
        sid = (session_id or "").strip() or str(uuid.uuid4())
        key = session_key(app_name, user_id, sid)
        deltas = _session_util.extract_json_safe_state_delta(state or {})
        # A write, once started, finishes in its thread even if the caller is cancelled (aio).
        return await self._astore.run_write(
            "adk.create_session", key,
            lambda: adk_writes.create(self._store, self._resolve, app_name, user_id, sid, key, deltas))

    async def get_session(self, *, app_name: str, user_id: str, session_id: str,
                          config: GetSessionConfig | None = None) -> AdkSession | None:
        sid = session_id.strip()
        key = session_key(app_name, user_id, sid)
        return await asyncio.to_thread(adk_events.get_session, self._store, self._resolve, app_name, user_id,
                                       sid, key, config)

    async def list_sessions(self, *, app_name: str, user_id: str | None = None) -> ListSessionsResponse:
        """Every session of the app (of one user, or of all users when `user_id` is None),
        oldest update first, from the listing index alone (see the module doc for `state`)."""
        return await asyncio.to_thread(adk_listing.list_all, self._store, self._resolve, app_name, user_id)

    async def list_sessions_page(self, *, app_name: str, user_id: str | None = None, page_size: int = 50,
                                 cursor: str | None = None) -> tuple[list[AdkSession], str | None]:
        """One page, newest update first, and the cursor of the next page (None at the end).
        Each session carries its whole merged state (one read per listed session); events are
        empty. A cursor is valid for the same app and user_id only."""
        return await asyncio.to_thread(adk_listing.list_page, self._store, self._resolve, app_name, user_id,
                                       page_size, cursor)

    async def delete_session(self, *, app_name: str, user_id: str, session_id: str) -> None:
        key = session_key(app_name, user_id, session_id.strip())
        await self._astore.run_write("adk.delete_session", key, lambda: adk_writes.delete(self._store, key))

    async def get_user_state(self, *, app_name: str, user_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(adk_state.shared_state, self._store, self._resolve,
                                       user_state_key(app_name, user_id))

    async def append_event(self, session: AdkSession, event: Event) -> Event:
        if event.partial:
            return event
        self._apply_temp_state(session, event)
        event = self._trim_temp_delta_state(event)
        delta = event.actions.state_delta if event.actions else None
        deltas = _session_util.extract_json_safe_state_delta(delta or {})
        item = orjson.loads(event.model_dump_json(exclude_none=True))
        key = session_key(session.app_name, session.user_id, session.id)
        marker = await self._astore.run_write(
            "adk.append_event", key, lambda: adk_writes.append(self._store, session, key, item, deltas))
        session._storage_update_marker = marker
        session.last_update_time = event.timestamp
        return self._commit_event_to_session(session, event)
