"""`list_sessions` and `list_sessions_page` of the ADK session service, from the store's
listing index: `list_sessions` opens no session file (one pass over the index, the app and user
state read once); a page reads each listed session's own state (O(page))."""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from google.adk.sessions.base_session_service import ListSessionsResponse
from google.adk.sessions.session import Session as AdkSession

from ..api.store import SecureStore
from ..core.listing import SessionSummary
from ..errors import NotFoundError, UsageError
from .adk_keys import SESSION_SLOT, app_prefix, app_state_key, split_key, user_state_key, user_workspace
from .adk_state import merge, shared_state, slot_value

log = logging.getLogger("securestore.integrations.adk")
Found = list[tuple[SessionSummary, str, str]]  # (summary, user id, session id)


def summaries(store: SecureStore, app_name: str, user_id: str | None, page_size: int,
              cursor: str | None) -> tuple[Found, str | None]:
    """A page of this app's sessions from the index, and the cursor of the next one."""
    found: Found = []
    workspace = user_workspace(app_name, user_id) if user_id is not None else None
    prefix = app_prefix(app_name)
    while True:
        # Without a workspace the store pages over every session: ask for no more than are
        # still wanted, so a store page never holds a match this page would have to drop.
        page = store.list_sessions(page_size=page_size - len(found), cursor=cursor, workspace=workspace)
        if page.skipped:  # a damaged or stale index: the listing may miss sessions
            log.warning("securestore: listing skipped %d entries (first: %s: %s)", len(page.skipped),
                        page.skipped[0].name, page.skipped[0].reason)
        for summary in page.sessions:
            ids = split_key(summary.key, prefix)
            if ids is not None and (user_id is None or ids[0] == user_id):
                found.append((summary, *ids))
        cursor = page.next_cursor
        if cursor is None or len(found) >= page_size:
            return found, cursor


def listed(sid: str, app_name: str, user_id: str, state: dict[str, Any], updated: float) -> AdkSession:
    """A Session as `model_construct` makes it from fields already checked (the index's), without
    pydantic's per-object walk of the defaults: most of the cost of listing 10,000 sessions."""
    session = AdkSession.__new__(AdkSession)
    fields = {"id": sid, "app_name": app_name, "user_id": user_id, "state": state, "events": [],
              "last_update_time": updated}
    object.__setattr__(session, "__dict__", fields)
    object.__setattr__(session, "__pydantic_fields_set__", set(fields))
    object.__setattr__(session, "__pydantic_extra__", None)
    object.__setattr__(session, "__pydantic_private__", {"_storage_update_marker": None})
    return session


@contextmanager
def no_gc_pause() -> Iterator[None]:
    """Build many long-lived objects without the collector rescanning them as they pile up:
    measured after the core's listing cache, still half of a warm 10,000-session listing
    (164 ms with the collector, 77 without). Reference counting still frees everything; the
    collector is switched back on only if it was on."""
    was_on = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_on:
            gc.enable()


def list_all(store: SecureStore, resolve: bool, app_name: str, user_id: str | None) -> ListSessionsResponse:
    """Every session of the app (of one user), oldest update first; `state` holds the app state
    and, with a user, that user's state, never the session-scope state."""
    app_state = shared_state(store, resolve, app_state_key(app_name))
    user_state = shared_state(store, resolve, user_state_key(app_name, user_id)) if user_id is not None else {}
    state = merge(app_state, user_state, {})
    everything = store.config.limits.max_sessions + 1  # one pass over the index
    with no_gc_pause():
        found, _ = summaries(store, app_name, user_id, everything, None)
        found.sort(key=lambda row: (row[0].updated_ms, row[1], row[2]))
        return ListSessionsResponse(sessions=[listed(sid, app_name, user, dict(state), summary.updated_ms / 1000)
                                              for summary, user, sid in found])


def list_page(store: SecureStore, resolve: bool, app_name: str, user_id: str | None, page_size: int,
              cursor: str | None) -> tuple[list[AdkSession], str | None]:
    """One page, newest update first, each session with its whole merged state; events empty."""
    if page_size < 1:
        raise UsageError("page_size must be at least 1")
    found, next_cursor = summaries(store, app_name, user_id, page_size, cursor)
    app_state = shared_state(store, resolve, app_state_key(app_name))
    users: dict[str, dict[str, Any]] = {}
    sessions = []
    for summary, user, sid in found:
        if user not in users:
            users[user] = shared_state(store, resolve, user_state_key(app_name, user))
        try:
            record = slot_value(store, resolve, summary.key, SESSION_SLOT)
        except NotFoundError:
            continue  # deleted since the index was read
        own = record["state"] if isinstance(record, dict) else {}
        sessions.append(AdkSession(id=sid, app_name=app_name, user_id=user, events=[],
                                   state=merge(app_state, users[user], own),
                                   last_update_time=summary.updated_ms / 1000))
    return sessions, next_cursor
