"""Leftovers of interrupted writes (temp files, staging and trash directories): found, removed,
and described for the audit log by whoever next holds the writer lock."""

from __future__ import annotations

from typing import Any

from ...errors import LockHeldError, SecureStoreError, UnsafeFileError
from ...fs import TEMP_PREFIX
from ..tree import TreeDir
from .index import ENTRIES_DIR, INDEX_DIR
from .index_compact import INDEX_LOCK
from .layout import STAGING_PREFIX, TRASH_PREFIX, VAULT_KEY_FILE

SWEEP_MARKER = ".sweep-needed"  # in the store root: a failed act may have left something


def shred_vault_key(sessions: TreeDir, trash: str) -> None:
    """Crypto-shred: without its wrapped data key no copy of the vault can be decrypted."""
    with sessions.open_dir(trash) as directory:
        if directory.entry(VAULT_KEY_FILE) is not None:
            directory.shred(VAULT_KEY_FILE)


def leftovers(directory: TreeDir, prefixes: tuple[str, ...], label: str) -> list[dict[str, Any]]:
    """Remove temp/staging entries of crashed writes; describe each for the audit log."""
    removed: list[dict[str, Any]] = []
    for name in directory.list(sort=False):
        if not name.startswith(prefixes):
            continue
        info = directory.entry(name)
        if info is None:
            continue
        detail = None
        if name.startswith(TRASH_PREFIX) and info.kind == "dir":
            try:
                shred_vault_key(directory, name)  # a delete that crashed before shredding
            except UnsafeFileError as exc:  # e.g. a planted hard link: say so, still remove the name
                detail = f"vault.key not shredded: {exc}"[:256]
        directory.remove_tree(name)
        removed.append({"kind": "recovery", "event": "temp-removed", "target": f"{label}{name}",
                        "size": info.size if info.kind == "file" else 0, "sha256": None, "detail": detail})
    return removed


def note_leftover(root: TreeDir) -> None:
    """A failed act may have left a staging or trash directory: have the next writer sweep."""
    try:
        root.ensure_file(SWEEP_MARKER)
    except SecureStoreError:
        pass


def sweep_store(root: TreeDir, sessions: TreeDir) -> list[dict[str, Any]]:
    """Remove leftovers of interrupted store-level writes, and temp files of interrupted
    index writes. O(sessions): run on crash evidence, a marker, or by maintenance."""
    removed = leftovers(sessions, (STAGING_PREFIX, TRASH_PREFIX, TEMP_PREFIX), "sessions/") + \
        leftovers(root, (TEMP_PREFIX,), "")
    if root.entry(INDEX_DIR) is not None:
        with root.open_dir(INDEX_DIR) as index:
            try:  # writers appending hold it shared: exclusive means no temp file is in use
                lock = index.lock_plain(INDEX_LOCK, exclusive=True, timeout=0.0)
            except LockHeldError:
                return removed  # a later sweep
            with lock:
                removed += leftovers(index, (STAGING_PREFIX, TRASH_PREFIX, TEMP_PREFIX), "index/")
                if index.entry(ENTRIES_DIR) is not None:
                    with index.open_dir(ENTRIES_DIR) as entries:
                        removed += leftovers(entries, (TEMP_PREFIX,), "index/entries/")
    if root.entry(SWEEP_MARKER) is not None:
        root.unlink(SWEEP_MARKER)
    return removed
