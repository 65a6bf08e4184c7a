"""`audit verify`: every log through the verifier, then the data checked against the trail.

Read-only: nothing is repaired or locked. A change in flight (intent without outcome) is
reported as pending and its target may hold either the old or the new content.
"""

from __future__ import annotations

from ...audit.store_report import VerifyOptions, VerifyReport
from ...audit.verify import INCOMPLETE, Failure
from ...core.policy import is_session_name, session_name
from ...errors import SecureStoreError

from .auditlog import LOG_FILE
from .layout import AUDIT_DIR, SESSIONS_DIR, session_target
from .store_dir import StoreDir
from .verify_checks import Checker

__all__ = ["VerifyOptions", "VerifyReport", "verify_store"]

_ATTEMPTS = 3  # runs of a verify whose findings may be writes in flight


def verify_store(store: StoreDir, session: str | None = None,
                 options: VerifyOptions | None = None) -> VerifyReport:
    """Verify without locking anything. A writer that commits while verify reads can make the
    data look ahead of the trail it read: a run with findings is repeated while any audit log
    moved during it, and findings from a store that never held still are reported as
    incomplete ("changed during verify", exit 6), never as tampering."""
    report = VerifyReport()
    for _ in range(_ATTEMPTS):
        before = _activity(store)
        report = _verify_once(store, session, options or VerifyOptions())
        if not report.failures or _activity(store) == before:
            return report
    moved = report.failures
    report.failures = []
    report.incomplete.extend(Failure(f.log, f.seq, f.line, f.offset, f.check, f.expected, f.actual, INCOMPLETE)
                             for f in moved)
    report.incomplete.append(Failure(
        "store", None, 0, 0, "changed-during-verify", f"a store that holds still during one of {_ATTEMPTS} runs",
        "audit logs grew during every run: the findings above may be writes in flight; verify again when the store is "
        "idle", INCOMPLETE))
    return report


def _activity(store: StoreDir) -> tuple[object, ...]:
    """(inode, size) of every audit log: moves whenever any writer records anything."""
    root = store.root
    with root.open_dir(AUDIT_DIR) as audit:
        sizes: list[object] = [audit.size_of(LOG_FILE)]
    with root.open_dir(SESSIONS_DIR) as sessions:
        for name in sessions.list():
            try:
                with sessions.open_dir(name) as directory, directory.open_dir(AUDIT_DIR) as audit:
                    sizes.append((name, audit.size_of(LOG_FILE)))
            except SecureStoreError:
                sizes.append((name, None))
    return tuple(sizes)


def _verify_once(store: StoreDir, session: str | None, options: VerifyOptions) -> VerifyReport:
    checker = Checker(store, options)
    store_log, sessions = checker.store_level()
    with sessions:
        present = [n for n in sessions.list()]
        if session is not None:
            wanted = [session_name(session, store.config.limits.max_key_bytes)[1]]
        else:
            wanted = []
            for name in present:
                if name.startswith("."):
                    checker.report.warnings.append(f"{SESSIONS_DIR}/{name}: leftover of an interrupted write")
                elif not is_session_name(name):
                    checker.fail(f"{SESSIONS_DIR}/{name}", None, "data-mismatch", "no foreign entries", "an unknown entry")
                else:
                    wanted.append(name)
            # Sessions the trail says exist must exist (a deleted directory is caught here).
            for target, commit in store_log.committed.items():
                if target.startswith(f"{SESSIONS_DIR}/") and commit.sha256 is not None:
                    if target.removeprefix(f"{SESSIONS_DIR}/") not in present:
                        checker.expect(store_log, target, None)
        for name in wanted:
            try:
                checker.session(store_log, sessions, name)
            except SecureStoreError as exc:  # a planted link, a malformed file: a finding, not a crash
                checker.fail(session_target(name), None, "read", "readable session files", str(exc))
        checker.anchored_sessions(store_log, present, wanted if session is not None else None)
        if session is None and store_log.ok:
            checker.migration_records(store_log)
            checker.index(store_log, present)
    checker.trust_root(store_log)
    checker.deletions(store_log)
    return checker.report

