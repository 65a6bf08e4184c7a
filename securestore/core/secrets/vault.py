"""The session vault (pure): AES-256-GCM under a random per-session data key.

data key   = 32 random bytes, kept only wrapped: vault.key = AES-256-GCM(KEK, nonce, data key,
             AAD = canonical {purpose: "vault-key", store, session}), KEK = HKDF-SHA256(master key)
reference  = HMAC-SHA256(data key, "ref" | kind | value)[:16]  (same secret -> same reference,
             so a key repeated across a transcript is stored once; unguessable without the key)
ciphertext = AES-256-GCM(data key, random 96-bit nonce, value,
                         AAD = canonical {store, session, ref, kind})  (binds session and id)
check      = HMAC-SHA256(data key, "check")[:16]  (tells a foreign vault.json from tampering)

Crypto-shredding: destroying vault.key makes every copy of vault.json undecryptable, even with
the master key, because the data key was random and exists nowhere else.
"""

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..canonical import canonical_bytes
from ...errors import IntegrityError, KeyMaterialError, SecretUnavailableError

MASTER_KEY_BYTES = 32
ValueKind = Literal["text", "bytes"]


def parse_master_key(material: bytes | str) -> bytes:
    """Accept 32 bytes encoded as base64 (standard or url-safe) or hex, surrounding space ignored."""
    text = material.decode("ascii", "replace") if isinstance(material, bytes) else material
    text = text.strip()
    decoders: tuple[Callable[[str], bytes], ...] = (
        bytes.fromhex,
        lambda t: base64.b64decode(t, validate=True),
        lambda t: base64.urlsafe_b64decode(t + "=" * (-len(t) % 4)),
    )
    candidates: list[bytes] = []
    for decode in decoders:
        try:
            candidates.append(decode(text))
        except (ValueError, binascii.Error):
            continue
    for key in candidates:
        if len(key) == MASTER_KEY_BYTES:
            return key
    raise KeyMaterialError("master key must be 32 bytes, encoded as base64 or hex")


def encode_master_key(key: bytes) -> str:
    return base64.urlsafe_b64encode(key).decode("ascii")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


class VaultEntry(BaseModel):
    """One sealed value: its kind, nonce and ciphertext (base64)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    kind: ValueKind
    nonce: str = Field(min_length=16, max_length=16)
    ct: str = Field(max_length=4 * 1024 * 1024)


class _VaultModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    v: Literal[2]
    check: str = Field(min_length=24, max_length=24)
    entries: dict[str, VaultEntry]


class _KeyFileModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    v: Literal[1]
    nonce: str = Field(min_length=16, max_length=16)
    wrapped: str = Field(min_length=64, max_length=64)


@dataclass
class Vault:
    store_id: str
    session: str
    check: bytes
    entries: dict[str, VaultEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        return {
            "v": 2,
            "check": _b64(self.check),
            "entries": {k: e.model_dump() for k, e in self.entries.items()},
        }

    def to_bytes(self) -> bytes:
        return canonical_bytes(self.to_json())


def _kek(master: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"securestore/vault-kek/v1").derive(master)


def _key_aad(store_id: str, session: str) -> bytes:
    return canonical_bytes({"purpose": "vault-key", "session": session, "store": store_id})


def wrap_data_key(master: bytes, data_key: bytes, nonce: bytes, store_id: str, session: str) -> bytes:
    """The content of vault.key: the data key sealed under the master key's KEK."""
    wrapped = AESGCM(_kek(master)).encrypt(nonce, data_key, _key_aad(store_id, session))
    return canonical_bytes({"nonce": _b64(nonce), "v": 1, "wrapped": _b64(wrapped)})


def unwrap_data_key(key_file: bytes, master: bytes, store_id: str, session: str) -> bytes:
    try:
        model = _KeyFileModel.model_validate(orjson.loads(key_file))
        nonce, wrapped = _unb64(model.nonce), _unb64(model.wrapped)
    except (orjson.JSONDecodeError, ValidationError, ValueError, binascii.Error):
        raise IntegrityError(f"vault key of session {session} is malformed") from None
    try:
        return AESGCM(_kek(master)).decrypt(nonce, wrapped, _key_aad(store_id, session))
    except InvalidTag:
        raise KeyMaterialError(f"the master key does not open the vault of session {session}") from None


def _check_value(data_key: bytes) -> bytes:
    return hmac.new(data_key, b"securestore/vault/check", hashlib.sha256).digest()[:16]


def new_vault(data_key: bytes, store_id: str, session: str) -> Vault:
    return Vault(store_id, session, _check_value(data_key))


def load_vault(data: bytes, data_key: bytes, store_id: str, session: str) -> Vault:
    try:
        model = _VaultModel.model_validate(orjson.loads(data))
        check = _unb64(model.check)
    except (orjson.JSONDecodeError, ValidationError, ValueError, binascii.Error):
        raise IntegrityError(f"vault of session {session} is malformed") from None
    if not hmac.compare_digest(_check_value(data_key), check):
        raise IntegrityError(f"vault of session {session} was not sealed with its vault key")
    return Vault(store_id, session, check, dict(model.entries))


def _aad(vault: Vault, ref: str, kind: str) -> bytes:
    return canonical_bytes({"kind": kind, "ref": ref, "session": vault.session, "store": vault.store_id})


def reference_id(data_key: bytes, value: bytes, kind: ValueKind) -> str:
    digest = hmac.new(data_key, b"ref\x00" + kind.encode() + b"\x00" + value, hashlib.sha256).digest()
    return base64.b32encode(digest[:16]).decode("ascii").rstrip("=").lower()


def seal(vault: Vault, data_key: bytes, value: str | bytes, nonce: bytes) -> tuple[str, bool]:
    """Add `value`; returns (reference id, whether the vault changed)."""
    kind: ValueKind = "text" if isinstance(value, str) else "bytes"
    raw = value.encode("utf-8") if isinstance(value, str) else value
    ref = reference_id(data_key, raw, kind)
    if ref in vault.entries:
        return ref, False
    ct = AESGCM(data_key).encrypt(nonce, raw, _aad(vault, ref, kind))
    vault.entries[ref] = VaultEntry(kind=kind, nonce=_b64(nonce), ct=_b64(ct))
    return ref, True


def unseal(vault: Vault, data_key: bytes, ref: str) -> str | bytes:
    entry = vault.entries.get(ref)
    if entry is None:
        raise SecretUnavailableError(f"vault reference {ref} is not in the vault of session {vault.session}")
    try:
        raw = AESGCM(data_key).decrypt(_unb64(entry.nonce), _unb64(entry.ct), _aad(vault, ref, entry.kind))
    except (InvalidTag, ValueError, binascii.Error):
        raise IntegrityError(f"vault entry {ref} of session {vault.session} fails authentication") from None
    return raw.decode("utf-8") if entry.kind == "text" else raw


def fingerprint(key: bytes, value: str | bytes) -> str:
    """Keyed fingerprint of a dropped secret: correlates equal values, reveals nothing else
    to someone without the key. A low-entropy value (a short password) can be guessed by
    whoever holds the key; see SECURITY.md."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    digest = hmac.new(key, b"fingerprint\x00" + raw, hashlib.sha256).digest()
    return base64.b32encode(digest[:15]).decode("ascii").lower()


def merged_vault_bytes(existing: bytes | None, check: str, entries: dict[str, object]) -> bytes:
    """vault.json after a journal `vault` op: the entries on disk plus the op's new ones."""
    merged = {} if existing is None else dict(_stored_entries(existing))
    merged.update(entries)
    return canonical_bytes({"check": check, "entries": merged, "v": 2})


def _stored_entries(data: bytes) -> dict[str, object]:
    try:
        entries = orjson.loads(data)["entries"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise IntegrityError("vault is malformed") from None
    if not isinstance(entries, dict):
        raise IntegrityError("vault is malformed")
    return entries
