"""Names of the local backend's files and directories, and the one name -> cap table. See README "On disk"."""

from __future__ import annotations

import re

from ...config import Limits
from ...core.transcript import segment_name
from ...errors import IntegrityError

LAYOUT_VERSION = 2  # 2: the transcript is a chain of journal segments (1: snapshot + journal)
BACKEND = "fs"  # the tree layout's engine: manifests say it on every storage backend (a copy moves them)
# Where a store was made (its identity says so); the engine and its files are the same in both.
BACKENDS = frozenset({"fs", "postgres"})

STORE_FILE = "store.json"
STORE_LOCK = "lock"
AUDIT_DIR = "audit"
SESSIONS_DIR = "sessions"
MANIFEST_FILE = "manifest.jsonl"  # one revision per line, append-only
JOURNAL_FILE = "journal.log"  # a session's first journal segment
SNAPSHOT_FILE = "snapshot.json"  # the transcript head: the sealed segments (layout 1: a snapshot)
STATE_DIR = "state"
VAULT_FILE = "vault.json"
VAULT_KEY_FILE = "vault.key"  # the wrapped data key: destroying it crypto-shreds vault.json
SESSION_LOCK = "lock"
SLOT_SUFFIX = ".json"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"
# Files that only grow by appended lines; everything else is replaced atomically.
APPEND_ONLY = frozenset({MANIFEST_FILE, JOURNAL_FILE})
_LATER_SEGMENT = re.compile(r"journal-[0-9]{12}\.log")


def is_journal(name: str) -> bool:
    """A journal segment's file: the first (`journal.log`) or a later one (`journal-<seq>.log`)."""
    return name == JOURNAL_FILE or _LATER_SEGMENT.fullmatch(name) is not None


def is_append_only(name: str) -> bool:
    return name == MANIFEST_FILE or is_journal(name)


def active_segment(head_seq: int | None) -> str:
    """The segment the writer appends to: `journal.log` until the first seal (no head, or a
    layout-1 snapshot), then the one after the head's last sealed record."""
    return JOURNAL_FILE if head_seq is None else segment_name(head_seq + 1)

STORE_FILE_CAP = 64 * 1024
VAULT_KEY_CAP = 4096  # a wrapped 32-byte key and its nonce, as JSON


def file_cap(target: str, limits: Limits) -> int:
    """The one name -> cap table: the most bytes a reader accepts from each file a store or a
    session writes (`target` as audit records name it: `state/<slot>.json`, `vault.json`, ...)."""
    if target.startswith(f"{STATE_DIR}/"):
        return limits.max_value_bytes + limits.max_key_bytes + 4096  # a value at its cap, plus the envelope
    if is_journal(target):
        return limits.max_journal_bytes
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
