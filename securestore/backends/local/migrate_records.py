"""The migration records an import keeps in the store (`migrations/<id>.json`), verified
against the store log before any use; how recovery settles a dangling migrate intent; and
`migrate rollback`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ... import txn
from ...audit.chain import COMMITTED_RESULTS, Intent, Outcome, TargetState, parse_record
from ...audit.errors import RecordError
from ...core.canonical import canonical_bytes, sha256_hex
from ...errors import IntegrityError, NotFoundError
from ...fs import open_parent
from ..tree import TreeDir
from .auditlog import LOG_FILE, AuditLog
from .env import LocalEnv
from .layout import AUDIT_DIR, session_target
from .store_sessions import session_identity
from .sweeps import shred_vault_key

RECORDS_DIR = "migrations"
ASIDE_DIR = "migrated-aside"
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


def record_path(record_id: str) -> str:
    return f"{RECORDS_DIR}/{record_id}.json"


def _record_data(root: TreeDir, record_id: str) -> bytes | None:
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


def _audit_trail(root: TreeDir, max_line: int) -> _Trail:
    """Stream the store log once, pairing migration-record intents with their outcomes."""
    trail, pending = _Trail(), dict[int, Intent]()
    with root.open_dir(AUDIT_DIR) as audit:
        for offset, line in audit.iter_lines(LOG_FILE, max_line + 1):
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
    target = record_path(record_id)
    digest = sha256_hex(data)
    if target in trail.committed and digest == trail.committed[target]:
        return True
    if dangling is not None and dangling.target == target and digest == dangling.sha256:
        return True
    if target not in trail.committed and digest in trail.void.get(target, set()):
        return False
    raise IntegrityError(f"refused: migration record {target} does not match the store audit trail (changed outside "
                         "securestore); nothing was changed: restore it from a backup and run `securestore audit verify`")


def _verified_record(env: LocalEnv, root: TreeDir, intent: Intent) -> tuple[MigrationRecord, str] | None:
    """The record a dangling migrate intent names, and its hash, once verified against the store log."""
    record_id = _record_id(intent)
    data = _record_data(root, record_id)
    if data is None:
        return None
    if not _matches_trail(record_id, data, _audit_trail(root, env.limits.max_audit_line_bytes), intent):
        raise IntegrityError(f"refused: migration record {record_path(record_id)} belongs to an import that never "
                             "committed; nothing was changed: run `securestore audit verify`")
    return _parse_record(record_id, data), sha256_hex(data)


def _record_id(intent: Intent) -> str:
    return intent.target.removeprefix(f"{RECORDS_DIR}/").removesuffix(".json")


def _source_state(path: str, backup: str, env: LocalEnv) -> tuple[bool, bool]:
    """(source present, backup present)."""
    holder, name = open_parent(path, env.ctx)
    with holder:
        return holder.entry(name) is not None, holder.entry(backup) is not None


def observe(env: LocalEnv, root: TreeDir, sessions: TreeDir, intent: Intent) -> str | None:
    """For recovery: the intent's hash when the change is complete, else None. An interrupted
    rollback is finished here first (its steps are idempotent). Only a verified record is used."""
    found = _verified_record(env, root, intent)
    if found is None:
        return None
    record, digest = found
    if intent.op == "migrate.rollback":
        _roll_back(env, root, sessions, record)  # roll forward: its steps are idempotent
        return sha256_hex(_updated(record))
    if any(session_identity(env, sessions, t.target.removeprefix("sessions/")) != t.sha256 for t in intent.also):
        return None
    source, backup = _source_state(record.source, record.backup, env)
    return digest if backup and not source else None


def undo(env: LocalEnv, root: TreeDir, sessions: TreeDir, intent: Intent) -> None:
    """Take back a partial import: remove what it published, restore the source's name."""
    found = _verified_record(env, root, intent)  # first: a refusal leaves everything as it is
    for target in intent.also:
        name = target.target.removeprefix("sessions/")
        if session_identity(env, sessions, name) == target.sha256:  # only what this import made
            shred_vault_key(sessions, name)
            sessions.remove_tree(name)
    if found is not None:
        record = found[0]
        source, backup = _source_state(record.source, record.backup, env)
        if backup and not source:
            holder, name = open_parent(record.source, env.ctx)
            with holder:
                holder.rename(record.backup, name)


def _updated(record: MigrationRecord) -> bytes:
    return canonical_bytes(record.model_copy(update={"rolled_back": True}).model_dump())


def _roll_back(env: LocalEnv, root: TreeDir, sessions: TreeDir, record: MigrationRecord) -> None:
    with root.open_or_make_dir(ASIDE_DIR) as aside, aside.open_or_make_dir(record.id) as destination:
        for name in record.sessions:
            if sessions.entry(name) is not None and destination.entry(name) is None:
                sessions.rename(name, name, target=destination)
    source, backup = _source_state(record.source, record.backup, env)
    if backup and not source:
        holder, name = open_parent(record.source, env.ctx)
        with holder:
            holder.rename(record.backup, name)
    with root.open_dir(RECORDS_DIR) as records:
        records.write_atomic(f"{record.id}.json", _updated(record))


def rollback(env: LocalEnv, log: AuditLog, root: TreeDir, sessions: TreeDir, path: str) -> MigrationRecord:
    """Undo the latest import of `path` that has not been rolled back. Every record is verified
    against the store log first (one pass): the choice itself rests on their content."""
    trail = _audit_trail(root, env.limits.max_audit_line_bytes)
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
    txn.apply(log, txn.Change(
        "migrate.rollback", record_path(record.id), sha256_hex(updated), len(updated),
        lambda: _roll_back(env, root, sessions, record), lambda: None,
        tuple(TargetState(target=session_target(name)) for name in record.sessions),
    ))
    return record


def _record_ids(root: TreeDir) -> list[str]:
    if root.entry(RECORDS_DIR) is None:
        return []
    with root.open_dir(RECORDS_DIR) as records:
        return [entry.removesuffix(".json") for entry in records.list()
                if entry.endswith(".json") and not entry.startswith(".")]


def observer(env: LocalEnv, root: TreeDir, sessions: TreeDir) -> txn.Observer:
    """How the store log's reconciliation settles a dangling migrate intent."""
    def undo_run(intent: Intent) -> None:
        if intent.op == "migrate.run":
            undo(env, root, sessions, intent)

    return txn.Observer(observe=lambda intent: observe(env, root, sessions, intent), undo=undo_run)
