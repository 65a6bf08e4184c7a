"""What the read API returns about sessions: plain, frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SessionInfo:
    key: str
    name: str
    created_ms: int
    updated_ms: int
    title: str | None
    slots: int


@dataclass(frozen=True)
class SessionView:
    key: str
    name: str
    metadata: dict[str, Any]
    revisions: int
    created_ms: int
    updated_ms: int
    items: int
    slots: list[str]
    lock_holder: str | None


@dataclass(frozen=True)
class SkippedEntry:
    name: str
    reason: str
