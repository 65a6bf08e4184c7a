"""Where redaction puts secret values: a session's vault, or nowhere (a keyed fingerprint)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .vault import Vault, VaultEntry, fingerprint, seal


class VaultSink:
    """`vault()` loads (or starts) the session's vault; `loaded()` is the vault in memory, if
    any; with `vault` None (no master key) values are dropped and only fingerprinted."""

    def __init__(self, vault: Callable[[], tuple[Vault, bytes]] | None, loaded: Callable[[], Vault | None],
                 fingerprint_key: bytes, random: Callable[[int], bytes]) -> None:
        self._vault, self._loaded, self._fingerprint_key, self._random = vault, loaded, fingerprint_key, random
        self.new_entries: dict[str, VaultEntry] = {}

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        if self._vault is None:
            return "redacted", fingerprint(self._fingerprint_key, value)
        vault, data_key = self._vault()
        ref, changed = seal(vault, data_key, value, self._random(12))
        if changed:
            self.new_entries[ref] = vault.entries[ref]
        return "vault", ref

    def mark(self) -> frozenset[str]:
        return frozenset(self.new_entries)

    def rollback(self, mark: frozenset[str] = frozenset()) -> None:
        """Forget entries sealed since `mark` for a write that did not happen. Otherwise a later
        write of the same secret would find it "already stored" and never persist it."""
        vault = self._loaded()
        for ref in [ref for ref in self.new_entries if ref not in mark]:
            del self.new_entries[ref]
            if vault is not None:
                vault.entries.pop(ref, None)

    def vault_op(self) -> dict[str, Any] | None:
        """The journal op that carries this batch's new vault entries (encrypted)."""
        vault = self._loaded()
        if not self.new_entries or vault is None:
            return None
        # Never the vault key, not even wrapped: it lives in vault.key alone, so destroying that
        # one file crypto-shreds every copy of the session (journal and backups included).
        return {"op": "vault", "check": vault.to_json()["check"],
                "entries": {ref: entry.model_dump() for ref, entry in self.new_entries.items()}}
