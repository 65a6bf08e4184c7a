"""Names of the local backend's files and directories, and the one name -> cap table. See README "On disk"."""

from __future__ import annotations

from ...config import Limits
from ...errors import IntegrityError

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
