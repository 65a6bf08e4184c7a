"""`securestore doctor`: a health check of one store that changes nothing.

Each check ends ok, attention (something to do: exit 4) or damage (the trail or the data does
not hold: exit 1). It reads the whole store (it runs `audit verify`), so it is O(store)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from ..audit.checkpoint import peek_note
from ..audit.errors import RecordError
from ..backends.local.layout import AUDIT_DIR, SESSION_LOCK, STORE_LOCK
from ..backends.roots import backend_of, database_findings, root_label
from ..backends.tree import TreeDir
from ..config import StoreConfig
from ..errors import EXIT_INTEGRITY, EXIT_OK, EXIT_OPERATIONAL, KeyMaterialError, SecureStoreError
from ..fs import DIR_MODE, FILE_MODE, REAL_OS, Dir, FsContext, OsApi, open_root, walk
from .keyring import find_keyring
from .store import SecureStore
from .verify import verify_store

Status = Literal["ok", "attention", "damage"]
_SHOWN = 5  # offending paths named per finding
_FREE_FLOOR = 256 * 1024 * 1024  # below this much free space, writes are close to failing


@dataclass(frozen=True)
class Finding:
    check: str
    status: Status
    detail: str


@dataclass
class DoctorReport:
    root: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        statuses = {f.status for f in self.findings}
        return EXIT_INTEGRITY if "damage" in statuses else EXIT_OPERATIONAL if "attention" in statuses else EXIT_OK

    def add(self, check: str, status: Status, detail: str) -> None:
        self.findings.append(Finding(check, status, detail))

    def to_json(self) -> dict[str, object]:
        verdict = {EXIT_OK: "healthy", EXIT_OPERATIONAL: "attention", EXIT_INTEGRITY: "damage"}[self.exit_code]
        return {"root": self.root, "result": verdict, "exit_code": self.exit_code,
                "findings": [asdict(f) for f in self.findings]}


def diagnose(root_path: str, environ: Mapping[str, str], *, config: StoreConfig | None = None,
             master_key_file: str | None = None, signing_key_file: str | None = None,
             os_api: OsApi = REAL_OS) -> DoctorReport:
    report = DoctorReport(root_label(root_path, environ))
    ctx = FsContext(os_api)
    if backend_of(root_path) == "postgres":
        try:
            for name, status, detail in database_findings(root_path, environ):
                report.add(name, "ok" if status == "ok" else "attention", detail)
        except SecureStoreError as exc:  # the URL refused, or the extra missing
            report.add("database", "attention", str(exc))
        if any(f.check == "database" and f.status != "ok" for f in report.findings):
            return report
    elif not _directory_checks(root_path, ctx, report, config or StoreConfig()):
        return report
    try:
        store = SecureStore(root_path, config, master_key_file=master_key_file, signing_key_file=signing_key_file,
                            environ=environ, os_api=os_api)
    except KeyMaterialError as exc:  # a key refused (mode, owner, place): fixable, not damage
        report.add("keys", "attention", str(exc))
        return report
    except SecureStoreError as exc:
        report.add("store", "damage", f"the store does not open: {exc}")
        return report
    with store:
        for check in (_keys, _locks, _audit, _last_seal):
            try:
                check(store, report)
            except SecureStoreError as exc:
                report.add(check.__name__.strip("_"), "attention", f"could not check: {exc}")
    return report


def _directory_checks(root_path: str, ctx: FsContext, report: DoctorReport, config: StoreConfig) -> bool:
    """The checks of a store on disk before it is opened; False if there is no directory to open."""
    try:
        root = open_root(root_path, ctx, create=False)
    except SecureStoreError as exc:  # absent, or refused: owner, mode, a symlink
        report.add("root", "attention", str(exc))
        return False
    with root:
        report.add("root", "ok", f"{root_path}: a directory owned by this user, mode 0700")
        used = _modes(root, report)
        _space(root, report, used, config.maintenance.max_disk_bytes)
        _fsync(root, report)
    return True


def _modes(root: Dir, report: DoctorReport) -> int:
    """Checks every entry's kind and mode; returns the bytes the store's files hold."""
    wrong: list[str] = []
    used = 0
    for path, info in walk(root):
        used += info.size if info.kind == "file" else 0
        expected = DIR_MODE if info.kind == "dir" else FILE_MODE
        if info.kind not in ("dir", "file"):
            wrong.append(f"{path} is a {info.kind}")
        elif info.mode & 0o7777 != expected:
            wrong.append(f"{path} has mode {info.mode & 0o7777:04o}, expected {expected:04o}")
    if wrong:
        report.add("modes", "attention", f"{len(wrong)} entries: " + "; ".join(wrong[:_SHOWN])
                   + ("; ..." if len(wrong) > _SHOWN else "") + " (others may read them; fix with chmod, or look "
                   "for what planted them)")
    else:
        report.add("modes", "ok", "every file 0600, every directory 0700, nothing else in the tree")
    return used


def _space(root: Dir, report: DoctorReport, used: int, budget: int) -> None:
    free, total = root.disk_space()
    detail = (f"the store holds {used / 2**20:.1f} MiB of its {budget / 2**30:.1f} GiB budget; "
              f"{free / 2**30:.1f} GiB free of {total / 2**30:.1f} GiB")
    if used >= 0.9 * budget:
        report.add("disk", "attention", detail + ": near the budget; run `securestore maintain`")
    elif free < min(_FREE_FLOOR, budget - used):
        report.add("disk", "attention", detail + ": the filesystem is nearly full; writes will fail")
    else:
        report.add("disk", "ok", detail)


def _fsync(root: Dir, report: DoctorReport) -> None:
    try:
        root.sync()
    except SecureStoreError as exc:
        report.add("fsync", "attention", f"fsync of the root failed ({exc}): acknowledged writes are not durable here")
        return
    report.add("fsync", "ok", "fsync works on the store's filesystem")


def _keys(store: SecureStore, report: DoctorReport) -> None:
    ring = find_keyring(store.ctx, store.environ, store.store_id)
    where = f" (key directory {ring.path})" if ring is not None else ""
    env = store.backend.env  # loading the keys checked each file: ours, 0600, one name, outside the root
    if env.signer is None:
        report.add("keys", "attention", "no audit signing key: every write is refused; configure "
                   f"--signing-key-file or $SECURESTORE_AUDIT_SIGNING_KEY_FILE{where}")
    elif env.master_key is None:
        report.add("keys", "attention", "no master key: secrets in values are dropped and fingerprinted, not vaulted; "
                   f"configure --master-key-file or $SECURESTORE_MASTER_KEY_FILE{where}")
    else:
        report.add("keys", "ok", f"signing key and master key present and private{where}")


def _locks(store: SecureStore, report: DoctorReport) -> None:
    live: list[str] = []
    stale: list[str] = []
    backend = store.backend

    def note(holder: str, directory: TreeDir, lock: str) -> None:
        recorded = directory.lock_holder(lock)
        if recorded is not None:
            (live if directory.lock_holder(lock, live=True) else stale).append(f"{holder}: {recorded}")

    note("the store", backend.root, STORE_LOCK)
    for name in backend.session_names():
        with backend.sessions.open_dir(name) as directory:
            note(name, directory, SESSION_LOCK)
    if stale:
        report.add("locks", "attention", f"{len(stale)} stale lock record(s) of dead writers (the next writer "
                   "recovers each, after checking its data): " + "; ".join(stale[:_SHOWN]))
    else:
        report.add("locks", "ok", f"{len(live)} live writer(s)" + (": " + "; ".join(live[:_SHOWN]) if live else ""))


def _audit(store: SecureStore, report: DoctorReport) -> None:
    found = verify_store(store)
    if found.failures:
        report.add("audit", "damage", f"{len(found.failures)} finding(s); first: {found.failures[0].describe()} "
                   "(run `securestore audit verify --seed` for the full report)")
    else:
        report.add("audit", "ok", f"{len(found.logs)} logs intact; {found.files_checked} files match the trail")
    dangling = [log.label for log in found.logs if log.dangling is not None]
    if dangling:
        report.add("intents", "attention", f"{len(dangling)} log(s) end in an intent without its outcome (a writer "
                   "died mid-write; the next writer of each settles it): " + "; ".join(dangling[:_SHOWN]))
    else:
        report.add("intents", "ok", "no dangling intent")
    unsealed = [f"{log.label}: {log.unsealed} records" for log in found.logs if log.unsealed > 0]
    if unsealed:
        report.add("seals", "attention", f"{len(unsealed)} log(s) with unsealed tails ({'; '.join(unsealed[:_SHOWN])}); "
                   "run `securestore audit seal`")
    else:
        report.add("seals", "ok", "every log is sealed to its last record")
    if found.incomplete:
        report.add("trust", "attention", "; ".join(f.describe() for f in found.incomplete[:_SHOWN]))
    if found.index:
        report.add("index", "attention", f"the listing index disagrees with the sessions ({found.index[0]}); run "
                   "`securestore index rebuild`")
    else:
        report.add("index", "ok", "the listing index matches the sessions")


def _last_seal(store: SecureStore, report: DoctorReport) -> None:
    backend = store.backend
    with backend.root.open_dir(AUDIT_DIR) as audit:
        stored = backend.env.new_log(audit).last_checkpoint(repair=False)
    if stored is None:
        report.add("last-seal", "damage", "the store log has no signed checkpoint")
        return
    try:
        sealed_ms = peek_note(stored.note).time
    except RecordError as exc:
        report.add("last-seal", "damage", f"the store log's last checkpoint does not parse: {exc.detail}")
        return
    age_ms = max(0, backend.env.clock() - sealed_ms)
    report.add("last-seal", "ok", f"the store log was last sealed {_ago(age_ms)} ago")


def _ago(ms: int) -> str:
    seconds = ms // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit}"
    return f"{seconds} s"

