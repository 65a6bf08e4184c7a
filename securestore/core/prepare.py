"""validate -> redact -> canonicalize: what every write does to a value before anything is
written (pure; the sink decides where secret values go)."""

from __future__ import annotations

from typing import Any

from ..config import Limits
from ..errors import LimitExceededError
from .canonical import canonical_bytes
from .policy import check_value
from .secrets import SECRET_TYPES, contains_secret, redact
from .secrets.sink import VaultSink


def prepare(value: Any, sink: VaultSink, limits: Limits) -> Any:
    """The value as it may be stored. Nothing is written; a PolicyError leaves the store
    unchanged and forgets any secret sealed into the in-memory vault for this value."""
    mark = sink.mark()
    try:
        check_value(value, limits, leaf_types=SECRET_TYPES, hide=contains_secret)
        redacted = redact(value, sink, max_secrets=limits.max_secrets_per_value).value
        size = len(canonical_bytes(redacted))
        if size > limits.max_value_bytes:
            raise LimitExceededError(f"value of {size} bytes exceeds {limits.max_value_bytes}")
    except BaseException:
        sink.rollback(mark)
        raise
    return redacted
