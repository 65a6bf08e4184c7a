"""An adapter takes an open store handle, sync or async; these give it the other one."""

from __future__ import annotations

from ..aio import AsyncSecureStore
from ..api.store import SecureStore
from ..errors import UsageError

StoreHandle = SecureStore | AsyncSecureStore


def as_async(store: StoreHandle) -> AsyncSecureStore:
    if isinstance(store, AsyncSecureStore):
        return store
    if isinstance(store, SecureStore):
        return AsyncSecureStore(store)
    raise UsageError(f"expected an open securestore handle (SecureStore or AsyncSecureStore), got {type(store).__name__}")


def as_sync(store: StoreHandle) -> SecureStore:
    return as_async(store).sync
