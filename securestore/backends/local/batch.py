"""What a committed batch (one journal record) writes, computed from the record alone (pure):
recovery recomputes the same writes from the journal and redoes those a crash cut off."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ...audit.chain import TargetState
from ...config import Limits
from ...core.canonical import canonical_bytes, sha256_hex
from ...core.journal import Op
from ...core.policy import encode_name
from ...core.records import SlotEnvelope, encode_model
from ...core.secrets.vault import merged_vault_bytes
from ...errors import LimitExceededError
from .layout import MANIFEST_FILE, STATE_DIR, VAULT_FILE, file_cap, slot_target


@dataclass(frozen=True)
class Materialize:
    """A write that follows a journal commit and is redone from the journal after a crash."""

    target: str  # state/<slot>.json, vault.json or manifest.jsonl
    data: bytes | None  # new content, the line to append (append-only files), or None: remove

    def describe(self) -> TargetState:
        if self.data is None:
            return TargetState(target=self.target)
        return TargetState(target=self.target, sha256=sha256_hex(self.data), size=len(self.data))


def materializations(ops: list[Op], vault_on_disk: Callable[[], bytes | None]) -> list[Materialize]:
    """The file writes a journal record implies (a `vault` op merges into the vault on disk)."""
    steps: list[Materialize] = []
    for op in ops:
        kind = op["op"]
        if kind == "slot":
            envelope = SlotEnvelope(ext_id=op["ext_id"], slot_version=op["slot_version"], payload=op["payload"])
            steps.append(Materialize(slot_target(encode_name(op["ext_id"])), encode_model(envelope)))
        elif kind == "slot-delete":
            steps.append(Materialize(slot_target(encode_name(op["ext_id"])), None))
        elif kind == "meta":
            steps.append(Materialize(MANIFEST_FILE, canonical_bytes(op["revision"]) + b"\n"))
        elif kind == "vault":
            steps.append(Materialize(VAULT_FILE, merged_vault_bytes(vault_on_disk(), op["check"], op["entries"])))
    return steps


def check_caps(steps: list[Materialize], limits: Limits, slot_files: Callable[[], Iterable[str]],
               manifest_size: Callable[[], int]) -> None:
    """Every file a batch writes stays within its cap, checked before any byte is written
    (so no input can grow a file past what its readers accept; recovery's redo re-checks).
    `slot_files()`: the slot files now in state/; `manifest_size()`: manifest.jsonl's size."""
    slot_cap = file_cap(f"{STATE_DIR}/", limits)
    slots = {f"{STATE_DIR}/{name}" for name in slot_files() if not name.startswith(".")} \
        if any(step.target.startswith(f"{STATE_DIR}/") for step in steps) else set()
    adding = False
    manifest: int | None = None
    for step in steps:
        size = len(step.data) if step.data is not None else 0
        if step.target == VAULT_FILE and size > limits.max_vault_bytes:
            raise LimitExceededError(f"the session vault would grow to {size} bytes (limit {limits.max_vault_bytes})")
        if step.target == MANIFEST_FILE:
            if manifest is None:
                manifest = manifest_size()
            manifest += size
            if manifest > limits.max_manifest_bytes:
                raise LimitExceededError(f"the manifest would grow to {manifest} bytes (limit "
                                         f"{limits.max_manifest_bytes}); the session holds too many revisions")
        if step.target.startswith(f"{STATE_DIR}/"):
            if size > slot_cap:
                raise LimitExceededError(f"a slot file of {size} bytes exceeds {slot_cap}")
            if step.data is None:
                slots.discard(step.target)
            elif step.target not in slots:
                slots.add(step.target)
                adding = True
    if adding and len(slots) > limits.max_slots_per_session:
        raise LimitExceededError(f"the session would hold {len(slots)} slots (limit {limits.max_slots_per_session})")
