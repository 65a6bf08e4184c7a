"""Names and record formats of the on-disk layout (pure). See README "On disk"."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .canonical import canonical_bytes
from .errors import IntegrityError

if TYPE_CHECKING:
    from .config import Limits

LAYOUT_VERSION = 1
BACKEND = "fs"

STORE_FILE = "store.json"
STORE_LOCK = "lock"
AUDIT_DIR = "audit"
SESSIONS_DIR = "sessions"
MANIFEST_FILE = "manifest.jsonl"  # one revision per line, append-only
JOURNAL_FILE = "journal.log"
SNAPSHOT_FILE = "snapshot.json"
STATE_DIR = "state"
VAULT_FILE = "vault.json"
VAULT_KEY_FILE = "vault.key"  # the wrapped data key: destroying it crypto-shreds vault.json
SESSION_LOCK = "lock"
SLOT_SUFFIX = ".json"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
# Files that only grow by appended lines; everything else is replaced atomically.
APPEND_ONLY = frozenset({MANIFEST_FILE, JOURNAL_FILE})

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
    """The transcript as of journal record `seq` (0: before any record)."""

    v: Literal[1]
    seq: int = Field(ge=0)
    ts: int = Field(ge=0)
    items: list[Any]


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


STORE_FILE_CAP = 64 * 1024
VAULT_KEY_CAP = 4096  # a wrapped 32-byte key and its nonce, as JSON


def file_cap(target: str, limits: Limits) -> int:
    """The one name -> cap table: the most bytes a reader accepts from each file a store or a
    session writes (`target` as audit records name it: `state/<slot>.json`, `vault.json`, ...)."""
    if target.startswith(f"{STATE_DIR}/"):
        return limits.max_value_bytes + limits.max_key_bytes + 4096  # a value at its cap, plus the envelope
    caps = {STORE_FILE: STORE_FILE_CAP, VAULT_KEY_FILE: VAULT_KEY_CAP, VAULT_FILE: limits.max_vault_bytes,
            SNAPSHOT_FILE: limits.max_snapshot_bytes, JOURNAL_FILE: limits.max_journal_bytes,
            MANIFEST_FILE: limits.max_manifest_bytes}
    if target not in caps:
        raise IntegrityError(f"no file named {target} belongs to a store")
    return caps[target]


def slot_file(name: str) -> str:
    return name + SLOT_SUFFIX


def slot_target(name: str) -> str:
    return f"{STATE_DIR}/{slot_file(name)}"


def session_target(name: str) -> str:
    return f"{SESSIONS_DIR}/{name}"
