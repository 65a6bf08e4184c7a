"""Canonical JSON bytes (sorted keys, fixed separators) and content hashes. Pure."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


def canonical_bytes(value: Any) -> bytes:
    """orjson with sorted keys: the same value always gives the same bytes."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
