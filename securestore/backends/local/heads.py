"""The store log commits to session log heads, so one session rolled back to an older copy of
itself is caught by `audit verify --seed` without an anchor.

A session writer that signs a new checkpoint (at close, or an idle session sealed by the
heartbeat) leaves a marker `audit/heads/<session name>` in the store. Every store-level
operation, and every `audit seal`, takes the markers and appends `heads` records naming each
marked session's latest signed checkpoint (log id, size, root, head). A marker is removed
BEFORE its session's checkpoint is read, so a writer sealing again in between leaves a new
marker and is never missed. Markers are not fsynced (a crash may lose one): `audit seal`
also commits every session whose checkpoints changed since the previous seal, by the
checkpoint file's modification time against the previous seal's stamp file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from ...audit.checkpoint import CHECKPOINTS_FILE, Checkpoint, open_note
from ...audit.keys import VerifierKey
from ...audit.errors import RecordError
from .auditlog import AuditLog
from ...errors import SecureStoreError
from ..tree import TreeDir
from .layout import AUDIT_DIR
from ...core.policy import is_session_name

HEADS_DIR = "heads"  # in the store's audit directory
SWEPT = ".swept"  # its modification time: when the previous `audit seal` started
_STAMP_PREFIX = ".sweep-"
_PER_RECORD = 100  # keeps a heads record far below the audit line cap
_CLOCK_SLACK_NS = 2_000_000_000  # filesystem timestamps are coarse: look back a little further


def mark(heads: TreeDir, name: str) -> None:
    """A session signed a new checkpoint: have the next store operation commit its head."""
    heads.ensure_file(name)


def take_marked(heads: TreeDir) -> list[str]:
    """The marked sessions, each marker removed before its head is read."""
    names = []
    for entry in heads.list():
        if entry.startswith("."):
            continue
        try:
            heads.unlink(entry, durable=False)
        except SecureStoreError:
            continue  # not a marker we made (a planted directory): never let it stop a store operation
        if is_session_name(entry):
            names.append(entry)
    return names


def changed_since_last_sweep(heads: TreeDir, sessions: TreeDir, names: Iterable[str]) -> tuple[list[str], str]:
    """Sessions whose checkpoints changed since the previous seal began (all, the first time),
    and the stamp file that marks when this sweep began (see `finish_sweep`)."""
    previous = heads.entry(SWEPT)
    since = None if previous is None else previous.mtime_ns - _CLOCK_SLACK_NS
    stamp = _STAMP_PREFIX + heads.ctx.random_hex(8)
    heads.ensure_file(stamp)
    changed = []
    for name in names:
        try:
            with sessions.open_dir(name) as directory, directory.open_dir(AUDIT_DIR) as audit:
                info = audit.entry(CHECKPOINTS_FILE)
        except SecureStoreError:
            continue
        if info is not None and (since is None or info.mtime_ns >= since):
            changed.append(name)
    return changed, stamp


def finish_sweep(heads: TreeDir, stamp: str) -> None:
    """After the sweep's heads are committed: its stamp becomes the previous sweep's."""
    for entry in heads.list():
        if entry.startswith(_STAMP_PREFIX) and entry != stamp:
            heads.unlink(entry, durable=False)  # left by a seal that crashed
    if heads.entry(SWEPT) is not None:
        heads.unlink(SWEPT, durable=False)
    heads.rename(stamp, SWEPT)


def commit(log: AuditLog, sessions: TreeDir, names: Iterable[str], log_for: Callable[[TreeDir], AuditLog],
           signer: VerifierKey, known: Mapping[str, Checkpoint]) -> int:
    """Append heads records for `names` (each session's latest signed checkpoint) and for the
    sessions in `known` (their checkpoint is at hand: just created, by this writer) to the store
    log; returns how many heads were committed. Sessions gone or without a checkpoint are
    skipped (a deletion is itself in the store log)."""
    found = (head_entry(name, known[name]) if name in known else read_head(sessions, name, log_for, signer)
             for name in sorted(set(names) | set(known)))
    heads = [head for head in found if head is not None]
    for start in range(0, len(heads), _PER_RECORD):
        log.append({"kind": "heads", "heads": heads[start : start + _PER_RECORD]}, durable=False)
    return len(heads)


def read_head(sessions: TreeDir, name: str, log_for: Callable[[TreeDir], AuditLog],
              signer: VerifierKey) -> dict[str, object] | None:
    """A session's latest signed checkpoint as a head entry. No lock is needed: the checkpoints
    file only grows by appended lines, and its last complete line is signed. That line may not
    be durable yet, but the records it covers are, and verify checks a committed head against
    those records. Only a checkpoint the store's own key signed is committed (a planted line
    is not)."""
    try:
        with sessions.open_dir(name) as directory, directory.open_dir(AUDIT_DIR) as audit:
            stored = log_for(audit).last_checkpoint(repair=False)
        if stored is None:
            return None
        checkpoint = open_note(stored.note, signer)
    except (SecureStoreError, RecordError):
        return None  # gone, or damaged: verify reports what is wrong with it
    return head_entry(name, checkpoint)


def head_entry(name: str, checkpoint: Checkpoint) -> dict[str, object]:
    return {"session": name, "log": checkpoint.log_id, "size": checkpoint.size, "root": checkpoint.root.hex(),
            "head": checkpoint.head}
