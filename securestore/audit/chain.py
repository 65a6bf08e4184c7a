"""Audit records and the hash chain (pure: bytes in, bytes out).

A log is JSON Lines. Each line is the canonical encoding of one record (sorted keys, ASCII
keys, integers only, no floats). record hash = SHA-256(0x00 || line without newline), the
RFC 6962 leaf hash, and each record's `prev` is the hash of the record before it. The first
record (seq 0) is a genesis record naming the log id, the store and the scope.

Records never contain values: targets are encoded file names, content is named by its hash.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union

from typing_extensions import TypedDict

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, with_config

from ..core.canonical import canonical_bytes
from .errors import RecordError
from .keys import MAC_FIELD, ZERO_MAC, RecordMac

RECORD_VERSION = 2
GENESIS_PREV = "0" * 64
_HEX64 = r"^[0-9a-f]{64}$"
_HEX32 = r"^[0-9a-f]{32}$"
_TARGET = r"^[A-Za-z0-9._\-/]{1,600}$"

Result = Literal["committed", "failed", "recovered-committed", "recovered-not-applied"]
COMMITTED_RESULTS = frozenset({"committed", "recovered-committed"})


@with_config(ConfigDict(extra="forbid", strict=True))
class Actor(TypedDict):
    """Who wrote a record. A TypedDict, not a model: it is validated in every record read."""

    uid: int
    pid: int
    principal: Annotated[str | None, Field(max_length=256)]


class RecordBase(BaseModel):
    """Fields every record has."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    v: Literal[2]
    log: str = Field(pattern=_HEX32)
    seq: int = Field(ge=0)
    ts: int = Field(ge=0)
    prev: str = Field(pattern=_HEX64)
    actor: Actor
    epoch: int = Field(ge=0)  # which ratcheted key MACs this record
    mac: str = Field(pattern=_HEX64)  # HMAC-SHA256 under the epoch's key, over the line with 64 zeros here


class Genesis(RecordBase):
    kind: Literal["genesis"]
    store: str = Field(pattern=_HEX32)
    scope: Literal["store", "session"]
    session: str | None = Field(default=None, pattern=_TARGET)
    # Bound into the MACed genesis, so a seed holder can trust them without anything else.
    signer: str = Field(pattern=r"^[A-Za-z0-9._\-/]{1,64}\+[0-9a-f]{8}\+[A-Za-z0-9+/=]{44}$")
    epoch_records: int = Field(ge=1, le=1_000_000)
    epoch_seconds: int = Field(ge=1, le=86_400)


class TargetState(BaseModel):
    """Content a target will hold (replace), or the line it gains (append-only files)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    target: str = Field(pattern=_TARGET)
    sha256: str | None = Field(default=None, pattern=_HEX64)  # None: the target is removed
    size: int | None = Field(default=None, ge=0)


class Intent(RecordBase):
    kind: Literal["intent"]
    op: str = Field(pattern=r"^[a-z][a-z.\-]{1,40}$")
    target: str = Field(pattern=_TARGET)
    sha256: str | None = Field(default=None, pattern=_HEX64)  # None: the op removes the target
    size: int | None = Field(default=None, ge=0)
    # A batch commits at `target` (the journal) and is then materialized into these files,
    # which recovery can redo from the journal. One intent for the whole batch.
    also: list[TargetState] = Field(default_factory=list)


class Outcome(RecordBase):
    kind: Literal["outcome"]
    txn: int = Field(ge=0)
    result: Result
    sha256: str | None = Field(default=None, pattern=_HEX64)  # what the target holds now


class Rejected(RecordBase):
    kind: Literal["rejected"]
    op: str = Field(pattern=r"^[a-z][a-z.\-]{1,40}$")
    target: str | None = Field(default=None, pattern=_TARGET)
    reason: str = Field(pattern=r"^[a-z][a-z\-]{1,40}$")


class Suppressed(RecordBase):
    """From here to the end of `window`, rejections are past the budget and not recorded."""

    kind: Literal["suppressed"]
    window: int = Field(ge=0)
    window_seconds: int = Field(ge=1)


class Recovery(RecordBase):
    kind: Literal["recovery"]
    event: Literal["torn-tail", "temp-removed", "stale-lock"]
    target: str = Field(pattern=_TARGET)
    size: int = Field(ge=0)
    sha256: str | None = Field(default=None, pattern=_HEX64)  # of discarded bytes, when they were read
    detail: str | None = Field(default=None, max_length=256)  # e.g. the dead lock holder


class SessionHead(BaseModel):
    """A session log's latest signed checkpoint, as the store log commits to it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    session: str = Field(pattern=_TARGET)
    log: str = Field(pattern=_HEX32)
    size: int = Field(ge=1)
    root: str = Field(pattern=_HEX64)  # RFC 6962 root at `size`
    head: str = Field(pattern=_HEX64)  # hash of record size-1


class Heads(RecordBase):
    """The store log commits to session log heads (at store operations and seals), so a session
    rolled back to an older copy of itself is caught without an anchor."""

    kind: Literal["heads"]
    heads: list[SessionHead] = Field(min_length=1, max_length=128)


Record = Annotated[
    Union[Genesis, Intent, Outcome, Rejected, Suppressed, Recovery, Heads], Field(discriminator="kind")
]
_RECORD: TypeAdapter[Any] = TypeAdapter(Record)
# Field counts, looked up once (the verifier's hot path checks every field is spelled out).
_FIELDS: dict[type[RecordBase], int] = {
    cls: len(cls.model_fields) for cls in (Genesis, Intent, Outcome, Rejected, Suppressed, Recovery, Heads)}
_ACTOR_FIELDS = len(Actor.__annotations__)
_TARGET_FIELDS = len(TargetState.model_fields)
_HEAD_FIELDS = len(SessionHead.model_fields)


def record_hash(line: bytes) -> str:
    """RFC 6962 leaf hash of a line (without its newline)."""
    return hashlib.sha256(b"\x00" + line).hexdigest()


def encode_record(record: BaseModel) -> bytes:
    """The canonical line for a record, with its trailing newline."""
    return canonical_bytes(record.model_dump(mode="python")) + b"\n"


def parse_record(line: bytes) -> RecordBase:
    """Parse one line (without newline) strictly; it must be byte-identical to its canonical form."""
    try:
        raw = orjson.loads(line)
    except orjson.JSONDecodeError:
        raise RecordError("parse", "not valid JSON") from None
    if not isinstance(raw, dict):
        raise RecordError("parse", "not a JSON object")
    if orjson.dumps(raw, option=orjson.OPT_SORT_KEYS) != line:  # canonical_bytes, inlined: hot path
        raise RecordError("canonical", "bytes are not the canonical encoding of the record")
    try:
        record = _RECORD.validate_python(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise RecordError("schema", f"field {where}: {first['msg']}") from None
    # Every field must be spelled out (a default filled in would not be in the bytes).
    complete = len(raw) == _FIELDS[type(record)] and len(raw["actor"]) == _ACTOR_FIELDS
    for item in raw.get("also") or ():
        complete = complete and len(item) == _TARGET_FIELDS
    for item in raw.get("heads") or ():
        complete = complete and len(item) == _HEAD_FIELDS
    if not complete:
        raise RecordError("canonical", "a field is missing from the record")
    parsed: RecordBase = record
    return parsed


def _spelled_out(record: RecordBase, raw: dict[str, Any]) -> bool:
    complete = len(raw) == _FIELDS[type(record)] and len(raw["actor"]) == _ACTOR_FIELDS
    for item in raw.get("also") or ():
        complete = complete and isinstance(item, dict) and len(item) == _TARGET_FIELDS
    return complete and not raw.get("heads")


@dataclass(frozen=True)
class ChainHead:
    """Where the next record goes: its log id, seq and prev hash."""

    log_id: str
    next_seq: int
    prev: str


def build_record(
    head: ChainHead, ts: int, actor: Actor, fields: dict[str, object], *, epoch: int, mac: RecordMac
) -> tuple[RecordBase, bytes, ChainHead]:
    """The next record and its line (with newline), MACed under the epoch's key."""
    raw = {"v": RECORD_VERSION, "log": head.log_id, "seq": head.next_seq, "ts": ts, "prev": head.prev,
           "actor": actor, "epoch": epoch, "mac": ZERO_MAC.decode(), **fields}
    record = _RECORD.validate_python(raw)
    # Strict validation converts nothing, so a record whose fields are all spelled out dumps to
    # exactly what it was built from: encode that, not a dump of the model.
    blank = canonical_bytes(raw) if _spelled_out(record, raw) else encode_record(record)[:-1]
    at = blank.index(MAC_FIELD) + len(MAC_FIELD)
    value = mac.of_blank(blank)
    line = blank[:at] + value.encode() + blank[at + 64 :] + b"\n"
    return record.model_copy(update={"mac": value}), line, ChainHead(head.log_id, head.next_seq + 1, record_hash(line[:-1]))
