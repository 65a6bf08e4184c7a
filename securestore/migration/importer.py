"""`migrate run` and `migrate rollback`: each is ONE audited store-log intent.

run: every session is built complete under `sessions/.staging-<id>/` (each with its own audit
log: the ordinary session pipeline writes it), then published by rename, then the legacy
source is renamed to `<name>.bak.<timestamp>`. The intent lists every session it publishes, so a
crash settles to the old state (a partial import is undone) or, when every step was done, the new.

rollback: moves the imported sessions aside (`migrated-aside/<id>/`) and restores the legacy
source from its backup. Its steps are idempotent, so recovery finishes an interrupted rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..audit.chain import Intent, TargetState
from ..audit.log import AuditLog
from ..canonical import canonical_bytes, sha256_hex
from ..errors import AlreadyExistsError, IntegrityError, NotFoundError, PolicyError
from ..engine.journal import apply_to_items
from ..fs import Dir, open_parent
from ..layout import (
    AUDIT_DIR,
    SESSION_LOCK,
    STAGING_PREFIX,
    STATE_DIR,
    Manifest,
    SessionMetadata,
    decode_model,
    session_target,
)
from ..pipeline import Change, OpenSession, Pipeline, VaultSink
from ..policy import check_value, encode_name
from ..secrets import SECRET_TYPES, redact
from .legacy import LegacyPlan, LegacySession

RECORDS_DIR = "migrations"
ASIDE_DIR = "migrated-aside"
LEGACY_SLOT = "legacy.entry"
Progress = Callable[[int, int], None]


class MigrationRecord(BaseModel):
    """Kept in the store: what one import brought in, so it can be rolled back."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)
    v: Literal[1]
    id: str = Field(pattern=r"^[0-9a-f]{16}$")
    source: str
    backup: str
    sessions: list[str]
    created_ms: int
    rolled_back: bool = False


@dataclass
class MigrationReport:
    id: str
    source: str
    backup: str
    sessions: list[str] = field(default_factory=list)
    items: int = 0
    duplicates: list[tuple[str, str, str]] = field(default_factory=list)


class _DryRun:
    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        return "redacted", "dryrun"


def precheck(pipeline: Pipeline, plan: LegacyPlan) -> None:
    """Every value must pass policy before anything is written (no half-validated import)."""
    for legacy in plan.sessions:
        values: list[Any] = [*legacy.items, legacy.extra, dict(legacy.metadata)]
        try:
            for value in values:
                check_value(value, pipeline.limits, leaf_types=SECRET_TYPES)
                redact(value, _DryRun(), max_secrets=pipeline.limits.max_secrets_per_value)
            SessionMetadata.model_validate(legacy.metadata)
        except PolicyError as error:
            raise type(error)(f"legacy {legacy.source}: {error}") from None
        except ValueError:
            raise PolicyError(f"legacy {legacy.source}: metadata does not fit the session model") from None


def _record_path(record_id: str) -> str:
    return f"{RECORDS_DIR}/{record_id}.json"


def _fill(pipeline: Pipeline, stage: Dir, legacy: LegacySession, name: str, line: bytes) -> None:
    """Write one legacy session's content into its staged directory, through its own log."""
    directory = stage.open_dir(name)
    state = directory.open_dir(STATE_DIR)
    audit = directory.open_dir(AUDIT_DIR)
    lock = directory.lock(SESSION_LOCK, 0.0, pipeline.clock())
    manifest: Manifest = decode_model(Manifest, line, f"staged session {name}")
    session = OpenSession(legacy.key, name, directory, state, pipeline.new_log(audit), lock, manifest)
    try:
        sink = VaultSink(pipeline, session)
        ops: list[dict[str, Any]] = []
        batch: list[Any] = []
        size = 0
        for item in legacy.items:  # secrets are redacted on the way in, like any write
            redacted, _ = pipeline.prepare(session, item, sink)
            batch.append(redacted)
            size += len(canonical_bytes(redacted))
            if size > pipeline.limits.max_record_bytes // 4:
                ops.append({"op": "append", "items": batch})
                batch, size = [], 0
        if batch:
            ops.append({"op": "append", "items": batch})
        if legacy.metadata:
            metadata = SessionMetadata.model_validate(pipeline.prepare(session, dict(legacy.metadata), sink)[0])
            ops.append({"op": "meta", "revision": pipeline.next_revision(session, metadata).model_dump()})
        if legacy.extra:
            payload, _ = pipeline.prepare(session, legacy.extra, sink)
            ops.append({"op": "slot", "ext_id": LEGACY_SLOT, "slot_version": 1, "payload": payload})
        vault_op = sink.vault_op()
        records = [[vault_op] if vault_op else []]
        for op in ops:  # one journal record per op keeps each under the record cap
            records[-1].append(op)
            records.append([])
        for batch_ops in records:
            if batch_ops:
                pipeline.append_record(session, batch_ops)
                apply_to_items(session.items, batch_ops)  # the snapshot below materializes these
                if batch_ops[-1]["op"] == "meta":
                    session.revisions += 1
        if session.journal_records:
            pipeline.snapshot(session)
    finally:
        session.close()


def run(pipeline: Pipeline, log: AuditLog, root: Dir, sessions: Dir, path: str, plan: LegacyPlan,
        progress: Progress | None = None) -> MigrationReport:
    existing = [s.key for s in plan.sessions if sessions.entry(encode_name(s.key)) is not None]
    if existing:
        raise AlreadyExistsError(f"{len(existing)} of the legacy sessions already exist in the store")
    pipeline.check_room(sessions, len(plan.sessions))
    record_id = pipeline.ctx.random_hex(8)
    holder, source_name = open_parent(path, pipeline.ctx)
    backup = f"{source_name}.bak.{pipeline.clock()}"
    staged = []
    for legacy in plan.sessions:
        log_id = pipeline.ctx.random_hex(16)
        name, line = pipeline.manifest_line(legacy.key, SessionMetadata(), log_id)
        staged.append((legacy, name, line, log_id))
    record = canonical_bytes(MigrationRecord(
        v=1, id=record_id, source=path, backup=backup, sessions=[name for _, name, _, _ in staged],
        created_ms=pipeline.clock(),
    ).model_dump())
    staging = STAGING_PREFIX + record_id

    def act() -> None:
        with root.open_or_make_dir(RECORDS_DIR) as records:
            records.write_new(f"{record_id}.json", record)
        with sessions.make_dir(staging) as stage:
            for index, (legacy, name, line, log_id) in enumerate(staged, start=1):
                pipeline.build_session(stage, name, name, line, log_id, log)
                _fill(pipeline, stage, legacy, name, line)
                if progress is not None:
                    progress(index, len(staged))
            for _, name, _, _ in staged:
                stage.rename(name, name, target=sessions)  # publish
        sessions.remove_tree(staging)
        holder.rename(source_name, backup)  # last: the legacy source is kept as its backup

    try:
        pipeline.apply(log, Change(
            "migrate.run", _record_path(record_id), sha256_hex(record), len(record), act, lambda: None,
            tuple(TargetState(target=session_target(name), sha256=sha256_hex(line), size=len(line))
                  for _, name, line, _ in staged),
        ))
    finally:
        holder.close()
    return MigrationReport(record_id, path, backup, [legacy.key for legacy, _, _, _ in staged], plan.items,
                           plan.duplicates)


def _read_record(root: Dir, record_id: str) -> tuple[MigrationRecord, bytes] | None:
    if root.entry(RECORDS_DIR) is None:
        return None
    with root.open_dir(RECORDS_DIR) as records:
        data = records.read_optional(f"{record_id}.json", 64 * 1024 * 1024)
    if data is None:
        return None
    try:
        return MigrationRecord.model_validate(orjson.loads(data)), data
    except (orjson.JSONDecodeError, ValidationError):
        raise IntegrityError(f"migration record {record_id} is malformed") from None


def _record_id(intent: Intent) -> str:
    return intent.target.removeprefix(f"{RECORDS_DIR}/").removesuffix(".json")


def _source_state(path: str, backup: str, pipeline: Pipeline) -> tuple[bool, bool]:
    """(source present, backup present)."""
    holder, name = open_parent(path, pipeline.ctx)
    with holder:
        return holder.entry(name) is not None, holder.entry(backup) is not None


def observe(pipeline: Pipeline, root: Dir, sessions: Dir, intent: Intent) -> str | None:
    """For recovery: the intent's hash when the change is complete, else None. An interrupted
    rollback is finished here first (its steps are idempotent)."""
    found = _read_record(root, _record_id(intent))
    if found is None:
        return None
    record, data = found
    if intent.op == "migrate.rollback":
        _roll_back(pipeline, root, sessions, record)  # roll forward: its steps are idempotent
        return sha256_hex(_updated(record))
    if any(pipeline.session_identity(sessions, t.target.removeprefix("sessions/")) != t.sha256 for t in intent.also):
        return None
    source, backup = _source_state(record.source, record.backup, pipeline)
    return sha256_hex(data) if backup and not source else None


def undo(pipeline: Pipeline, root: Dir, sessions: Dir, intent: Intent) -> None:
    """Take back a partial import: remove what it published, restore the source's name."""
    found = _read_record(root, _record_id(intent))
    for target in intent.also:
        name = target.target.removeprefix("sessions/")
        if pipeline.session_identity(sessions, name) == target.sha256:  # only what this import made
            pipeline.shred_vault_key(sessions, name)
            sessions.remove_tree(name)
    if found is not None:
        record = found[0]
        source, backup = _source_state(record.source, record.backup, pipeline)
        if backup and not source:
            holder, name = open_parent(record.source, pipeline.ctx)
            with holder:
                holder.rename(record.backup, name)


def _updated(record: MigrationRecord) -> bytes:
    return canonical_bytes(record.model_copy(update={"rolled_back": True}).model_dump())


def _roll_back(pipeline: Pipeline, root: Dir, sessions: Dir, record: MigrationRecord) -> None:
    with root.open_or_make_dir(ASIDE_DIR) as aside, aside.open_or_make_dir(record.id) as destination:
        for name in record.sessions:
            if sessions.entry(name) is not None and destination.entry(name) is None:
                sessions.rename(name, name, target=destination)
    source, backup = _source_state(record.source, record.backup, pipeline)
    if backup and not source:
        holder, name = open_parent(record.source, pipeline.ctx)
        with holder:
            holder.rename(record.backup, name)
    with root.open_dir(RECORDS_DIR) as records:
        records.write_atomic(f"{record.id}.json", _updated(record))


def rollback(pipeline: Pipeline, log: AuditLog, root: Dir, sessions: Dir, path: str) -> MigrationRecord:
    """Undo the latest import of `path` that has not been rolled back."""
    candidates = []
    if root.entry(RECORDS_DIR) is not None:
        with root.open_dir(RECORDS_DIR) as records:
            for entry in records.list():
                if entry.endswith(".json") and not entry.startswith("."):
                    found = _read_record(root, entry.removesuffix(".json"))
                    if found is not None and found[0].source == path and not found[0].rolled_back:
                        candidates.append(found[0])
    if not candidates:
        raise NotFoundError(f"no import of {path} to roll back")
    record = max(candidates, key=lambda r: r.created_ms)
    updated = _updated(record)
    pipeline.apply(log, Change(
        "migrate.rollback", _record_path(record.id), sha256_hex(updated), len(updated),
        lambda: _roll_back(pipeline, root, sessions, record), lambda: None,
        tuple(TargetState(target=session_target(name)) for name in record.sessions),
    ))
    return record

