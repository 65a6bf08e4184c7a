"""Reads: what a session holds, rendered for the caller. Secret references stay markers
unless `resolve=True`; then ONE resolver puts the values back (env references from the
environment, vault references from the session's vault, never a dropped value)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..backends.base import SessionReadable
from ..backends.local.store_dir import StoreDir
from ..core.policy import describe_key, is_session_name, session_name, slot_key
from ..core.secrets import resolve_value, unescape_value
from ..core.secrets.vault import Vault, unseal
from ..errors import (
    IntegrityError,
    KeyMaterialError,
    LayoutVersionError,
    LimitExceededError,
    NotFoundError,
    ResumeMismatchError,
    SecretUnavailableError,
    UnsafeFileError,
    UsageError,
)
from .views import SessionInfo, SessionView, SkippedEntry

VaultSource = Callable[[], tuple[Vault | None, bytes] | None]
Lookup = Callable[[str, str], str | bytes]


def resolver(name: str, environ: Mapping[str, str], has_master_key: bool, stored: VaultSource,
             in_memory: Callable[[], tuple[Vault, bytes] | None] = lambda: None) -> Lookup:
    """`stored` loads the vault from the files (once, on first need); `in_memory` is a writer's
    vault, which may hold entries a turn has sealed but not committed yet."""
    cache: list[tuple[Vault | None, bytes] | None] = []

    def lookup(scheme: str, ident: str) -> str | bytes:
        if scheme == "env":
            value = environ.get(ident)
            if value is None:
                raise SecretUnavailableError(f"env reference {ident} is not set in the environment")
            return value
        if scheme == "redacted":
            raise SecretUnavailableError(
                f"reference redacted:{ident} cannot be resolved: the value was dropped (no master key at write time)")
        staged = in_memory()
        if staged is not None and ident in staged[0].entries:
            return unseal(staged[0], staged[1], ident)
        if not has_master_key:
            raise KeyMaterialError("resolving vault references needs the master key")
        if not cache:
            cache.append(stored())
        found = cache[0]
        if found is None or found[0] is None:
            raise SecretUnavailableError(f"session {name} has no vault to resolve the reference from")
        return unseal(found[0], found[1], ident)

    return lookup


def render(value: Any, lookup: Callable[[], Lookup] | None) -> Any:
    """A stored value for the caller: new containers (callers cannot alter stored state), with
    references as `[secret:...]` markers, or (with a lookup) the secret values put back."""
    if lookup is None:
        return unescape_value(value)
    return resolve_value(value, lookup())


class Reads:
    """The read recipes of one store handle: no lock taken, nothing repaired or written."""

    def __init__(self, backend: StoreDir, environ: Mapping[str, str]) -> None:
        self._backend, self._environ = backend, environ

    def _key(self, session: str) -> tuple[str, str]:
        return session_name(session, self._backend.env.limits.max_key_bytes)

    def _lookup(self, session: SessionReadable) -> Callable[[], Lookup]:
        return lambda: resolver(describe_key(session.key, session.name), self._environ, self._backend.env.master_key is not None,
                                session.stored_vault)

    def get(self, session: str, slot: str, *, resolve: bool, default: Any) -> Any:
        ext_id = slot_key(slot, self._backend.env.limits.max_key_bytes)
        with self._backend.read_session(*self._key(session)) as opened:
            envelope = opened.slot(ext_id)
            if envelope is None:
                return default
            return render(envelope.payload, self._lookup(opened) if resolve else None)

    def slots(self, session: str) -> list[str]:
        with self._backend.read_session(*self._key(session)) as opened:
            return opened.slot_names()

    def history(self, session: str) -> list[dict[str, Any]]:
        with self._backend.read_session(*self._key(session)) as opened:
            return [render(revision.model_dump(), None) for revision in opened.revisions]

    def items(self, session: str, limit: int | None, *, resolve: bool) -> list[Any]:
        if limit is not None and limit < 0:
            raise UsageError("limit must be 0 or more")
        with self._backend.read_session(*self._key(session)) as opened:
            lookup = self._lookup(opened) if resolve else None
            return [render(item, lookup) for item in opened.items(limit)]

    def describe(self, session: str) -> SessionView:
        with self._backend.read_session(*self._key(session)) as opened:
            latest = opened.manifest
            return SessionView(
                key=latest.key, name=opened.name, metadata=render(latest.metadata.model_dump(), None),
                revisions=len(opened.revisions), created_ms=latest.created_ms, updated_ms=latest.updated_ms,
                items=opened.item_count(), slots=opened.slot_names(), lock_holder=opened.lock_holder(),
            )

    def scan(self) -> tuple[list[SessionInfo], list[SkippedEntry]]:
        """Every session, by reading every session directory: O(n). A directory whose name does
        not re-encode from its manifest key is skipped and reported."""
        backend = self._backend
        found: list[SessionInfo] = []
        skipped: list[SkippedEntry] = []
        for name in backend.entry_names():
            if not is_session_name(name):
                skipped.append(SkippedEntry(name, "not a session name"))
                continue
            try:
                with backend.read_session(None, name) as opened:
                    manifest, slots = opened.manifest, opened.slot_count()
            except (IntegrityError, UnsafeFileError, NotFoundError, ResumeMismatchError, LayoutVersionError) as exc:
                skipped.append(SkippedEntry(name, str(exc)))
                continue
            found.append(SessionInfo(manifest.key, name, manifest.created_ms, manifest.updated_ms,
                                     manifest.metadata.title, slots))
            if len(found) > backend.env.limits.max_sessions:
                raise LimitExceededError(f"more than {backend.env.limits.max_sessions} session directories; "
                                         "refusing to scan further")
        found.sort(key=lambda info: (info.created_ms, info.key))
        return found, skipped
