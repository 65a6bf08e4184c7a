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
from typing import Any

from pydantic import ValidationError

from ... import txn
from ...audit.chain import TargetState
from .auditlog import AuditLog
from ...core.canonical import canonical_bytes, sha256_hex
from ...errors import AlreadyExistsError, InvalidValueError, LimitExceededError, PolicyError
from ...fs import LegacySource, open_parent, read_legacy_source
from ..tree import TreeDir
from .layout import AUDIT_DIR, SESSION_LOCK, STAGING_PREFIX, STATE_DIR, session_target
from ...core.records import SessionMetadata
from ...core.policy import check_value, encode_name
from ...core.secrets import SECRET_TYPES, contains_secret, redact
from ...core.secrets.vault import fingerprint, reference_id
from ...core.prepare import prepare
from .env import LocalEnv
from .session_dir import SessionDir
from .session_files import parse_manifest
from .store_sessions import build_session, manifest_line
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

from .migrate_records import RECORDS_DIR, MigrationRecord, record_path

LEGACY_SLOT = "legacy.entry"
Progress = Callable[[int, int], None]


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

    def __init__(self, env: LocalEnv) -> None:
        self._vault = env.master_key is not None
        self._key = env.fingerprint_key

    def keep(self, value: str | bytes, kind: str) -> tuple[str, str]:
        if not self._vault:
            return "redacted", fingerprint(self._key, value)
        raw = value.encode("utf-8") if isinstance(value, str) else value
        return "vault", reference_id(bytes(32), raw, "text" if isinstance(value, str) else "bytes")


def _items_over_cap(count: int, cap: int) -> str:
    return f"{count} transcript items exceed the cap of {cap} items per session (Limits.max_items)"


def check_session(env: LocalEnv, legacy: LegacySession) -> None:
    """Refuse what the ordinary write path would refuse for this content: the transcript item
    cap, each item, the `legacy.entry` slot and the metadata (policy, secrets and the value cap
    after redaction), and the metadata model. One slot per new session is always within
    max_slots_per_session (at least 1). Raises the PolicyError precheck reports."""
    limits = env.limits
    if len(legacy.items) > limits.max_items:
        raise LimitExceededError(_items_over_cap(len(legacy.items), limits.max_items))
    sink = _SizingSink(env)
    for index, item in enumerate(legacy.items):
        _check_value(env, f"transcript item {index}", item, sink)
    if legacy.extra:
        _check_value(env, f"slot {LEGACY_SLOT}", legacy.extra, sink)
    metadata = _check_value(env, "metadata", dict(legacy.metadata), sink)
    try:
        SessionMetadata.model_validate(metadata)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InvalidValueError(f"metadata field {where}: {first['msg']}") from None


def _check_value(env: LocalEnv, what: str, value: Any, sink: _SizingSink) -> Any:
    limits = env.limits
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


def precheck(env: LocalEnv, plan: LegacyPlan) -> None:
    """Every session must pass policy before anything is written (no half-validated import).
    Its content was checked by check_session while its file was read (the plan keeps the
    verdict, not the content); the item cap is checked here against this pipeline's limits."""
    for legacy in plan.sessions:
        if legacy.items > env.limits.max_items:
            raise LimitExceededError(f"legacy {legacy.source}: {_items_over_cap(legacy.items, env.limits.max_items)}"
                                     "; nothing was imported")
        if legacy.problem is not None:
            kind, why = legacy.problem
            raise kind(f"legacy {legacy.source}: {why}; nothing was imported")


def _fill(env: LocalEnv, stage: TreeDir, legacy: LegacySession, name: str, line: bytes) -> None:
    """Write one legacy session's content into its staged directory, through its own log."""
    directory = stage.open_dir(name)
    state = directory.open_dir(STATE_DIR)
    audit = directory.open_dir(AUDIT_DIR)
    lock = directory.lock(SESSION_LOCK, 0.0, env.clock())
    history = parse_manifest(line, f"staged session {name}")
    session = SessionDir(env, legacy.key, name, directory, state, env.new_log(audit), lock, history, None)
    try:
        sink = session.sink()
        ops: list[dict[str, Any]] = []
        batch: list[Any] = []
        size = 0
        for item in legacy.items:  # secrets are redacted on the way in, like any write
            redacted = prepare(item, sink, env.limits)
            batch.append(redacted)
            size += len(canonical_bytes(redacted))
            if size > env.limits.max_record_bytes // 4:
                ops.append({"op": "append", "items": batch})
                batch, size = [], 0
        if batch:
            ops.append({"op": "append", "items": batch})
        if legacy.metadata:
            metadata = SessionMetadata.model_validate(prepare(dict(legacy.metadata), sink, env.limits))
            ops.append({"op": "meta", "revision": session.next_revision(metadata).model_dump()})
        if legacy.extra:
            payload = prepare(legacy.extra, sink, env.limits)
            ops.append({"op": "slot", "ext_id": LEGACY_SLOT, "slot_version": 1, "payload": payload})
        vault_op = sink.vault_op()
        records = [[vault_op] if vault_op else []]
        for op in ops:  # one journal record per op keeps each under the record cap
            records[-1].append(op)
            records.append([])
        for batch_ops in records:
            if batch_ops:
                session.commit(batch_ops)
                if batch_ops[-1]["op"] == "meta":
                    session.set_manifest(session.manifest, session.revisions + 1)
                if session.seal_due():
                    session.seal()
        session.seal()
    finally:
        session.close()


class _Reader:
    """Planned sessions, read again from the source one file at a time; each file must be the
    one that was checked (same stamp), or the import stops."""

    def __init__(self, source: LegacySource, env: LocalEnv) -> None:
        self._source = source
        self._limits = env.limits
        self._map: dict[str, Any] | None = None

    def session(self, summary: SessionSummary) -> LegacySession:
        if summary.entry is None:
            return load_session(self._source.reread(summary.file, summary.stamp), summary, self._limits)
        if self._map is None:  # sessions.json: one file, parsed once
            self._map = map_document(self._source.reread(summary.file, summary.stamp), self._limits)
        return session_in_map(self._map, summary, self._limits)


def run(env: LocalEnv, log: AuditLog, root: TreeDir, sessions: TreeDir, path: str, plan: LegacyPlan,
        check_room: Callable[[int], None], progress: Progress | None = None) -> MigrationReport:
    report = ReportText(env.fingerprint_key)
    with redacted_errors(report), read_legacy_source(path, env.ctx, cap=MAX_LEGACY_FILE_BYTES) as source:
        for file, stamp in dict.fromkeys((s.file, s.stamp) for s in plan.sessions):
            source.check_unchanged(file, stamp)  # before anything is written: each file is the one checked
        done = _run(env, log, root, sessions, path, plan, _Reader(source, env), check_room, progress)
    done.duplicates = [(report(key), report(kept), report(dropped)) for key, kept, dropped in done.duplicates]
    return done


def _run(env: LocalEnv, log: AuditLog, root: TreeDir, sessions: TreeDir, path: str, plan: LegacyPlan,
         reader: _Reader, check_room: Callable[[int], None], progress: Progress | None) -> MigrationReport:
    existing = [s.key for s in plan.sessions if sessions.entry(encode_name(s.key)) is not None]
    if existing:
        raise AlreadyExistsError(f"{len(existing)} of the legacy sessions already exist in the store")
    check_room(len(plan.sessions))
    record_id = env.ctx.random_hex(8)
    holder, source_name = open_parent(path, env.ctx)
    backup = f"{source_name}.bak.{env.clock()}"
    staged = []
    for legacy in plan.sessions:
        log_id = env.ctx.random_hex(16)
        name, line = manifest_line(env, legacy.key, SessionMetadata(), log_id)
        staged.append((legacy, name, line, log_id))
    record = canonical_bytes(MigrationRecord(
        v=1, id=record_id, source=path, backup=backup, sessions=[name for _, name, _, _ in staged],
        created_ms=env.clock(),
    ).model_dump())
    staging = STAGING_PREFIX + record_id

    def act() -> None:
        with root.open_or_make_dir(RECORDS_DIR) as records:
            records.write_new(f"{record_id}.json", record)
        with sessions.make_dir(staging) as stage:
            for index, (legacy, name, line, log_id) in enumerate(staged, start=1):
                build_session(env, stage, name, name, line, log_id, log)
                _fill(env, stage, reader.session(legacy), name, line)  # one session in memory at a time
                if progress is not None:
                    progress(index, len(staged))
            for _, name, _, _ in staged:
                stage.rename(name, name, target=sessions)  # publish
        sessions.remove_tree(staging)
        holder.rename(source_name, backup)  # last: the legacy source is kept as its backup

    try:
        txn.apply(log, txn.Change(
            "migrate.run", record_path(record_id), sha256_hex(record), len(record), act, lambda: None,
            tuple(TargetState(target=session_target(name), sha256=sha256_hex(line), size=len(line))
                  for _, name, line, _ in staged),
        ))
    finally:
        holder.close()
    return MigrationReport(record_id, path, backup, [legacy.key for legacy, _, _, _ in staged], plan.items,
                           list(plan.duplicates))

