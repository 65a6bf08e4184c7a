"""ReadOnlySession: one session directory opened for reading, with no lock: nothing is
repaired or written, and every file is read through the same readers the writer uses."""

from __future__ import annotations

from typing import Any

from ...core.records import Manifest, SlotEnvelope
from ...core.secrets.vault import Vault
from ..tree import TreeDir
from .env import LocalEnv
from .layout import AUDIT_DIR, SESSION_LOCK, STATE_DIR
from .session_files import ManifestHistory, read_slot, slot_names
from .session_vault import stored_vault
from .transcript_files import read_active, tail_items, without_a_writer


class ReadOnlySession:
    def __init__(self, env: LocalEnv, directory: TreeDir, name: str, history: ManifestHistory) -> None:
        self.env, self.dir, self.name, self.history = env, directory, name, history
        self.manifest: Manifest = history.latest
        self.key = self.manifest.key

    @property
    def revisions(self) -> list[Manifest]:
        return self.history.revisions

    def slot(self, ext_id: str) -> SlotEnvelope | None:
        with self.dir.open_dir(STATE_DIR) as state:
            return read_slot(state, ext_id, self.env.slot_cap(), self.name)

    def slot_names(self) -> list[str]:
        with self.dir.open_dir(STATE_DIR) as state:
            return slot_names(state, self.env.slot_cap(), self.name)

    def slot_count(self) -> int:
        with self.dir.open_dir(STATE_DIR) as state:
            return sum(1 for file in state.list(sort=False) if not file.startswith("."))

    def items(self, limit: int | None = None) -> list[Any]:
        """The latest `limit` items (None: all), oldest first: O(limit) records read."""
        limits, what = self.env.limits, f"session {self.name}"
        return without_a_writer(self.dir, limits, what, lambda head: tail_items(self.dir, limits, what, head, limit))

    def item_count(self) -> int:
        limits, what = self.env.limits, f"session {self.name}"
        return without_a_writer(self.dir, limits, what, lambda head: read_active(self.dir, limits, what, head).count)

    def stored_vault(self) -> tuple[Vault | None, bytes] | None:
        return stored_vault(self.env, self.dir, self.name)

    def lock_holder(self) -> str | None:
        """Who holds the writer lock, as its owner record says (alive or not)."""
        return self.dir.lock_holder(SESSION_LOCK)

    def last_write_ms(self) -> int:
        """When the session last changed: its audit log's last record (an O(1) tail read)."""
        with self.dir.open_dir(AUDIT_DIR) as audit_dir:
            log = self.env.new_log(audit_dir)
            log.load()
            return log.last.ts if log.last is not None else self.manifest.updated_ms
