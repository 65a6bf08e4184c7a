"""securestore: a security-hardened, audited, filesystem-backed session store for AI agents."""

from .config import AuditPolicy, Limits, RejectionAuditPolicy, StoreConfig
from .errors import (
    AlreadyExistsError,
    DurabilityError,
    ForbiddenKeyError,
    IntegrityError,
    InvalidKeyError,
    InvalidValueError,
    KeyMaterialError,
    LayoutVersionError,
    LimitExceededError,
    LockHeldError,
    NotFoundError,
    OperationalError,
    PolicyError,
    ResumeMismatchError,
    SecretInKeyError,
    SecretUnavailableError,
    SecureStoreError,
    StorageError,
    UnsafeFileError,
    UsageError,
    VersionConflictError,
)
from .core.secrets import Secret
from .api.session import Session, SlotHandle
from .api.keys import generate_master_key
from .api.copying import CopyReport, copy_store
from .api.setup import init_store
from .api.store import SecureStore, open_store
from .api.verify import VerifyReport, verify_store
from .api.views import SessionInfo, SessionView

__version__ = "0.1.0"
VERSION = __version__  # the same, under a public name

__all__ = [
    "AlreadyExistsError",
    "DurabilityError",
    "ForbiddenKeyError",
    "IntegrityError",
    "InvalidKeyError",
    "InvalidValueError",
    "KeyMaterialError",
    "LayoutVersionError",
    "LimitExceededError",
    "AuditPolicy",
    "CopyReport",
    "Limits",
    "LockHeldError",
    "NotFoundError",
    "OperationalError",
    "PolicyError",
    "ResumeMismatchError",
    "RejectionAuditPolicy",
    "Secret",
    "SecretInKeyError",
    "SecretUnavailableError",
    "SecureStore",
    "SecureStoreError",
    "Session",
    "SessionInfo",
    "SessionView",
    "SlotHandle",
    "StorageError",
    "StoreConfig",
    "UnsafeFileError",
    "UsageError",
    "VerifyReport",
    "VersionConflictError",
    "VERSION",
    "__version__",
    "copy_store",
    "generate_master_key",
    "init_store",
    "open_store",
    "verify_store",
]


def __getattr__(name: str) -> object:
    """`securestore.aio` is imported on first use: the sync API does not pay for asyncio."""
    if name == "aio":
        import importlib

        return importlib.import_module(".aio", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
