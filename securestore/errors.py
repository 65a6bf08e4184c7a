"""One exception hierarchy. Every class carries the CLI exit code for its kind of failure.

Messages are one line, say what was rejected and why, and never contain a value that could be
a secret: callers build them from encoded names, key paths and reason codes only.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTEGRITY = 1
EXIT_USAGE = 2
EXIT_POLICY = 3
EXIT_OPERATIONAL = 4


class SecureStoreError(Exception):
    """Root of every error securestore raises on purpose."""

    exit_code: int = EXIT_OPERATIONAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- 1: integrity -------------------------------------------------------------------------
class IntegrityError(SecureStoreError):
    """The store is not in a state securestore left it in: tampered, truncated, planted."""

    exit_code = EXIT_INTEGRITY


class UnsafeFileError(IntegrityError):
    """A symlink, hard link, foreign owner, wrong type or wrong mode was found where we look."""


# --- 2: usage -----------------------------------------------------------------------------
class UsageError(SecureStoreError):
    exit_code = EXIT_USAGE


# --- 3: input rejected by policy ------------------------------------------------------------
class PolicyError(SecureStoreError):
    """Input rejected before any byte was written. `reason` is a stable code for the audit log."""

    exit_code = EXIT_POLICY
    reason: str = "policy"
    audited: bool = False  # set once the rejection is in an audit log (never recorded twice)


class InvalidKeyError(PolicyError):
    reason = "invalid-key"


class ForbiddenKeyError(PolicyError):
    reason = "forbidden-key"


class LimitExceededError(PolicyError):
    reason = "limit-exceeded"


class InvalidValueError(PolicyError):
    reason = "invalid-value"


class SecretInKeyError(PolicyError):
    reason = "secret-in-key"


# --- 4: operational -----------------------------------------------------------------------
class OperationalError(SecureStoreError):
    exit_code = EXIT_OPERATIONAL


class NotFoundError(OperationalError):
    pass


class AlreadyExistsError(OperationalError):
    pass


class LockHeldError(OperationalError):
    pass


class ResumeMismatchError(OperationalError):
    """A session written by another store (or backend) was opened through this one."""


class LayoutVersionError(OperationalError):
    """The data was written by a newer securestore; nothing is modified."""


class VersionConflictError(OperationalError):
    """Optimistic concurrency: the caller expected a different version."""


class StorageError(OperationalError):
    """An OS call failed (I/O error, no space, permission)."""


class DurabilityError(StorageError):
    """fsync failed. The kernel may have dropped the data, so the store handle is unusable."""


class KeyMaterialError(OperationalError):
    """The master key is missing, malformed, stored in an unsafe place, or does not match."""


class SecretUnavailableError(OperationalError):
    """A reference cannot be resolved (env variable unset, redacted value, unknown id)."""
