"""Legacy session data (pure): what an import would bring in, and what it must refuse.

Two layouts: one `sessions.json` object map {sessionKey: entry} (OpenClaw-style gateways), and
a directory of per-session `<id>.json` files (many agent CLIs). An entry's transcript is its
`messages` / `items` / `transcript` list; `title|label|displayName`, `workspace|cwd`,
`agent|agentId` and `model` become metadata; everything else is kept as the slot `legacy.entry`.
Nothing here is trusted: keys and values go through the same policy as any write, and every text
a report shows (labels, reasons) goes through the same redaction as stored data.

Files are taken one at a time: a plan keeps a summary per session (its key, where it is, the
file's stamp, its item count and the precheck verdict), never its content, so planning N files
needs the memory of one. An import reads each session again from its file (`load_session`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..config import Limits
from ..errors import IntegrityError, PolicyError, SecretInKeyError, SecureStoreError
from .policy import check_value, normalize_key, parse_json_text
from .secrets import REFERENCE, contains_secret, redact
from .secrets.markers import unescape_text
from .secrets.vault import fingerprint

MAX_LEGACY_FILE_BYTES = 64 * 1024 * 1024
_ITEM_FIELDS = ("messages", "items", "transcript")
_METADATA_FIELDS = {"title": ("title", "label", "displayName"), "workspace": ("workspace", "cwd"),
                    "agent": ("agent", "agentId"), "model": ("model",)}
_KEY_LABEL_CHARS = 60
_EVERY_SECRET = 1 << 62  # report text has no secret cap: all of them are redacted
# (device, inode, size, mtime_ns, ctime_ns) of a file as it was read: securestore.fs.FileStamp.
FileStamp = tuple[int, int, int, int, int]


class ReportText:
    """Report and error text, redacted exactly as stored data is, each secret shown as
    `[secret:redacted:<keyed fingerprint>]`: equal values correlate, nothing else is revealed.
    Applying it again changes nothing (references it made are kept as they are)."""

    def __init__(self, fingerprint_key: bytes) -> None:
        self._key = fingerprint_key

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        # surrogatepass: a file name or JSON key may hold a lone surrogate (same bytes otherwise).
        raw = value.encode("utf-8", "surrogatepass") if isinstance(value, str) else value
        return "redacted", fingerprint(self._key, raw)

    def __call__(self, text: str) -> str:
        pieces: list[str] = []
        last = 0
        for match in REFERENCE.finditer(text):
            if match.group(1) == "redacted":  # made by an earlier pass; any other scheme is escaped
                pieces += [self._redact(text[last : match.start()]), match.group(0)]
                last = match.end()
        pieces.append(self._redact(text[last:]))
        return "".join(pieces)

    def _redact(self, text: str) -> str:
        if not text:
            return text
        return str(redact(unescape_text(text), self, max_secrets=_EVERY_SECRET).value)


def shorten(text: str, limit: int) -> str:
    """At most `limit` characters (plus `...`), never cutting a secret reference in two."""
    if len(text) <= limit:
        return text
    cut = limit
    for match in REFERENCE.finditer(text):
        if match.start() < cut < match.end():
            cut = match.end()
    return text[:cut] + "..." if cut < len(text) else text


@contextmanager
def redacted_errors(report: ReportText) -> Iterator[None]:
    """Errors raised inside carry a redacted message (legacy file names may hold anything)."""
    try:
        yield
    except SecureStoreError as error:
        raise type(error)(report(str(error))) from None


@dataclass(frozen=True)
class LegacySession:
    """One legacy session's content: it exists only while its file is being read."""

    key: str
    source: str  # where it came from: a map key or a file name (for reports, redacted)
    updated_ms: int
    items: list[dict[str, Any]]
    metadata: dict[str, str]
    extra: dict[str, Any]


@dataclass(frozen=True)
class SessionSummary:
    """What a plan keeps of a session: enough to report it, check it and read it again."""

    key: str
    source: str  # for reports (redacted): a map key or a file name
    file: str  # the file that holds it (the map file itself for sessions.json)
    entry: str | None  # its key in the sessions.json map; None when the whole file is the entry
    stamp: FileStamp  # the file as it was read: it is imported only if it is still the same
    updated_ms: int
    items: int
    problem: tuple[type[PolicyError], str] | None = None  # what precheck refuses (redacted text)


@dataclass
class LegacyPlan:
    sessions: list[SessionSummary] = field(default_factory=list)
    duplicates: list[tuple[str, str, str]] = field(default_factory=list)  # key, kept, dropped
    rejected: list[tuple[str, str]] = field(default_factory=list)  # source, why

    @property
    def items(self) -> int:
        return sum(s.items for s in self.sessions)

    @property
    def problems(self) -> list[tuple[str, str]]:
        """(source, why) of the sessions precheck will refuse."""
        return [(s.source, s.problem[1]) for s in self.sessions if s.problem is not None]


# Raises the PolicyError that precheck must raise for this content (see importer.check_session).
SessionCheck = Callable[[LegacySession], None]


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
        raise SecretInKeyError("the session key looks like it contains a credential")
    if not isinstance(entry, dict):
        raise PolicyError("the entry is not a JSON object")
    # hide: a path through an object key that holds a credential prints that key as [?].
    check_value(entry, _legacy_limits(limits), hide=contains_secret)
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


def _file_key(name: str, entry: object) -> object:
    """A directory file's session key: the entry's sessionKey/id, else the file name's stem."""
    if isinstance(entry, dict):
        for field_name in ("sessionKey", "session_key", "id"):
            if isinstance(entry.get(field_name), str):
                return entry[field_name]
    return name.removesuffix(".json")


def map_document(data: bytes, limits: Limits) -> dict[str, Any]:
    """The parsed `sessions.json` object map."""
    document = parse_json_text(data, _legacy_limits(limits))
    if not isinstance(document, dict):
        raise PolicyError("sessions.json is not a JSON object map")
    return document


class PlanBuilder:
    """Builds a plan one file at a time. Each session is checked (`check`) while its content is
    in memory; the plan keeps its summary and the verdict, and the content is dropped."""

    def __init__(self, limits: Limits, report: ReportText, check: SessionCheck) -> None:
        self._limits = limits
        self._report = report
        self._check = check
        self._found: dict[str, SessionSummary] = {}
        self._plan = LegacyPlan()

    def add_map(self, name: str, data: bytes, stamp: FileStamp) -> None:
        """A `sessions.json` object map: every session in one file."""
        for raw_key, entry in map_document(data, self._limits).items():
            # Redact before cutting: a cut secret is no longer recognised, and its rest would show.
            source = "key " + shorten(json.dumps(self._report(raw_key)), _KEY_LABEL_CHARS)
            self._add(raw_key, entry, source, name, raw_key, stamp)

    def add_file(self, name: str, data: bytes, stamp: FileStamp) -> None:
        """One `<id>.json` file of a directory."""
        source = self._report(name)
        try:
            entry = parse_json_text(data, _legacy_limits(self._limits))
        except PolicyError as error:
            self._plan.rejected.append((source, self._report(str(error))))
            return
        self._add(_file_key(name, entry), entry, source, name, None, stamp)

    def plan(self) -> LegacyPlan:
        self._plan.sessions = sorted(self._found.values(), key=lambda s: s.key)
        return self._plan

    def _add(self, raw_key: object, entry: object, source: str, file: str, map_key: str | None,
             stamp: FileStamp) -> None:
        try:
            session = _session(raw_key, entry, source, self._limits)
        except PolicyError as error:
            self._plan.rejected.append((source, self._report(str(error))))
            return
        summary = SessionSummary(session.key, source, file, map_key, stamp, session.updated_ms, len(session.items),
                                 self._verdict(session))
        previous = self._found.get(summary.key)
        if previous is None:
            self._found[summary.key] = summary
            return
        # Two entries normalize to one key: the newest updatedAt wins, and the report says so.
        keep, drop = (summary, previous) if summary.updated_ms > previous.updated_ms else (previous, summary)
        self._found[summary.key] = keep
        self._plan.duplicates.append((summary.key, keep.source, drop.source))

    def _verdict(self, session: LegacySession) -> tuple[type[PolicyError], str] | None:
        try:
            self._check(session)
        except PolicyError as error:
            return type(error), self._report(str(error))
        return None


def load_session(data: bytes, summary: SessionSummary, limits: Limits) -> LegacySession:
    """A planned session again, from its directory file's bytes (the caller checked the stamp)."""
    entry = parse_json_text(data, _legacy_limits(limits))
    return _same(_session(_file_key(summary.file, entry), entry, summary.source, limits), summary)


def session_in_map(document: dict[str, Any], summary: SessionSummary, limits: Limits) -> LegacySession:
    """A planned session again, from the parsed sessions.json map (see map_document)."""
    if summary.entry is None or summary.entry not in document:
        raise IntegrityError(f"legacy {summary.source} is no longer in the map; nothing was imported")
    return _same(_session(summary.entry, document[summary.entry], summary.source, limits), summary)


def _same(session: LegacySession, summary: SessionSummary) -> LegacySession:
    if session.key != summary.key or len(session.items) != summary.items:
        raise IntegrityError(f"legacy {summary.source} no longer holds the session that was checked; "
                             "nothing was imported: inspect it and run the import again")
    return session
