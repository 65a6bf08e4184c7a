"""Legacy session data (pure): what an import would bring in, and what it must refuse.

Two layouts: one `sessions.json` object map {sessionKey: entry} (OpenClaw-style gateways), and
a directory of per-session `<id>.json` files (many agent CLIs). An entry's transcript is its
`messages` / `items` / `transcript` list; `title|label|displayName`, `workspace|cwd`,
`agent|agentId` and `model` become metadata; everything else is kept as the slot `legacy.entry`.
Nothing here is trusted: keys and values go through the same policy as any write.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..config import Limits
from ..errors import PolicyError
from ..policy import check_value, normalize_key, parse_json_text
from ..secrets import contains_secret

MAX_LEGACY_FILE_BYTES = 64 * 1024 * 1024
_ITEM_FIELDS = ("messages", "items", "transcript")
_METADATA_FIELDS = {"title": ("title", "label", "displayName"), "workspace": ("workspace", "cwd"),
                    "agent": ("agent", "agentId"), "model": ("model",)}


@dataclass(frozen=True)
class LegacySession:
    key: str
    source: str  # where it came from: a map key or a file name (for reports)
    updated_ms: int
    items: list[dict[str, Any]]
    metadata: dict[str, str]
    extra: dict[str, Any]


@dataclass
class LegacyPlan:
    sessions: list[LegacySession] = field(default_factory=list)
    duplicates: list[tuple[str, str, str]] = field(default_factory=list)  # key, kept, dropped
    rejected: list[tuple[str, str]] = field(default_factory=list)  # source, why

    @property
    def items(self) -> int:
        return sum(len(s.items) for s in self.sessions)


def _updated_ms(entry: dict[str, Any]) -> int:
    value = entry.get("updatedAt", entry.get("updated_at", 0))
    if isinstance(value, bool):
        return 0
    if isinstance(value, (int, float)):
        return int(value * 1000) if value < 1e11 else int(value)  # seconds or milliseconds
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return 0
    return 0


def _session(raw_key: object, entry: object, source: str, limits: Limits) -> LegacySession:
    key = normalize_key(raw_key, what="legacy session key", max_bytes=limits.max_key_bytes)
    if contains_secret(key):
        raise PolicyError("the session key looks like it contains a credential")
    if not isinstance(entry, dict):
        raise PolicyError("the entry is not a JSON object")
    check_value(entry, _legacy_limits(limits))
    rest = dict(entry)
    items: list[dict[str, Any]] = []
    for name in _ITEM_FIELDS:
        if isinstance(rest.get(name), list):
            candidates = rest.pop(name)
            items = [item for item in candidates if isinstance(item, dict)]
            if len(items) != len(candidates):
                raise PolicyError(f"{name} holds something other than JSON objects")
            break
    metadata = {}
    for field_name, aliases in _METADATA_FIELDS.items():
        for alias in aliases:
            if isinstance(rest.get(alias), str) and rest[alias].strip():
                metadata[field_name] = rest.pop(alias)
                break
    return LegacySession(key, source, _updated_ms(entry), items, metadata, rest)


def _legacy_limits(limits: Limits) -> Limits:
    """A whole legacy entry may be as large as its file; each item is checked again on import."""
    return limits.model_copy(update={"max_value_bytes": MAX_LEGACY_FILE_BYTES, "max_nodes": 10_000_000})


def _describe(error: PolicyError) -> str:
    return str(error)  # policy messages name paths and rules, never values


def _add(plan: LegacyPlan, found: dict[str, LegacySession], raw_key: object, entry: object, source: str,
         limits: Limits) -> None:
    try:
        session = _session(raw_key, entry, source, limits)
    except PolicyError as error:
        plan.rejected.append((source, _describe(error)))
        return
    previous = found.get(session.key)
    if previous is None:
        found[session.key] = session
        return
    # Two entries normalize to one key: the newest updatedAt wins, and the report says so.
    keep, drop = (session, previous) if session.updated_ms > previous.updated_ms else (previous, session)
    found[session.key] = keep
    plan.duplicates.append((session.key, keep.source, drop.source))


def parse_session_map(data: bytes, limits: Limits) -> LegacyPlan:
    """A `sessions.json` object map."""
    document = parse_json_text(data, _legacy_limits(limits))
    if not isinstance(document, dict):
        raise PolicyError("sessions.json is not a JSON object map")
    plan, found = LegacyPlan(), dict[str, LegacySession]()
    for raw_key, entry in document.items():
        _add(plan, found, raw_key, entry, f"key {json.dumps(raw_key)[:60]}", limits)
    plan.sessions = sorted(found.values(), key=lambda s: s.key)
    return plan


def parse_session_files(files: list[tuple[str, bytes]], limits: Limits) -> LegacyPlan:
    """A directory of `<id>.json` files; the key is the entry's sessionKey/id, else the stem."""
    plan, found = LegacyPlan(), dict[str, LegacySession]()
    for name, data in files:
        try:
            entry = parse_json_text(data, _legacy_limits(limits))
        except PolicyError as error:
            plan.rejected.append((name, _describe(error)))
            continue
        raw_key = name.removesuffix(".json")
        if isinstance(entry, dict):
            for field_name in ("sessionKey", "session_key", "id"):
                if isinstance(entry.get(field_name), str):
                    raw_key = entry[field_name]
                    break
        _add(plan, found, raw_key, entry, name, limits)
    plan.sessions = sorted(found.values(), key=lambda s: s.key)
    return plan
