"""ADK state across its three scopes, for the ADK session service (`securestore.integrations.adk`).

Session-scope keys live in the ADK session's `adk.session` slot, `app:` keys in the `adk.state`
slot of `adk-app:<q(app)>`, `user:` keys in that of `adk-user:<q(app)>:<q(user)>`, all stored
without their prefix; `merge` puts the prefixes back. A write touching app or user keys is made
crash-safe by `commit`: the event, the session state and the shared deltas as `"pending"` in ONE
turn, then each shared scope, then the mark goes; `finish_pending` completes a cut-off one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

from google.adk.sessions.state import State

from ..api.session import Session
from ..api.store import SecureStore
from ..errors import KeyMaterialError, NotFoundError, SecretUnavailableError
from .adk_keys import SESSION_SLOT, STATE_SLOT, STATE_WORKSPACE, app_state_key, user_state_key

T = TypeVar("T")
log = logging.getLogger("securestore.integrations.adk")


# -- reads ---------------------------------------------------------------------------------------
def read(resolve: bool, fetch: Callable[[bool], T]) -> T:
    """`fetch(resolve)`; with `resolve`, references it cannot resolve (no master key, a value
    dropped at write time) come back as references, with a warning."""
    if not resolve:
        return fetch(False)
    try:
        return fetch(True)
    except (SecretUnavailableError, KeyMaterialError) as exc:
        log.warning("securestore: returning secret references unresolved: %s", exc)
        return fetch(False)


def slot_value(store: SecureStore, resolve: bool, key: str, slot: str) -> Any:
    return read(resolve, lambda wanted: store.get(key, slot, resolve=wanted))


def shared_state(store: SecureStore, resolve: bool, key: str) -> dict[str, Any]:
    """The state of one shared scope (app or user), without prefixes; {} when never written."""
    try:
        state = slot_value(store, resolve, key, STATE_SLOT)
    except NotFoundError:
        return {}
    return dict(state) if isinstance(state, dict) else {}


def merge(app_state: dict[str, Any], user_state: dict[str, Any], session_state: dict[str, Any]) -> dict[str, Any]:
    merged = dict(session_state)
    merged.update({State.APP_PREFIX + key: value for key, value in app_state.items()})
    merged.update({State.USER_PREFIX + key: value for key, value in user_state.items()})
    return merged


def merged_state(store: SecureStore, resolve: bool, app_name: str, user_id: str,
                 own: dict[str, Any]) -> dict[str, Any]:
    """A session's whole state: its own keys, then the app's and the user's, prefixed."""
    return merge(shared_state(store, resolve, app_state_key(app_name)),
                 shared_state(store, resolve, user_state_key(app_name, user_id)), own)


def for_update(store: SecureStore, handle: Session, slot: str) -> Any:
    """A slot's value to merge into and write back: with the secrets' values when the store
    can resolve them, so writing it back re-vaults them instead of storing reference text."""
    if store.has_master_key:
        try:
            return handle.slot(slot).get(resolve=True)
        except (SecretUnavailableError, KeyMaterialError):
            pass  # a value dropped at write time (no master key then): keep its reference
    return handle.slot(slot).get()


def record_for_update(store: SecureStore, handle: Session) -> dict[str, Any] | None:
    """The session's `adk.session` record (None: created, then crashed before its first write)."""
    record = for_update(store, handle, SESSION_SLOT)
    return dict(record) if isinstance(record, dict) else None


# -- writes (the caller holds the ADK session's writer lock) -------------------------------------
def update_shared(store: SecureStore, key: str, delta: dict[str, Any]) -> None:
    """One atomic write of a shared scope's delta (a dict update: applying it twice is harmless)."""
    if not delta:
        return
    with store.open_session(key, create=True, metadata={"workspace": STATE_WORKSPACE}) as handle:
        current = for_update(store, handle, STATE_SLOT) or {}
        handle.slot(STATE_SLOT).put({**current, **delta})


def finish_pending(store: SecureStore, handle: Session, app_name: str, user_id: str,
                   record: dict[str, Any]) -> None:
    """Apply the shared deltas a turn recorded (lock order is always session, app, user), then
    drop the mark."""
    shared = record.pop("pending")
    update_shared(store, app_state_key(app_name), shared.get("app") or {})
    update_shared(store, user_state_key(app_name, user_id), shared.get("user") or {})
    handle.slot(SESSION_SLOT).put(record)


def commit(store: SecureStore, handle: Session, app_name: str, user_id: str, record: dict[str, Any],
           deltas: dict[str, dict[str, Any]], item: dict[str, Any] | None, *, write_record: bool) -> None:
    """The crash-ordered write: event + session state + pending shared deltas in ONE turn; then
    each shared scope; then the pending mark goes."""
    shared = {"app": deltas["app"], "user": deltas["user"]}
    pending = bool(shared["app"] or shared["user"])
    if pending:
        record["pending"] = shared
    with handle.turn():
        if item is not None:
            handle.append_items([item])
        if pending or write_record:
            handle.slot(SESSION_SLOT).put(record)
    if pending:
        finish_pending(store, handle, app_name, user_id, record)


def recover(store: SecureStore, key: str, app_name: str, user_id: str) -> None:
    """Finish the shared writes a crash cut off after the turn of session `key`."""
    with store.open_session(key) as handle:
        record = record_for_update(store, handle)
        if record is not None and "pending" in record:
            finish_pending(store, handle, app_name, user_id, record)
