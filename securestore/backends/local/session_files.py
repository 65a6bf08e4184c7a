"""Reading a session's files (through the fs layer; nothing here writes): the manifest and its
resume rules, the one slot reader and the one vault loader (the transcript: transcript_files.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ...config import Limits
from ...core.policy import encode_name, name_matches_key
from ...core.records import Manifest, SlotEnvelope, StoreIdentity, decode_model
from ...core.secrets.vault import Vault, load_vault, unwrap_data_key
from ...errors import IntegrityError, LayoutVersionError, ResumeMismatchError
from ..tree import TreeDir, holds_last_line, read_tail_until
from .layout import BACKEND, LAYOUT_VERSION, MANIFEST_FILE, VAULT_FILE, VAULT_KEY_CAP, VAULT_KEY_FILE, slot_file


def split_lines(data: bytes) -> tuple[list[bytes], bytes]:
    """Complete lines (each with its newline) and the fragment after the last newline."""
    cut = data.rfind(b"\n") + 1
    return data[:cut].splitlines(keepends=True), data[cut:]


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def last_line_hash(directory: TreeDir, name: str, max_line: int) -> str | None:
    """Hash of the last complete line of an append-only file (None: no file, or no line)."""
    if directory.entry(name) is None:
        return None
    _, tail = read_tail_until(directory, name, max_line + 1, holds_last_line)
    lines, _ = split_lines(tail)
    return line_hash(lines[-1]) if lines and (len(lines) > 1 or len(tail) <= max_line) else None


@dataclass
class ManifestHistory:
    revisions: list[Manifest]
    line_hashes: list[str]
    torn_bytes: int
    size: int = 0  # bytes read

    @property
    def latest(self) -> Manifest:
        return self.revisions[-1]


def read_manifest(directory: TreeDir, limits: Limits, what: str) -> ManifestHistory:
    return parse_manifest(directory.read(MANIFEST_FILE, limits.max_manifest_bytes), what)


def parse_manifest(data: bytes, what: str) -> ManifestHistory:
    lines, fragment = split_lines(data)
    if not lines:
        raise IntegrityError(f"{what}: manifest has no complete revision")
    revisions = [decode_model(Manifest, line, f"{what}: manifest revision {i + 1}") for i, line in enumerate(lines)]
    for index, revision in enumerate(revisions):
        if revision.rev != index + 1:
            raise IntegrityError(f"{what}: manifest line {index + 1} holds revision {revision.rev}")
    return ManifestHistory(revisions, [line_hash(line) for line in lines], len(fragment), len(data))


def check_resumable(history: ManifestHistory, name: str, key: str | None, identity: StoreIdentity) -> Manifest:
    """The session this directory holds, if this store may open it: its name must encode
    the key in its manifest (never trusted otherwise), written by this store and backend,
    in a layout this code knows. Returns the latest revision."""
    latest = history.latest
    if not name_matches_key(name, latest.key) or latest.name != name:
        raise IntegrityError(f"session {name}: its directory name does not encode the key in its manifest")
    if key is not None and latest.key != key:
        raise IntegrityError(f"session {name}: manifest names a different key")
    if latest.layout_version > LAYOUT_VERSION:
        raise LayoutVersionError(
            f"session {name} has layout version {latest.layout_version}, newer than this securestore "
            f"supports ({LAYOUT_VERSION}); nothing was modified"
        )
    if latest.store_id != identity.store_id or latest.backend != BACKEND:
        raise ResumeMismatchError(
            f"session {name} was written by store {latest.store_id} ({latest.backend}), "
            f"not this store {identity.store_id} ({BACKEND}); nothing was modified"
        )
    return latest


def read_slot(state: TreeDir, ext_id: str, cap: int, session: str) -> SlotEnvelope | None:
    """The one slot reader: `state/<encoded ext_id>.json`, which must hold that very slot."""
    file = slot_file(encode_name(ext_id))
    envelope = _slot_in(state, file, cap, session, optional=True)
    if envelope is not None and envelope.ext_id != ext_id:
        raise IntegrityError(f"session {session}: slot file {file} holds another slot")
    return envelope


def slot_names(state: TreeDir, cap: int, session: str) -> list[str]:
    return sorted(envelope.ext_id for file in state.list() if not file.startswith(".")
                  if (envelope := _slot_in(state, file, cap, session, optional=False)) is not None)


def _slot_in(state: TreeDir, file: str, cap: int, session: str, *, optional: bool) -> SlotEnvelope | None:
    data = state.read_optional(file, cap) if optional else state.read(file, cap)
    if data is None:
        return None
    envelope: SlotEnvelope = decode_model(SlotEnvelope, data, f"slot file {file} of session {session}")
    return envelope


def read_vault(directory: TreeDir, master: bytes, store_id: str, session: str,
               max_vault_bytes: int) -> tuple[Vault | None, bytes] | None:
    """The one vault loader: None without a vault.key; else (the vault, or None when
    vault.json does not exist yet, and the unwrapped data key)."""
    key_file = directory.read_optional(VAULT_KEY_FILE, VAULT_KEY_CAP)
    if key_file is None:
        return None
    data_key = unwrap_data_key(key_file, master, store_id, session)
    data = directory.read_optional(VAULT_FILE, max_vault_bytes)
    return (None if data is None else load_vault(data, data_key, store_id, session)), data_key
