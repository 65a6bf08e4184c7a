"""`get_session` of the ADK session service: the events asked for (`num_recent_events`,
`after_timestamp`) read from the transcript's tail, O(wanted), and the session's merged state.
No lock is taken; a session whose shared deltas a crash left pending is completed first."""

from __future__ import annotations

from typing import Any

import orjson
from google.adk.events.event import Event
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.sessions.session import Session as AdkSession

from ..api.store import SecureStore
from ..errors import NotFoundError
from .adk_keys import SESSION_SLOT
from .adk_state import merged_state, read, recover, slot_value

FIRST_READ = 16  # after_timestamp without a count: tail reads double from here


def to_event(item: Any) -> Event:
    return Event.model_validate_json(orjson.dumps(item["event"]))


def _timestamp(item: Any) -> float:
    return float(item["event"].get("timestamp", 0.0))


def tail(store: SecureStore, resolve: bool, key: str,
         config: GetSessionConfig | None) -> tuple[list[Any], list[Any]]:
    """(the items read, the ones wanted): the latest item always comes along (its rev is the
    marker); reads are O(wanted), never the whole transcript unless all of it is wanted.
    `after_timestamp` assumes timestamps do not decrease in append order."""
    count = config.num_recent_events if config else None
    after = config.after_timestamp if config else None

    def items(limit: int | None) -> list[Any]:
        return read(resolve, lambda wanted: store.read_items(key, limit, resolve=wanted))

    if after is None:
        raw = items(1 if count == 0 else count)
        return raw, [] if count == 0 else raw
    if count is not None:
        raw = items(max(count, 1))
    else:
        limit = FIRST_READ
        while True:
            raw = items(limit)
            if len(raw) < limit or _timestamp(raw[0]) < after:
                break
            limit *= 2
    wanted = [item for item in raw if _timestamp(item) >= after]
    if count is not None:
        wanted = wanted[len(wanted) - count:] if count else []
    return raw, wanted


def get_session(store: SecureStore, resolve: bool, app_name: str, user_id: str, sid: str, key: str,
                config: GetSessionConfig | None) -> AdkSession | None:
    try:
        # The events first, then the state: a racing writer then makes this copy stale
        # (its marker is older than the stored one), never silently current.
        raw, wanted = tail(store, resolve, key, config)
        record = slot_value(store, resolve, key, SESSION_SLOT)
        if isinstance(record, dict) and "pending" in record:  # a crash cut an append short
            recover(store, key, app_name, user_id)
            raw, wanted = tail(store, resolve, key, config)
            record = slot_value(store, resolve, key, SESSION_SLOT)
    except NotFoundError:
        return None
    if not isinstance(record, dict):
        return None  # created, then crashed before its first write
    rev = int(raw[-1]["rev"]) if raw else 0
    last_update = _timestamp(raw[-1]) if raw else float(record["created"])
    session = AdkSession(id=sid, app_name=app_name, user_id=user_id, last_update_time=last_update,
                         events=[to_event(item) for item in wanted],
                         state=merged_state(store, resolve, app_name, user_id, record["state"]))
    session._storage_update_marker = f"{record['incarnation']}:{rev}"
    return session
