"""Signed checkpoints (pure): C2SP tlog-checkpoint bodies in C2SP signed notes.

    securestore/<store id>/<log id>      origin: binds the log id
    <tree size>
    <base64 Merkle root>
    head <hex hash of the last record>   extension lines
    epoch <epoch of the last record>
    time <signing time, ms>
    closes <epoch>                       only on the checkpoint signed at a ratchet: the signed
                                         end of that epoch (an epoch boundary nobody else can move)

    — <key name> <base64(key id || Ed25519 signature over the body)>

A log's checkpoints are kept one per line in `checkpoints.jsonl`, each line carrying the note
plus the writer's cached Merkle frontier at that size (unsigned: the writer re-checks it
against the signed root before trusting it).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any

import orjson

from ..core.canonical import canonical_bytes
from .errors import RecordError
from .keys import SignerKey, VerifierKey
from .merkle import Frontier

CHECKPOINTS_FILE = "checkpoints.jsonl"
_DASH = "\u2014"
_ORIGIN = re.compile(r"^securestore/([0-9a-f]{32})/([0-9a-f]{32})$")


def origin_of(store_id: str, log_id: str) -> str:
    return f"securestore/{store_id}/{log_id}"


@dataclass(frozen=True)
class Checkpoint:
    store_id: str
    log_id: str
    size: int
    root: bytes
    head: str
    epoch: int
    time: int
    closes: bool = False  # signed at a ratchet: the next record begins epoch `epoch` + 1

    def body(self) -> bytes:
        root = base64.b64encode(self.root).decode()
        closes = f"closes {self.epoch}\n" if self.closes else ""
        return (f"{origin_of(self.store_id, self.log_id)}\n{self.size}\n{root}\n"
                f"head {self.head}\nepoch {self.epoch}\ntime {self.time}\n{closes}").encode()


def sign_note(checkpoint: Checkpoint, signer: SignerKey) -> str:
    body = checkpoint.body()
    verifier = signer.verifier
    signature = base64.b64encode(verifier.id + signer.sign(body)).decode()
    return f"{body.decode()}\n{_DASH} {verifier.name} {signature}\n"


def _parse_body(body: str) -> Checkpoint:
    lines = body.split("\n")
    if len(lines) not in (7, 8) or lines[-1] != "":
        raise RecordError("checkpoint", "a checkpoint body has six lines, or seven with `closes`")
    origin = _ORIGIN.match(lines[0])
    if origin is None or not re.fullmatch(r"0|[1-9][0-9]{0,18}", lines[1]):
        raise RecordError("checkpoint", "bad origin or tree size line")
    try:
        root = base64.b64decode(lines[2], validate=True)
    except ValueError:
        root = b""
    head = re.fullmatch(r"head ([0-9a-f]{64})", lines[3])
    epoch = re.fullmatch(r"epoch (0|[1-9][0-9]{0,18})", lines[4])
    time = re.fullmatch(r"time (0|[1-9][0-9]{0,18})", lines[5])
    if len(root) != 32 or head is None or epoch is None or time is None:
        raise RecordError("checkpoint", "bad root, head, epoch or time line")
    closes = len(lines) == 8
    if closes and lines[6] != f"closes {epoch.group(1)}":
        raise RecordError("checkpoint", "a closes line must name the checkpoint's epoch")
    return Checkpoint(origin.group(1), origin.group(2), int(lines[1]), root, head.group(1),
                      int(epoch.group(1)), int(time.group(1)), closes)


def open_note(note: str, trusted: VerifierKey) -> Checkpoint:
    """The checkpoint in `note` if `trusted` signed it; RecordError otherwise."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise RecordError("checkpoint", "not a signed note")
    body, signatures = note[: cut + 1], note[cut + 2 :]
    checkpoint = _parse_body(body)
    for line in signatures.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != _DASH or parts[1] != trusted.name:
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        if blob[:4] == trusted.id and trusted.verify(blob[4:], body.encode()):
            return checkpoint
    raise RecordError("checkpoint-signature", f"no valid signature by {trusted.name}+{trusted.id.hex()}")


def peek_note(note: str) -> Checkpoint:
    """The checkpoint body WITHOUT checking a signature (for locating; never for trusting)."""
    cut = note.rfind("\n\n")
    if cut < 0:
        raise RecordError("checkpoint", "not a signed note")
    return _parse_body(note[: cut + 1])


@dataclass(frozen=True)
class StoredCheckpoint:
    """A line of checkpoints.jsonl: the note, and the frontier + log byte offset at its size."""

    note: str
    frontier: Frontier
    offset: int

    def line(self) -> bytes:
        return canonical_bytes({"frontier": [h.hex() for h in self.frontier.hashes()], "note": self.note,
                                "offset": self.offset}) + b"\n"


def parse_stored(line: bytes) -> StoredCheckpoint:
    try:
        raw: Any = orjson.loads(line)
        if not isinstance(raw, dict) or set(raw) != {"frontier", "note", "offset"}:
            raise ValueError("fields")
        note, offset = raw["note"], raw["offset"]
        if not isinstance(note, str) or not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
            raise ValueError("types")
        size = peek_note(note).size
        frontier = Frontier(size, [bytes.fromhex(h) for h in raw["frontier"]])
    except (ValueError, TypeError, RecordError):
        raise RecordError("checkpoint", "not a valid checkpoints.jsonl line") from None
    return StoredCheckpoint(note, frontier, offset)
