"""A writer's view of one session's vault: loaded (or started) on first use, its new wrapped
key written once before anything that needs it, and what redaction seals goes into it."""

from __future__ import annotations

from ... import txn
from ...core.canonical import sha256_hex
from ...core.secrets.sink import VaultSink
from ...core.secrets.vault import Vault, new_vault, wrap_data_key
from ...errors import IntegrityError, LimitExceededError
from ..tree import TreeDir
from .auditlog import AuditLog
from .env import LocalEnv, observe_file
from .layout import VAULT_FILE, VAULT_KEY_CAP, VAULT_KEY_FILE
from .session_files import read_vault


def stored_vault(env: LocalEnv, directory: TreeDir, name: str) -> tuple[Vault | None, bytes] | None:
    """The vault as the files hold it (for resolving references); None without vault.key or
    without the master key."""
    if env.master_key is None:
        return None
    return read_vault(directory, env.master_key, env.identity.store_id, name, env.limits.max_vault_bytes)


class SessionVault:
    def __init__(self, env: LocalEnv, directory: TreeDir, name: str) -> None:
        self.env, self.dir, self.name = env, directory, name
        self._vault: Vault | None = None
        self._data_key: bytes | None = None
        self.pending_key: bytes | None = None  # vault.key content not written yet (a brand-new vault)

    def load(self) -> tuple[Vault, bytes]:
        """The vault and its data key (a new one, written on first use, if the session has none)."""
        master = self.env.master_key
        if master is None:
            raise AssertionError("vault used without a master key")  # pragma: no cover
        if self._vault is None or self._data_key is None:
            store_id, name = self.env.identity.store_id, self.name
            found = read_vault(self.dir, master, store_id, name, self.env.limits.max_vault_bytes)
            if found is None:
                if self.dir.entry(VAULT_FILE) is not None:
                    raise IntegrityError(f"session {name}: vault.json exists without its vault.key")
                data_key = self.env.ctx.os.urandom(32)
                self.pending_key = wrap_data_key(master, data_key, self.env.ctx.os.urandom(12), store_id, name)
                self._vault = new_vault(data_key, store_id, name)
            else:
                vault, data_key = found
                self._vault = vault if vault is not None else new_vault(data_key, store_id, name)
            self._data_key = data_key
        return self._vault, self._data_key

    def stored(self) -> tuple[Vault | None, bytes] | None:
        return stored_vault(self.env, self.dir, self.name)

    def in_memory(self) -> tuple[Vault, bytes] | None:
        """The vault if it was loaded (a turn's staged values may name entries only it has)."""
        if self._vault is None or self._data_key is None:
            return None
        return self._vault, self._data_key

    def encoded(self) -> bytes:
        """vault.json as the loaded vault would be written, within its cap."""
        if self._vault is None:
            raise AssertionError("no vault loaded")  # pragma: no cover
        data = self._vault.to_bytes()
        if len(data) > self.env.limits.max_vault_bytes:
            raise LimitExceededError(f"session vault would exceed {self.env.limits.max_vault_bytes} bytes")
        return data

    def write_key(self, log: AuditLog) -> None:
        """A new vault's wrapped data key, written to vault.key (its only copy) before anything
        that needs it."""
        key_bytes = self.pending_key
        if key_bytes is None:
            return
        txn.apply(log, txn.Change(
            "vault.key", VAULT_KEY_FILE, sha256_hex(key_bytes), len(key_bytes),
            lambda: self.dir.write_atomic(VAULT_KEY_FILE, key_bytes),
            lambda: observe_file(self.dir, VAULT_KEY_FILE, VAULT_KEY_CAP),
        ))
        self.pending_key = None

    def sink(self) -> VaultSink:
        """Where redaction puts this session's secret values (its vault, or nowhere)."""
        env = self.env
        return VaultSink(self.load if env.master_key is not None else None,
                         lambda: self._vault, env.fingerprint_key, env.ctx.os.urandom)
