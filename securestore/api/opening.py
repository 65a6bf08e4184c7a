"""Opening a session for writing: the key checked once, the session created under the store
lock if asked (its first metadata revision written with it when it holds no secret), then
opened with its lock, recovered, and handed to a `Session`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..backends.local.store_dir import Listing, StoreDir
from ..core.policy import check_value, session_name
from ..core.records import SessionMetadata
from ..core.secrets import SECRET_TYPES, contains_secret, redact
from ..config import Limits
from ..errors import InvalidValueError, LimitExceededError, PolicyError
from .session import Session, SessionHooks

RecordRejection = Callable[[str, object, PolicyError], None]


def open_session(backend: StoreDir, key: str, *, create: bool, metadata: Mapping[str, Any] | None,
                 hooks: SessionHooks, record_rejection: RecordRejection,
                 on_create: Callable[[Session], None], exclusive: bool = False,
                 listing: Listing | None = None) -> Session:
    """`exclusive`: the session must be created here (AlreadyExistsError if it exists by the
    time the store lock is taken; the caller checked it did not before)."""
    backend.writable()
    try:
        normalized, name = session_name(key, backend.env.limits.max_key_bytes)
        deferred, created = None, None
        if create and (exclusive or not backend.session_exists(name)):
            initial = initial_metadata(metadata, backend.env.limits)
            deferred = metadata if initial is None else None
            created = backend.create_session(normalized, initial or SessionMetadata(), exclusive=exclusive,
                                             listing=listing)
    except PolicyError as error:
        record_rejection("session.create" if create else "session.open", key, error)
        raise
    handle = Session(created if created is not None else backend.open_session(normalized, name), hooks)
    try:
        if created is not None:
            on_create(handle)
        if deferred:
            handle.update_metadata(**deferred)
    except BaseException:
        handle.close()
        raise
    return handle


def initial_metadata(metadata: Mapping[str, Any] | None, limits: Limits) -> SessionMetadata | None:
    """Metadata for revision 1, or None when it holds a secret: that needs the session's
    vault, so it is written as revision 2 once the session exists."""
    if not metadata:
        return SessionMetadata()
    unknown = set(metadata) - set(SessionMetadata.model_fields)
    if unknown:
        raise InvalidValueError(f"unknown metadata field(s): {', '.join(sorted(unknown))}")
    check_value(dict(metadata), limits, leaf_types=SECRET_TYPES, hide=contains_secret)
    try:
        redacted = redact(dict(metadata), _NoSecretsSink(), max_secrets=0).value
    except (_HoldsSecret, LimitExceededError):
        return None
    return Session._validated_metadata(redacted)


class _HoldsSecret(Exception):
    pass


class _NoSecretsSink:
    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        raise _HoldsSecret()
