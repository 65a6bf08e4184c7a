"""Record formats of a store (pure): identity, manifest revisions, snapshots, slot envelopes."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..errors import IntegrityError
from .canonical import canonical_bytes

_HEX32 = r"^[0-9a-f]{32}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, hide_input_in_errors=True)


class StoreIdentity(_Strict):
    v: Literal[1]
    store_id: str = Field(pattern=_HEX32)
    layout_version: int = Field(ge=1)
    backend: str
    created_ms: int = Field(ge=0)
    # Keys the fingerprints of secrets dropped when no master key is configured.
    fingerprint_key: str = Field(pattern=r"^[0-9a-f]{64}$")


class SessionMetadata(_Strict):
    """What a session is about. Strings may hold secret references, never secret values."""

    title: str | None = Field(default=None, max_length=4096)
    workspace: str | None = Field(default=None, max_length=4096)
    agent: str | None = Field(default=None, max_length=1024)
    model: str | None = Field(default=None, max_length=1024)
    labels: dict[str, str] = Field(default_factory=dict, max_length=64)


class Manifest(_Strict):
    """One revision of a session's manifest; revision 1 is written when the session is created."""

    v: Literal[1]
    rev: int = Field(ge=1)
    ts: int = Field(ge=0)
    key: str = Field(min_length=1, max_length=65536)
    name: str
    store_id: str = Field(pattern=_HEX32)
    backend: str
    layout_version: int = Field(ge=1)
    audit_log_id: str = Field(pattern=_HEX32)
    created_ms: int = Field(ge=0)
    updated_ms: int = Field(ge=0)
    metadata: SessionMetadata = SessionMetadata()


class Snapshot(_Strict):
    """Layout 1: the transcript as of journal record `seq` (0: before any record). Read, and
    carried into a layout-2 head as its `base`; never written any more."""

    v: Literal[1]
    seq: int = Field(ge=0)
    ts: int = Field(ge=0)
    items: list[Any]


class SegmentRef(_Strict):
    """A sealed journal segment: records `first`..`last`, its size and its lines' digest."""

    file: str = Field(pattern=r"^journal(-[0-9]{12})?\.log$")
    first: int = Field(ge=1)
    last: int = Field(ge=1)
    size: int = Field(ge=0)
    digest: str = Field(pattern=r"^[0-9a-f]{64}$")


class TranscriptHead(_Strict):
    """Layout 2 (`snapshot.json`): the sealed segments, oldest first, and the transcript as of
    the last record they hold. The active segment is `journal-<seq + 1>.log`."""

    v: Literal[2]
    seq: int = Field(ge=0)
    count: int = Field(ge=0)
    segments: list[SegmentRef]
    base: list[Any] = Field(default_factory=list)  # a layout-1 snapshot's items, oldest first


class SlotEnvelope(_Strict):
    ext_id: str
    slot_version: int = Field(ge=1)
    payload: Any


def encode_model(model: BaseModel) -> bytes:
    return canonical_bytes(model.model_dump(mode="python"))


def decode_model(cls: type[_Strict], data: bytes, what: str) -> Any:
    try:
        return cls.model_validate(orjson.loads(data))
    except (orjson.JSONDecodeError, ValidationError):
        raise IntegrityError(f"{what} is malformed") from None
