"""Where the ADK session service keeps things: the store keys, workspaces and slots of ADK apps,
users and sessions (the layout is described in `securestore.integrations.adk`).

`q(x)` is `x` percent-encoded with nothing kept but letters, digits and `_.-~`, so no two
different (app, user, session) triples ever share a key, whatever `:` they hold.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

from ..errors import UsageError

SESSION_SLOT = "adk.session"
STATE_SLOT = "adk.state"
STATE_WORKSPACE = "adk-state"  # app/user state sessions: never in a user's listing


def q(part: str, what: str) -> str:
    if not isinstance(part, str):
        raise UsageError(f"ADK {what} must be a string, got {type(part).__name__}")
    try:
        return quote(part, safe="")
    except UnicodeEncodeError:
        raise UsageError(f"ADK {what} is not valid Unicode (lone surrogate)") from None


def app_prefix(app_name: str) -> str:
    """The start of every session key of one app."""
    return f"adk:{q(app_name, 'app name')}:"


def session_key(app_name: str, user_id: str, session_id: str) -> str:
    return f"{app_prefix(app_name)}{q(user_id, 'user id')}:{q(session_id, 'session id')}"


def user_workspace(app_name: str, user_id: str) -> str:
    return f"{app_prefix(app_name)}{q(user_id, 'user id')}"


def app_state_key(app_name: str) -> str:
    return f"adk-app:{q(app_name, 'app name')}"


def user_state_key(app_name: str, user_id: str) -> str:
    return f"adk-user:{q(app_name, 'app name')}:{q(user_id, 'user id')}"


def split_key(key: str, prefix: str) -> tuple[str, str] | None:
    """(user id, session id) of a session key under `prefix` (`app_prefix(app)`), else None."""
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix):].split(":")
    if len(parts) != 2:
        return None
    user, session = parts  # most ids need no unquoting: skip the call (10,000 per listing)
    return (unquote(user) if "%" in user else user), (unquote(session) if "%" in session else session)
