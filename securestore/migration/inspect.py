"""`migrate inspect`: what importing a legacy store would do. Reads only; writes nothing."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import NotFoundError, PolicyError, StorageError, UnsafeFileError
from ..fs import legacy_backups, read_legacy_source
from ..policy import encode_name
from .legacy import MAX_LEGACY_FILE_BYTES, LegacyPlan, parse_session_files, parse_session_map

if TYPE_CHECKING:
    from ..store import SecureStore

State = Literal["already_migrated", "ready", "empty", "invalid", "missing"]


@dataclass
class Inspection:
    state: State
    path: str
    layout: str | None = None  # "sessions.json" | "directory"
    sessions: int = 0
    items: int = 0
    duplicates: list[dict[str, str]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)  # keys already in the store
    backups: list[str] = field(default_factory=list)
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_plan(store: SecureStore, path: str) -> tuple[str, LegacyPlan]:
    """Read and parse a legacy source (the file or directory itself must not be a symlink)."""
    kind, files = read_legacy_source(path, store.ctx, cap=MAX_LEGACY_FILE_BYTES)
    if kind == "file":
        return "sessions.json", parse_session_map(files[0][1], store.config.limits)
    return "directory", parse_session_files(files, store.config.limits)


def inspect_source(store: SecureStore, path: str) -> Inspection:
    try:
        layout, plan = load_plan(store, path)
    except NotFoundError:
        try:
            backups = legacy_backups(path, store.ctx)
        except NotFoundError:
            backups = []
        if backups:
            return Inspection("already_migrated", path, backups=backups,
                              reason="the source was renamed to its backup by an earlier import")
        return Inspection("missing", path, reason="no such file or directory")
    except (UnsafeFileError, StorageError, PolicyError) as exc:
        return Inspection("invalid", path, reason=str(exc))
    result = Inspection("ready", path, layout=layout, sessions=len(plan.sessions), items=plan.items,
                        duplicates=[{"key": k, "kept": kept, "dropped": dropped} for k, kept, dropped in plan.duplicates],
                        rejected=[{"source": where, "why": why} for where, why in plan.rejected])
    result.existing = [s.key for s in plan.sessions if store.session_exists(encode_name(s.key))]
    if plan.rejected:
        result.state, result.reason = "invalid", f"{len(plan.rejected)} entries are refused (see rejected)"
    elif not plan.sessions:
        result.state, result.reason = "empty", "the source holds no sessions"
    elif len(result.existing) == len(plan.sessions):
        result.state, result.reason = "already_migrated", "every session in the source is already in the store"
    elif result.existing:
        result.state, result.reason = "invalid", f"{len(result.existing)} sessions already exist in the store"
    return result
