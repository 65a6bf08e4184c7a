"""Anchors (pure): the latest signed checkpoints of a store's logs, exported to be kept where
the store's writers cannot reach (a witness, a ticket, WORM storage). A later verify against
an anchor catches what no in-store evidence can: a cut tail, a rollback to an older valid
state, a log replaced wholesale."""

from __future__ import annotations

from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.canonical import canonical_bytes
from .errors import RecordError

_HEX32 = r"^[0-9a-f]{32}$"


class AnchoredLog(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    log: str = Field(max_length=700)
    session: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._\-]{1,600}$")
    note: str = Field(max_length=4096)


class Anchor(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    v: Literal[1]
    kind: Literal["securestore-anchor"]
    store: str = Field(pattern=_HEX32)
    signer: str = Field(max_length=200)
    created: int = Field(ge=0)
    logs: list[AnchoredLog]


def encode_anchor(anchor: Anchor) -> bytes:
    return canonical_bytes(anchor.model_dump(mode="python")) + b"\n"


def parse_anchor(data: bytes) -> Anchor:
    try:
        return Anchor.model_validate(orjson.loads(data))
    except (orjson.JSONDecodeError, ValidationError):
        raise RecordError("anchor", "not a securestore anchor file") from None
