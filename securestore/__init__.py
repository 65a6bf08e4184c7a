"""securestore: a security-hardened, audited, filesystem-backed session store for AI agents."""

from .config import Limits, RejectionAuditPolicy, StoreConfig
from .errors import (
    AlreadyExistsError,
    DurabilityError,
    ForbiddenKeyError,
    IntegrityError,
    InvalidKeyError,
    InvalidValueError,
    KeyMaterialError,
    LimitExceededError,
    LockHeldError,
    NotFoundError,
    OperationalError,
    PolicyError,
    SecretInKeyError,
    SecretUnavailableError,
    SecureStoreError,
    StorageError,
    UnsafeFileError,
    UsageError,
    VersionConflictError,
)
from .secrets import Secret
from .store import SecureStore, SessionInfo, generate_master_key, init_store, open_store
from .verification import VerifyReport, verify_store

__version__ = "0.1.0"

__all__ = [
    "AlreadyExistsError",
    "DurabilityError",
    "ForbiddenKeyError",
    "IntegrityError",
    "InvalidKeyError",
    "InvalidValueError",
    "KeyMaterialError",
    "LimitExceededError",
    "Limits",
    "LockHeldError",
    "NotFoundError",
    "OperationalError",
    "PolicyError",
    "RejectionAuditPolicy",
    "Secret",
    "SecretInKeyError",
    "SecretUnavailableError",
    "SecureStore",
    "SecureStoreError",
    "SessionInfo",
    "StorageError",
    "StoreConfig",
    "UnsafeFileError",
    "UsageError",
    "VerifyReport",
    "VersionConflictError",
    "__version__",
    "generate_master_key",
    "init_store",
    "open_store",
    "verify_store",
]
