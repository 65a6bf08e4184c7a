"""Creating and deleting a session: store-log changes, each one intent and one rename."""

from __future__ import annotations

from collections.abc import Callable

from ... import txn
from ...audit.checkpoint import Checkpoint
from ...core.canonical import sha256_hex
from ...core.policy import encode_name
from ...core.records import Manifest, SessionMetadata, encode_model
from ...errors import LimitExceededError
from ..tree import TreeDir, TreeLock
from .auditlog import AuditLog
from .env import LocalEnv
from .layout import (
    AUDIT_DIR,
    BACKEND,
    JOURNAL_FILE,
    LAYOUT_VERSION,
    MANIFEST_FILE,
    SESSION_LOCK,
    STAGING_PREFIX,
    STATE_DIR,
    TRASH_PREFIX,
    session_target,
)
from .session_dir import NewSession, SessionDir
from .session_files import split_lines
from .sweeps import shred_vault_key


def session_identity(env: LocalEnv, sessions: TreeDir, name: str) -> str | None:
    """What the store log records for a session: the hash of its first manifest revision."""
    if sessions.entry(name) is None:
        return None
    with sessions.open_dir(name) as directory:
        data = directory.read_optional(MANIFEST_FILE, env.limits.max_manifest_bytes)
    if data is None:
        return None
    lines, _ = split_lines(data)
    return sha256_hex(lines[0]) if lines else None


def manifest_line(env: LocalEnv, key: str, metadata: SessionMetadata, log_id: str) -> tuple[str, bytes]:
    """Revision 1 of a new session's manifest: (encoded name, the line)."""
    name, now = encode_name(key), env.clock()
    manifest = Manifest(
        v=1, rev=1, ts=now, key=key, name=name, store_id=env.identity.store_id, backend=BACKEND,
        layout_version=LAYOUT_VERSION, audit_log_id=log_id, created_ms=now, updated_ms=now, metadata=metadata,
    )
    line = encode_model(manifest) + b"\n"
    if len(line) > env.limits.max_manifest_bytes:
        raise LimitExceededError("session manifest exceeds its size cap")
    return name, line


def build_session(env: LocalEnv, parent: TreeDir, dirname: str, name: str, line: bytes, log_id: str,
                  store_log: AuditLog) -> tuple[AuditLog, Checkpoint]:
    """A complete, empty session directory: manifest, journal, state/, audit/ with genesis.
    Its log's first key derives from the store log's current key and the creating intent.
    Nobody sees it before the rename that publishes it, so its files are written in place and
    fsynced, and each directory is synced once, before that rename (no temp file per file)."""
    with parent.make_dir(dirname, durable=False) as directory:
        directory.write_private(MANIFEST_FILE, line)
        directory.write_private(JOURNAL_FILE, b"")
        directory.make_dir(STATE_DIR, durable=False).close()
        with directory.make_dir(AUDIT_DIR, durable=False) as audit_dir:
            session_log = env.new_log(audit_dir)
            genesis = session_log.create(
                log_id, {"store": env.identity.store_id, "scope": "session", "session": name},
                store_id=env.identity.store_id, chain=store_log.child_key(name), rule=env.epoch_rule,
                unpublished=True)
            audit_dir.sync()
        directory.sync()
    return session_log, genesis


def create_session(env: LocalEnv, log: AuditLog, sessions: TreeDir, key: str, metadata: SessionMetadata,
                   check_room: Callable[[int], None], lock_timeout: float) -> NewSession:
    """Create a session directory (manifest revision 1, empty journal, state/, audit/); the
    caller holds the store lock and saw no entry for it, and gets the new session's writer lock
    (NewSession.lock: the caller releases it). `check_room(1)` refuses it when the store is full
    (the caller knows the count)."""
    check_room(1)
    log_id = env.ctx.random_hex(16)
    name, line = manifest_line(env, key, metadata, log_id)
    staging = STAGING_PREFIX + env.ctx.random_hex(8)

    built: list[tuple[AuditLog, Checkpoint, TreeLock]] = []

    def act() -> None:
        # Build the whole session under a temporary name, then publish it with one rename. Its
        # writer lock is taken first, for the creator: on disk the rename is visible at once,
        # and a writer opening the session then must wait for the creator to let go.
        session_log, genesis = build_session(env, sessions, staging, name, line, log_id, log)
        with sessions.open_dir(staging) as directory:
            # Lasting: held past the store change's commit (on PostgreSQL, whose group it is in).
            built.append((session_log, genesis, directory.lock(SESSION_LOCK, lock_timeout, env.clock(), lasting=True)))
        sessions.rename(staging, name)

    try:
        txn.apply(log, txn.Change("session.create", session_target(name), sha256_hex(line), len(line), act,
                                  lambda: session_identity(env, sessions, name)))
    except BaseException:  # (once applied, the staging name was renamed away: nothing to look for)
        for _, _, writer_lock in built:
            writer_lock.release()
        if sessions.entry(staging) is not None and not env.ctx.failed:
            sessions.remove_tree(staging)
        raise
    return NewSession(line, *built[0])


def delete_session(env: LocalEnv, log: AuditLog, sessions: TreeDir, session: SessionDir) -> None:
    trash = TRASH_PREFIX + env.ctx.random_hex(8)
    name = session.name

    def act() -> None:
        sessions.rename(name, trash)  # the commit point: the session is gone
        session.deleted = True
        shred_vault_key(sessions, trash)

    txn.apply(log, txn.Change("session.delete", session_target(name), None, None, act,
                              lambda: session_identity(env, sessions, name)))
    sessions.remove_tree(trash)  # frees the space; a crash before this is cleaned up later
