"""`migrate inspect`: what importing a legacy store would do. Reads only; writes nothing.

Everything it reports (paths, labels, reasons, names) is redacted like stored data: a legacy key
or file name may hold a credential. Files are read one at a time (memory of one file)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ...errors import NotFoundError, PolicyError, StorageError, UnsafeFileError, VersionConflictError
from ...fs import legacy_backups, read_legacy_source
from ...core.policy import encode_name
from .migrate import check_session
from ...core.legacy import MAX_LEGACY_FILE_BYTES, LegacyPlan, PlanBuilder, ReportText, redacted_errors

if TYPE_CHECKING:
    from .store_dir import StoreDir

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


def report_text(store: StoreDir) -> ReportText:
    return ReportText(store.env.fingerprint_key)


def load_plan(store: StoreDir, path: str) -> tuple[str, LegacyPlan]:
    """Read and parse a legacy source, one file at a time (the file or directory itself must
    not be a symlink). Labels and reasons in the plan, and the errors raised, are redacted."""
    report = report_text(store)
    builder = PlanBuilder(store.config.limits, report, lambda session: check_session(store.env, session))
    with redacted_errors(report), read_legacy_source(path, store.env.ctx, cap=MAX_LEGACY_FILE_BYTES) as source:
        add = builder.add_map if source.kind == "file" else builder.add_file
        for legacy in source:
            add(legacy.name, legacy.data, legacy.stamp)
            del legacy  # before the next file is read: one file in memory at a time
        return "sessions.json" if source.kind == "file" else "directory", builder.plan()


def inspect_source(store: StoreDir, path: str) -> Inspection:
    return _redacted(_inspect(store, path), report_text(store))


def _redacted(result: Inspection, report: ReportText) -> Inspection:
    """Every string of the result through the same redaction as stored data."""
    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return report(value)
        if isinstance(value, list):
            return [walk(item) for item in value]
        if isinstance(value, dict):
            return {key: walk(item) for key, item in value.items()}
        return value

    return Inspection(**walk(result.to_json()))


def _inspect(store: StoreDir, path: str) -> Inspection:
    try:
        layout, plan = load_plan(store, path)
    except NotFoundError:
        try:
            backups = legacy_backups(path, store.env.ctx)
        except NotFoundError:
            backups = []
        if backups:
            return Inspection("already_migrated", path, backups=backups,
                              reason="the source was renamed to its backup by an earlier import")
        return Inspection("missing", path, reason="no such file or directory")
    except (UnsafeFileError, StorageError, PolicyError, VersionConflictError) as exc:
        return Inspection("invalid", path, reason=str(exc))
    refused = plan.rejected + plan.problems
    result = Inspection("ready", path, layout=layout, sessions=len(plan.sessions), items=plan.items,
                        duplicates=[{"key": k, "kept": kept, "dropped": dropped} for k, kept, dropped in plan.duplicates],
                        rejected=[{"source": where, "why": why} for where, why in refused])
    result.existing = [s.key for s in plan.sessions if store.session_exists(encode_name(s.key))]
    if refused:
        result.state, result.reason = "invalid", f"{len(refused)} entries are refused (see rejected)"
    elif not plan.sessions:
        result.state, result.reason = "empty", "the source holds no sessions"
    elif len(result.existing) == len(plan.sessions):
        result.state, result.reason = "already_migrated", "every session in the source is already in the store"
    elif result.existing:
        result.state, result.reason = "invalid", f"{len(result.existing)} sessions already exist in the store"
    return result
