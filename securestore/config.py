"""Configuration: pydantic models with safe defaults. Every cap is enforced before a byte is written."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .core.secrets.detect import contains_secret

MiB = 1024 * 1024


class Limits(BaseModel):
    """Caps on input. Defaults are safe for agent sessions; raise them deliberately."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    max_key_bytes: int = Field(default=4096, ge=1, le=65536)
    max_value_bytes: int = Field(default=1 * MiB, ge=64, le=256 * MiB)
    max_slots_per_session: int = Field(default=256, ge=1)
    max_sessions: int = Field(default=10_000, ge=1)
    max_depth: int = Field(default=64, ge=1, le=512)
    max_string_bytes: int = Field(default=256 * 1024, ge=1)
    max_nodes: int = Field(default=100_000, ge=1)
    # Signed 64-bit: what every JSON consumer we hand data to can represent exactly.
    max_int_bits: int = Field(default=63, ge=8, le=63)
    max_secrets_per_value: int = Field(default=1024, ge=0)
    max_vault_bytes: int = Field(default=16 * MiB, ge=1024)
    max_audit_line_bytes: int = Field(default=64 * 1024, ge=1024)
    max_manifest_bytes: int = Field(default=16 * MiB, ge=1024)
    max_items: int = Field(default=100_000, ge=1)
    max_record_bytes: int = Field(default=8 * MiB, ge=1024)  # one journal record: an update or a turn
    max_journal_bytes: int = Field(default=256 * MiB, ge=1024)
    max_snapshot_bytes: int = Field(default=512 * MiB, ge=1024)
    max_index_bytes: int = Field(default=1024 * MiB, ge=1024)  # the update log; `index rebuild` compacts it
    # Past this size (and twice its last compacted size) a writer compacts the update log itself.
    index_compact_bytes: int = Field(default=64 * 1024, ge=1024)


class RejectionAuditPolicy(BaseModel):
    """Bounds how fast rejected writes can grow the store audit log (see SECURITY.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    records_per_window: int = Field(default=16, ge=0, le=10_000)
    window_seconds: int = Field(default=60, ge=1, le=86_400)


class MaintenancePolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    prune_after_days: float = Field(default=30.0, gt=0)
    max_sessions_kept: int = Field(default=5000, ge=1)
    max_disk_bytes: int = Field(default=10 * 1024**3, ge=1)
    high_water: float = Field(default=0.8, gt=0, le=1)
    temp_grace_seconds: int = Field(default=300, ge=0)
    # fnmatch patterns on session keys; matching sessions are never evicted.
    protected_keys: tuple[str, ...] = ()
    # Run an enforcing maintenance pass after every N sessions this handle creates (None: only
    # when asked). Sessions this process holds open are protected like any live writer's.
    enforce_every_creates: int | None = Field(default=None, ge=1)

    @property
    def count_slack(self) -> int:
        """Count eviction starts only past the cap plus max(25, 10 %): batches, not a trickle."""
        return max(25, self.max_sessions_kept // 10)


class AuditPolicy(BaseModel):
    """Forward integrity and sealing. Written into each log's genesis record when the log is
    created, so changing it affects new logs only; the verifier reads it from the genesis."""

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    # The epoch key ratchets (and the ending epoch is signed) after this many records, or before
    # the first record written this many seconds after the epoch began.
    epoch_records: int = Field(default=1024, ge=1, le=1_000_000)
    epoch_seconds: int = Field(default=60, ge=1, le=86_400)


class StoreConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    limits: Limits = Limits()
    rejection_audit: RejectionAuditPolicy = RejectionAuditPolicy()
    # There is no age after which a live lock holder is declared stale: a holder is only
    # replaced when it is provably dead, so this timeout can never undercut a live holder.
    lock_timeout_seconds: float = Field(default=10.0, ge=0.0, le=600.0, allow_inf_nan=False)
    # The active journal segment is sealed (and the next one started, nothing copied) after
    # this many records or bytes: they bound what an open replays to count the transcript.
    snapshot_every_records: int | None = Field(default=1000, ge=1)
    snapshot_every_bytes: int | None = Field(default=1 * MiB, ge=1024)
    maintenance: MaintenancePolicy = MaintenancePolicy()
    audit: AuditPolicy = AuditPolicy()
    # Recorded in audit records as actor.principal when set (e.g. the agent or user on whose
    # behalf the write happens). Never a secret.
    principal: str | None = Field(default=None, max_length=256)

    @field_validator("principal")
    @classmethod
    def _principal_is_not_a_secret(cls, value: str | None) -> str | None:
        # It is written into every audit record, which must never hold a credential.
        if value is not None and contains_secret(value):
            raise ValueError("principal looks like it contains a credential")
        return value
