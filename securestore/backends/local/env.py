"""What every part of the local backend shares: the OS context, configuration, the store's
identity and keys, the clock, and how a log handle is made."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ...audit.chain import Actor
from ...audit.keys import EpochRule, SignerKey
from ...config import Limits, StoreConfig
from ...core.canonical import sha256_hex
from ...core.records import StoreIdentity
from ...fs import FsContext
from ..tree import TreeDir
from .auditlog import AuditLog
from .layout import STATE_DIR, file_cap


def wall_clock_ms(ctx: FsContext) -> Callable[[], int]:
    """The store's clock: wall time in ms, read through the OS-call table."""
    return lambda: ctx.os.now_ns() // 1_000_000


def observe_file(directory: TreeDir, name: str, cap: int) -> str | None:
    """What a replaced file holds now, in the terms an intent uses (its content hash)."""
    data = directory.read_optional(name, cap)
    return None if data is None else sha256_hex(data)


@dataclass
class LocalEnv:
    ctx: FsContext
    config: StoreConfig
    identity: StoreIdentity
    master_key: bytes | None
    signer: SignerKey | None = None
    clock: Callable[[], int] = field(default=lambda: 0)
    epoch_rule: EpochRule = field(init=False)
    actor: Actor = field(init=False)
    fingerprint_key: bytes = field(init=False)  # keys fingerprints of secrets dropped without a master key

    @classmethod
    def make(cls, ctx: FsContext, config: StoreConfig, identity: StoreIdentity, *, master_key: bytes | None,
             signer: SignerKey | None, clock: Callable[[], int] | None) -> LocalEnv:
        return cls(ctx, config, identity, master_key, signer, clock or wall_clock_ms(ctx))

    def __post_init__(self) -> None:
        self.epoch_rule = EpochRule(self.config.audit.epoch_records, self.config.audit.epoch_seconds)
        self.actor = Actor(uid=self.ctx.euid, pid=self.ctx.os.getpid(), principal=self.config.principal)
        self.fingerprint_key = bytes.fromhex(self.identity.fingerprint_key)

    @property
    def limits(self) -> Limits:
        return self.config.limits

    def new_log(self, directory: TreeDir) -> AuditLog:
        return AuditLog(directory, clock=self.clock, actor=self.actor, max_line=self.limits.max_audit_line_bytes,
                        signer=self.signer)

    def slot_cap(self) -> int:
        """Largest slot file: a value at its cap plus the envelope."""
        return file_cap(f"{STATE_DIR}/", self.limits)
