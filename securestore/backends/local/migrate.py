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

from ...audit.chain import COMMITTED_RESULTS, Intent, Outcome, TargetState, parse_record
from ...audit.errors import RecordError
from .auditlog import LOG_FILE, AuditLog
from ...core.canonical import canonical_bytes, sha256_hex
from ...errors import (
    AlreadyExistsError,
    IntegrityError,
    InvalidValueError,
    LimitExceededError,
    NotFoundError,
    PolicyError,
)
from ...core.journal import apply_to_items
from ...fs import Dir, LegacySource, iter_lines, locks, open_parent, read_legacy_source
from .layout import AUDIT_DIR, SESSION_LOCK, STAGING_PREFIX, STATE_DIR, session_target
from ...core.records import Manifest, SessionMetadata, decode_model
from ...txn import Change
from .pipeline import OpenSession, Pipeline, VaultSink
from ...core.policy import check_value, encode_name
from ...core.secrets import SECRET_TYPES, contains_secret, redact
from ...core.secrets.vault import fingerprint, reference_id
from ...core.legacy import (
    MAX_LEGACY_FILE_BYTES,
    LegacyPlan,
    LegacySession,
    ReportText,
    SessionSummary,
    load_session,
    map_document,
    redacted_errors,
    session_in_map,
)

RECORDS_DIR = "migrations"
ASIDE_DIR = "migrated-aside"
LEGACY_SLOT = "legacy.entry"
Progress = Callable[[int, int], None]
_RECORD_CAP = 64 * 1024 * 1024
# Pre-filters on canonical store-log lines (sorted keys, no spaces): only these lines are parsed.
_RECORD_TARGET = f'"target":"{RECORDS_DIR}/'.encode()
_OUTCOME = b'"kind":"outcome"'


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


class _SizingSink:
    """Redaction without side effects, with references as long as the real ones: the value cap
    applies to the value after redaction, as on the ordinary write path."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._vault = pipeline.master_key is not None
        self._key = pipeline.fingerprint_key

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        if not self._vault:
            return "redacted", fingerprint(self._key, value)
        raw = value.encode("utf-8") if isinstance(value, str) else value
        return "vault", reference_id(bytes(32), raw, "text" if isinstance(value, str) else "bytes")


def _items_over_cap(count: int, cap: int) -> str:
    return f"{count} transcript items exceed the cap of {cap} items per session (Limits.max_items)"


def check_session(pipeline: Pipeline, legacy: LegacySession) -> None:
    """Refuse what the ordinary write path would refuse for this content: the transcript item
    cap, each item, the `legacy.entry` slot and the metadata (policy, secrets and the value cap
    after redaction), and the metadata model. One slot per new session is always within
    max_slots_per_session (at least 1). Raises the PolicyError precheck reports."""
    limits = pipeline.limits
    if len(legacy.items) > limits.max_items:
        raise LimitExceededError(_items_over_cap(len(legacy.items), limits.max_items))
    sink = _SizingSink(pipeline)
    for index, item in enumerate(legacy.items):
        _check_value(pipeline, f"transcript item {index}", item, sink)
    if legacy.extra:
        _check_value(pipeline, f"slot {LEGACY_SLOT}", legacy.extra, sink)
    metadata = _check_value(pipeline, "metadata", dict(legacy.metadata), sink)
    try:
        SessionMetadata.model_validate(metadata)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidValueError(f"metadata field {where}: {first['msg']}") from None


def _check_value(pipeline: Pipeline, what: str, value: Any, sink: _SizingSink) -> Any:
    limits = pipeline.limits
    try:
        check_value(value, limits, leaf_types=SECRET_TYPES, hide=contains_secret)
        redacted = redact(value, sink, max_secrets=limits.max_secrets_per_value).value
        size = len(canonical_bytes(redacted))
        if size > limits.max_value_bytes:
            raise LimitExceededError(f"{size} bytes after redaction exceed the {limits.max_value_bytes}-byte value "
                                     "cap (Limits.max_value_bytes)")
    except PolicyError as error:
        raise type(error)(f"{what}: {error}") from None
    return redacted


def precheck(pipeline: Pipeline, plan: LegacyPlan) -> None:
    """Every session must pass policy before anything is written (no half-validated import).
    Its content was checked by check_session while its file was read (the plan keeps the
    verdict, not the content); the item cap is checked here against this pipeline's limits."""
    for legacy in plan.sessions:
        if legacy.items > pipeline.limits.max_items:
            raise LimitExceededError(f"legacy {legacy.source}: {_items_over_cap(legacy.items, pipeline.limits.max_items)}"
                                     "; nothing was imported")
        if legacy.problem is not None:
            kind, why = legacy.problem
            raise kind(f"legacy {legacy.source}: {why}; nothing was imported")


def _record_path(record_id: str) -> str:
    return f"{RECORDS_DIR}/{record_id}.json"


def _fill(pipeline: Pipeline, stage: Dir, legacy: LegacySession, name: str, line: bytes) -> None:
    """Write one legacy session's content into its staged directory, through its own log."""
    directory = stage.open_dir(name)
    state = directory.open_dir(STATE_DIR)
    audit = directory.open_dir(AUDIT_DIR)
    lock = locks.lock(directory, SESSION_LOCK, 0.0, pipeline.clock())
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


class _Reader:
    """Planned sessions, read again from the source one file at a time; each file must be the
    one that was checked (same stamp), or the import stops."""

    def __init__(self, source: LegacySource, pipeline: Pipeline) -> None:
        self._source = source
        self._limits = pipeline.limits
        self._map: dict[str, Any] | None = None

    def session(self, summary: SessionSummary) -> LegacySession:
        if summary.entry is None:
            return load_session(self._source.reread(summary.file, summary.stamp), summary, self._limits)
        if self._map is None:  # sessions.json: one file, parsed once
            self._map = map_document(self._source.reread(summary.file, summary.stamp), self._limits)
        return session_in_map(self._map, summary, self._limits)


def run(pipeline: Pipeline, log: AuditLog, root: Dir, sessions: Dir, path: str, plan: LegacyPlan,
        progress: Progress | None = None) -> MigrationReport:
    report = ReportText(pipeline.fingerprint_key)
    with redacted_errors(report), read_legacy_source(path, pipeline.ctx, cap=MAX_LEGACY_FILE_BYTES) as source:
        for file, stamp in dict.fromkeys((s.file, s.stamp) for s in plan.sessions):
            source.check_unchanged(file, stamp)  # before anything is written: each file is the one checked
        done = _run(pipeline, log, root, sessions, path, plan, _Reader(source, pipeline), progress)
    done.duplicates = [(report(key), report(kept), report(dropped)) for key, kept, dropped in done.duplicates]
    return done


def _run(pipeline: Pipeline, log: AuditLog, root: Dir, sessions: Dir, path: str, plan: LegacyPlan,
         reader: _Reader, progress: Progress | None) -> MigrationReport:
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
                _fill(pipeline, stage, reader.session(legacy), name, line)  # one session in memory at a time
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
                           list(plan.duplicates))


def _record_data(root: Dir, record_id: str) -> bytes | None:
    if root.entry(RECORDS_DIR) is None:
        return None
    with root.open_dir(RECORDS_DIR) as records:
        return records.read_optional(f"{record_id}.json", _RECORD_CAP)


def _parse_record(record_id: str, data: bytes) -> MigrationRecord:
    try:
        return MigrationRecord.model_validate(orjson.loads(data))
    except (orjson.JSONDecodeError, ValidationError):
        raise IntegrityError(f"migration record {record_id} is malformed") from None


@dataclass
class _Trail:
    """What the store log says about migration records, per target (`migrations/<id>.json`)."""

    committed: dict[str, str | None] = field(default_factory=dict)  # hash its last committed change gave it
    void: dict[str, set[str]] = field(default_factory=dict)  # hashes of changes settled as not applied


def _audit_trail(root: Dir, max_line: int) -> _Trail:
    """Stream the store log once, pairing migration-record intents with their outcomes."""
    trail, pending = _Trail(), dict[int, Intent]()
    with root.open_dir(AUDIT_DIR) as audit:
        for offset, line in iter_lines(audit, LOG_FILE, max_line + 1):
            if not line.endswith(b"\n"):
                break  # a torn tail is not a record (the next writer repairs it)
            if _RECORD_TARGET in line:
                record = _log_record(line, offset)
                if isinstance(record, Intent) and record.target.startswith(f"{RECORDS_DIR}/"):
                    pending[record.seq] = record
            elif pending and _OUTCOME in line:
                record = _log_record(line, offset)
                if isinstance(record, Outcome) and record.txn in pending:
                    intent = pending.pop(record.txn)
                    if record.result in COMMITTED_RESULTS:
                        trail.committed[intent.target] = intent.sha256
                    elif intent.sha256 is not None:
                        trail.void.setdefault(intent.target, set()).add(intent.sha256)
    return trail


def _log_record(line: bytes, offset: int) -> Intent | Outcome | None:
    try:
        record = parse_record(line[:-1])
    except RecordError as exc:
        raise IntegrityError(f"store log record at byte {offset} fails the {exc.check} check, so migration records "
                             "cannot be verified; nothing was changed: run `securestore audit verify`") from None
    return record if isinstance(record, (Intent, Outcome)) else None


def _matches_trail(record_id: str, data: bytes, trail: _Trail, dangling: Intent | None) -> bool:
    """True: the record holds what the store log last committed for it (or what the dangling
    intent being settled wrote). False: a void record, left by an import that never committed.
    Anything else was changed outside securestore and is refused before anything is touched."""
    target = _record_path(record_id)
    digest = sha256_hex(data)
    if target in trail.committed and digest == trail.committed[target]:
        return True
    if dangling is not None and dangling.target == target and digest == dangling.sha256:
        return True
    if target not in trail.committed and digest in trail.void.get(target, set()):
        return False
    raise IntegrityError(f"refused: migration record {target} does not match the store audit trail (changed outside "
                         "securestore); nothing was changed: restore it from a backup and run `securestore audit verify`")


def _verified_record(pipeline: Pipeline, root: Dir, intent: Intent) -> tuple[MigrationRecord, str] | None:
    """The record a dangling migrate intent names, and its hash, once verified against the store log."""
    record_id = _record_id(intent)
    data = _record_data(root, record_id)
    if data is None:
        return None
    if not _matches_trail(record_id, data, _audit_trail(root, pipeline.limits.max_audit_line_bytes), intent):
        raise IntegrityError(f"refused: migration record {_record_path(record_id)} belongs to an import that never "
                             "committed; nothing was changed: run `securestore audit verify`")
    return _parse_record(record_id, data), sha256_hex(data)


def _record_id(intent: Intent) -> str:
    return intent.target.removeprefix(f"{RECORDS_DIR}/").removesuffix(".json")


def _source_state(path: str, backup: str, pipeline: Pipeline) -> tuple[bool, bool]:
    """(source present, backup present)."""
    holder, name = open_parent(path, pipeline.ctx)
    with holder:
        return holder.entry(name) is not None, holder.entry(backup) is not None


def observe(pipeline: Pipeline, root: Dir, sessions: Dir, intent: Intent) -> str | None:
    """For recovery: the intent's hash when the change is complete, else None. An interrupted
    rollback is finished here first (its steps are idempotent). Only a verified record is used."""
    found = _verified_record(pipeline, root, intent)
    if found is None:
        return None
    record, digest = found
    if intent.op == "migrate.rollback":
        _roll_back(pipeline, root, sessions, record)  # roll forward: its steps are idempotent
        return sha256_hex(_updated(record))
    if any(pipeline.session_identity(sessions, t.target.removeprefix("sessions/")) != t.sha256 for t in intent.also):
        return None
    source, backup = _source_state(record.source, record.backup, pipeline)
    return digest if backup and not source else None


def undo(pipeline: Pipeline, root: Dir, sessions: Dir, intent: Intent) -> None:
    """Take back a partial import: remove what it published, restore the source's name."""
    found = _verified_record(pipeline, root, intent)  # first: a refusal leaves everything as it is
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
    """Undo the latest import of `path` that has not been rolled back. Every record is verified
    against the store log first (one pass): the choice itself rests on their content."""
    trail = _audit_trail(root, pipeline.limits.max_audit_line_bytes)
    candidates = []
    for record_id in _record_ids(root):
        data = _record_data(root, record_id)
        if data is None or not _matches_trail(record_id, data, trail, None):
            continue  # gone, or void: an import that never committed has nothing to roll back
        record = _parse_record(record_id, data)
        if record.source == path and not record.rolled_back:
            candidates.append(record)
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


def _record_ids(root: Dir) -> list[str]:
    if root.entry(RECORDS_DIR) is None:
        return []
    with root.open_dir(RECORDS_DIR) as records:
        return [entry.removesuffix(".json") for entry in records.list()
                if entry.endswith(".json") and not entry.startswith(".")]
