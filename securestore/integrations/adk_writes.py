"""The ADK session service's session writes: create, append (with the stale-copy check) and
delete. Each runs in one worker thread and takes the ADK session's writer lock for the call
(see `securestore.integrations.adk` for the revision marker and the crash order)."""

from __future__ import annotations

import secrets
from typing import Any

from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError as AdkAlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.sessions.session import Session as AdkSession

from ..api.store import SecureStore
from ..errors import AlreadyExistsError, NotFoundError
from .adk_keys import SESSION_SLOT, user_workspace
from .adk_state import commit, finish_pending, merged_state, read, record_for_update


def create(store: SecureStore, resolve: bool, app_name: str, user_id: str, sid: str, key: str,
           deltas: dict[str, dict[str, Any]]) -> AdkSession:
    try:
        handle = store.create_session(key, metadata={"workspace": user_workspace(app_name, user_id)})
    except AlreadyExistsError:
        handle = store.open_session(key)
        if handle.slot(SESSION_SLOT).version != 0:
            handle.close()
            raise AdkAlreadyExistsError(f"Session with id {sid} already exists.") from None
        # else: a creation that crashed before its first write: taken over
    with handle:
        now = store.now_ms() / 1000
        record: dict[str, Any] = {"incarnation": secrets.token_hex(8), "created": now, "state": deltas["session"]}
        commit(store, handle, app_name, user_id, record, deltas, None, write_record=True)
        state = read(resolve, lambda wanted: handle.slot(SESSION_SLOT).get(resolve=wanted))["state"]
    session = AdkSession(id=sid, app_name=app_name, user_id=user_id, events=[], last_update_time=now,
                         state=merged_state(store, resolve, app_name, user_id, state))
    session._storage_update_marker = f"{record['incarnation']}:0"
    return session


def is_current(session: AdkSession, stored: str, last: dict[str, Any] | None) -> bool:
    """Whether `session` was read at the stored revision: by its marker, or, for a copy not read
    through the service (no marker), by ending with the stored last event."""
    if session._storage_update_marker is not None:
        return session._storage_update_marker == stored
    fresh = last["event"].get("id") if last else None
    return fresh == (session.events[-1].id if session.events else None)


def append(store: SecureStore, session: AdkSession, key: str, item: dict[str, Any],
           deltas: dict[str, dict[str, Any]]) -> str:
    """Append one event (and its state deltas) to a current copy; returns the new marker."""
    try:
        handle = store.open_session(key)
    except NotFoundError:
        raise SessionNotFoundError(f"Session {session.id} not found.") from None
    with handle:
        record = record_for_update(store, handle)
        if record is None:
            raise SessionNotFoundError(f"Session {session.id} not found.")
        if "pending" in record:
            finish_pending(store, handle, session.app_name, session.user_id, record)
        last = handle.items(1)
        rev = int(last[0]["rev"]) if last else 0
        if not is_current(session, f"{record['incarnation']}:{rev}", last[0] if last else None):
            raise StaleSessionError(
                f"session {session.id} changed in storage after this copy was read (stored revision {rev});"
                " read it again with get_session and retry")
        if deltas["session"]:
            record["state"] = {**record["state"], **deltas["session"]}
        commit(store, handle, session.app_name, session.user_id, record, deltas, {"rev": rev + 1, "event": item},
               write_record=bool(deltas["session"]))
        return f"{record['incarnation']}:{rev + 1}"


def delete(store: SecureStore, key: str) -> None:
    try:
        store.delete_session(key)
    except NotFoundError:
        pass  # ADK: deleting a missing session is not an error
