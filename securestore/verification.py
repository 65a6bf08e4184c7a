"""`audit verify`: every log through the verifier, then the data checked against the trail.

Read-only: nothing is repaired or locked. A change in flight (intent without outcome) is
reported as pending and its target may hold either the old or the new content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .audit.log import LOG_FILE
from .audit.verify import Commit, Failure, LogReport, LogVerifier
from .canonical import sha256_hex
from .errors import IntegrityError, NotFoundError, SecureStoreError, UnsafeFileError
from .fs import Dir
from .engine.files import line_hash, read_manifest, read_transcript, split_lines
from .layout import (
    APPEND_ONLY,
    AUDIT_DIR,
    JOURNAL_FILE,
    MANIFEST_FILE,
    SNAPSHOT_FILE,
    SESSIONS_DIR,
    STATE_DIR,
    STORE_FILE,
    VAULT_FILE,
    VAULT_KEY_FILE,
    session_target,
)
from .policy import encode_name, is_session_name, name_matches_key, normalize_key
from .store import SecureStore


@dataclass
class VerifyReport:
    logs: list[LogReport] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    files_checked: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files_checked": self.files_checked,
            "logs": [
                {"log": r.label, "log_id": r.log_id, "records": r.records, "first_seq": 0 if r.records else None,
                 "last_seq": r.last_seq, "first_ts": r.first_ts, "last_ts": r.last_ts, "torn_bytes": r.torn_bytes,
                 "pending_intent": r.dangling.seq if r.dangling else None, "rejections": r.rejected,
                 "ok": r.ok}
                for r in self.logs
            ],
            "failures": [f.__dict__ for f in self.failures],
            "warnings": self.warnings,
        }


def _verify_log(directory: Dir, label: str, verifier: LogVerifier, max_line: int) -> LogReport:
    try:
        for offset, line in directory.iter_lines(LOG_FILE, max_line + 1):
            verifier.feed(offset, line)
            if verifier.report.failure is not None:
                break
    except (NotFoundError, UnsafeFileError) as exc:
        verifier.report.failure = Failure(label, None, 0, 0, "missing", "a readable audit log", str(exc))
    return verifier.finish()


class _Checker:
    def __init__(self, store: SecureStore) -> None:
        self.store = store
        self.limits = store.config.limits
        self.report = VerifyReport()

    def fail(self, log: str, commit: Commit | None, check: str, expected: object, actual: object) -> None:
        seq, line, offset = (commit.seq, commit.line, commit.offset) if commit else (None, 0, 0)
        self.report.failures.append(Failure(log, seq, line, offset, check, str(expected), str(actual)))

    def take(self, log: LogReport) -> LogReport:
        self.report.logs.append(log)
        if log.failure is not None:
            self.report.failures.append(log.failure)
        if log.torn_bytes:
            self.report.warnings.append(f"{log.label}: torn final record ({log.torn_bytes} bytes), repaired on next write")
        if log.dangling is not None:
            self.report.warnings.append(
                f"{log.label}: intent seq {log.dangling.seq} ({log.dangling.op}) has no outcome yet"
            )
        return log

    @staticmethod
    def in_flight(log: LogReport, target: str) -> set[str | None]:
        """What `target` may hold if the log's open intent (a change in flight) took effect."""
        pending = log.dangling
        if pending is None:
            return set()
        gained = {pending.sha256} if pending.target == target else set()
        return gained | {t.sha256 for t in pending.also if t.target == target}

    def expect(self, log: LogReport, target: str, actual: str | None) -> None:
        """The target's current content hash must match the trail."""
        self.report.files_checked += 1
        commit = log.committed.get(target)
        expected = commit.sha256 if commit else None
        if actual == expected or actual in self.in_flight(log, target):
            return  # with a change in flight, either state is consistent
        label = f"{log.label}#{target}"
        self.fail(label, commit, "data-mismatch", expected or "absent", actual or "absent")

    def store_level(self) -> tuple[LogReport, Dir]:
        root = self.store._root
        identity = self.store.identity
        audit = root.open_dir(AUDIT_DIR)
        label = f"{AUDIT_DIR}/{LOG_FILE}"
        log = self.take(_verify_log(audit, label, LogVerifier(
            label, scope="store", store_id=identity.store_id, max_line=self.limits.max_audit_line_bytes,
        ), self.limits.max_audit_line_bytes))
        audit.close()
        data = root.read(STORE_FILE, 64 * 1024)
        self.expect(log, STORE_FILE, sha256_hex(data))
        return log, root.open_dir(SESSIONS_DIR)

    def lines_match(self, log: LogReport, target: str, lines: list[bytes], skip: int = 0) -> None:
        """An append-only file holds exactly the lines the trail committed, in order."""
        commits = log.appended.get(target, [])
        actual = [line_hash(line) for line in lines[skip:]]
        expected = [c.sha256 for c in commits]
        if len(actual) == len(expected) + 1 and actual[-1] in self.in_flight(log, target):
            actual = actual[:-1]  # the line of a change in flight
        self.report.files_checked += 1
        for index, (want, got) in enumerate(zip(expected, actual, strict=False)):
            if want != got:
                self.fail(f"{log.label}#{target}", commits[index], "data-mismatch",
                          f"line {index + 1 + skip} {want}", f"line {index + 1 + skip} {got}")
                return
        if len(actual) != len(expected):
            commit = commits[len(actual)] if len(actual) < len(expected) else None
            self.fail(f"{log.label}#{target}", commit, "data-mismatch",
                      f"{len(expected) + skip} lines", f"{len(actual) + skip} lines")

    def session(self, store_log: LogReport, sessions: Dir, name: str) -> None:
        target = session_target(name)
        if not store_log.ok:
            return
        try:
            directory = sessions.open_dir(name)
        except (NotFoundError, UnsafeFileError, IntegrityError) as exc:
            self.fail(f"{target}", store_log.committed.get(target), "data-mismatch", "a session directory", str(exc))
            return
        with directory:
            manifest_bytes = directory.read(MANIFEST_FILE, self.limits.max_manifest_bytes)
            manifest_lines, torn = split_lines(manifest_bytes)
            if torn:
                self.report.warnings.append(f"{target}/{MANIFEST_FILE}: torn final revision ({len(torn)} bytes)")
            # The store log names the session by its first revision; its own log covers the rest.
            self.expect(store_log, target, line_hash(manifest_lines[0]) if manifest_lines else None)
            history = read_manifest(directory, self.limits, target)
            first = history.revisions[0]
            if not name_matches_key(name, first.key):
                self.fail(target, None, "name-mismatch", encode_name(first.key), name)
                return
            label = f"{target}/{AUDIT_DIR}/{LOG_FILE}"
            with directory.open_dir(AUDIT_DIR) as audit:
                log = self.take(_verify_log(audit, label, LogVerifier(
                    label, scope="session", store_id=self.store.store_id, session=name,
                    log_id=first.audit_log_id, max_line=self.limits.max_audit_line_bytes, append_only=APPEND_ONLY,
                ), self.limits.max_audit_line_bytes))
            if not log.ok:
                return
            self.lines_match(log, MANIFEST_FILE, manifest_lines, skip=1)
            journal = directory.read_optional(JOURNAL_FILE, self.limits.max_journal_bytes) or b""
            journal_lines, torn = split_lines(journal)
            if torn:
                self.report.warnings.append(f"{target}/{JOURNAL_FILE}: torn final record ({len(torn)} bytes)")
            self.lines_match(log, JOURNAL_FILE, journal_lines)
            try:
                read_transcript(directory, self.limits, target)
            except IntegrityError as exc:
                self.fail(f"{target}/{JOURNAL_FILE}", None, "journal", "a replayable journal", str(exc))
            for name_, cap in ((VAULT_FILE, self.limits.max_vault_bytes), (VAULT_KEY_FILE, 4096),
                               (SNAPSHOT_FILE, self.limits.max_snapshot_bytes)):
                content = directory.read_optional(name_, cap)
                self.expect(log, name_, None if content is None else sha256_hex(content))
            seen = set()
            with directory.open_dir(STATE_DIR) as state:
                for file in state.list():
                    if file.startswith("."):
                        self.report.warnings.append(f"{target}/{STATE_DIR}/{file}: leftover temporary file")
                        continue
                    seen.add(f"{STATE_DIR}/{file}")
                    self.expect(log, f"{STATE_DIR}/{file}", sha256_hex(state.read(file, self.store.pipeline.slot_cap())))
            for slot, commit in log.committed.items():
                if slot.startswith(f"{STATE_DIR}/") and slot not in seen and commit.sha256 is not None:
                    self.expect(log, slot, None)


def verify_store(store: SecureStore, session: str | None = None) -> VerifyReport:
    checker = _Checker(store)
    store_log, sessions = checker.store_level()
    with sessions:
        present = [n for n in sessions.list()]
        if session is not None:
            wanted = [encode_name(normalize_key(session, what="session key", max_bytes=store.config.limits.max_key_bytes))]
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
    return checker.report

