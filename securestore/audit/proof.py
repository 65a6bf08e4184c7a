"""Inclusion and consistency proofs as self-contained files, and their check (pure).

A proof carries the signed checkpoint it is relative to, so `check_proof` needs nothing from
the store: only the trusted public key (or an anchor that holds one)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..core.canonical import canonical_bytes
from .chain import parse_record
from .checkpoint import Checkpoint, open_note
from .errors import RecordError
from .keys import VerifierKey
from .merkle import leaf_hash, verify_consistency, verify_inclusion

_HEX64 = r"^[0-9a-f]{64}$"


class _Proof(BaseModel):
    """What both proofs carry: the log, the signed tree size, and the checkpoint that signs it."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    v: Literal[1]
    log: str = Field(max_length=700)
    size: int = Field(ge=1)
    checkpoint: str = Field(max_length=4096)


class InclusionProof(_Proof):
    kind: Literal["inclusion"]
    index: int = Field(ge=0)
    record: str = Field(max_length=1 << 20)  # the record line itself: it holds no values
    path: list[str] = Field(max_length=64)


class ConsistencyProof(_Proof):
    kind: Literal["consistency"]
    old_size: int = Field(ge=1)
    old_root: str = Field(pattern=_HEX64)
    path: list[str] = Field(max_length=128)


def encode_proof(proof: InclusionProof | ConsistencyProof) -> bytes:
    return canonical_bytes(proof.model_dump(mode="python")) + b"\n"


def parse_proof(data: bytes) -> InclusionProof | ConsistencyProof:
    try:
        raw = orjson.loads(data)
        if isinstance(raw, dict) and raw.get("kind") == "consistency":
            return ConsistencyProof.model_validate(raw)
        return InclusionProof.model_validate(raw)
    except (orjson.JSONDecodeError, ValidationError):
        raise RecordError("proof", "not a securestore proof file") from None


@dataclass(frozen=True)
class ProofResult:
    checkpoint: Checkpoint
    statement: str


def _path(hexes: list[str]) -> list[bytes]:
    try:
        nodes = [bytes.fromhex(h) for h in hexes]
    except ValueError:
        raise RecordError("proof", "a path node is not hex") from None
    if any(len(node) != 32 for node in nodes):
        raise RecordError("proof", "a path node is not 32 bytes")
    return nodes


def check_proof(proof: InclusionProof | ConsistencyProof, trusted: VerifierKey,
                anchored: Checkpoint | None = None) -> ProofResult:
    """What the proof proves, or RecordError naming the failed check."""
    checkpoint = open_note(proof.checkpoint, trusted)
    if checkpoint.size != proof.size:
        raise RecordError("proof", f"the proof is for size {proof.size}, the checkpoint for {checkpoint.size}")
    where = f"log {checkpoint.log_id} of store {checkpoint.store_id}"
    if isinstance(proof, InclusionProof):
        line = proof.record.encode()
        record = parse_record(line)
        if record.seq != proof.index or record.log != checkpoint.log_id:
            raise RecordError("proof", "the record's seq or log id is not the one the proof names")
        if not verify_inclusion(proof.index, proof.size, leaf_hash(line), _path(proof.path), checkpoint.root):
            raise RecordError("inclusion", f"record {proof.index} is not in the signed tree of size {proof.size}")
        kind = getattr(record, "kind", "record")
        return ProofResult(checkpoint, f"record seq {proof.index} ({kind}) is in {where} at size "
                                       f"{proof.size}, signed by {trusted.name}")
    old_root = bytes.fromhex(proof.old_root)
    if anchored is not None:
        if anchored.log_id != checkpoint.log_id or anchored.size != proof.old_size or anchored.root != old_root:
            raise RecordError("consistency", "the proof's old tree is not the anchored checkpoint")
    if not verify_consistency(proof.old_size, proof.size, old_root, checkpoint.root, _path(proof.path)):
        raise RecordError("consistency", f"size {proof.size} does not extend size {proof.old_size}")
    anchored_note = " (the anchored checkpoint)" if anchored is not None else ""
    return ProofResult(checkpoint, f"{where} at size {proof.size}, signed by {trusted.name}, is an append-only "
                                   f"extension of size {proof.old_size}{anchored_note}")
