"""The checks of `audit verify`: each log through the verifier, the data against the trail,
anchors, deletions, migration records and the listing index. Read-only."""

from __future__ import annotations

from collections.abc import Iterator

from ...audit.anchor import Anchor
from ...audit.checkpoint import CHECKPOINTS_FILE, Checkpoint, open_note
from ...audit.errors import RecordError
from ...audit.keys import VerifierKey, parse_verifier_key, store_log_key
from .auditlog import LOG_FILE
from ...audit.verify import INCOMPLETE, TRUNCATED, Commit, CommittedHead, Failure, LogReport, LogVerifier
from ...core.canonical import sha256_hex
from ...errors import IntegrityError, NotFoundError, UnsafeFileError, UsageError
from ..tree import TreeDir
from ...core.transcript import lines_digest
from .session_files import line_hash, read_manifest, split_lines
from .transcript_files import all_items, read_head
from .layout import (
    AUDIT_DIR,
    MANIFEST_FILE,
    SESSIONS_DIR,
    SNAPSHOT_FILE,
    STATE_DIR,
    STORE_FILE,
    STORE_FILE_CAP,
    VAULT_FILE,
    VAULT_KEY_FILE,
    file_cap,
    is_append_only,
    is_journal,
    session_target,
)
from .index import INDEX_DIR, disagreements
from .migrate_records import RECORDS_DIR
from ...core.policy import encode_name, name_matches_key
from .store_dir import StoreDir
from ...audit.store_report import VerifyOptions, VerifyReport, iso_ms


def _checkpoint_lines(directory: TreeDir) -> Iterator[tuple[int, bytes]]:
    if directory.entry(CHECKPOINTS_FILE) is None:
        return iter(())
    return directory.iter_lines(CHECKPOINTS_FILE, 64 * 1024)


def _verify_log(directory: TreeDir, label: str, verifier: LogVerifier, max_line: int) -> LogReport:
    try:
        for offset, line in directory.iter_lines(LOG_FILE, max_line + 1):
            verifier.feed(offset, line)
            if verifier.report.failure is not None:
                break
        return verifier.finish()
    except (NotFoundError, UnsafeFileError) as exc:
        verifier.report.failure = Failure(label, None, 0, 0, "missing", "a readable audit log", str(exc))
    return verifier.report


class Checker:
    def __init__(self, store: StoreDir, options: VerifyOptions) -> None:
        self.store = store
        self.limits = store.config.limits
        self.options = options
        self.report = VerifyReport(seed=options.seed is not None,
                                   public_key=options.public_key.text() if options.public_key else None)
        self.anchored: dict[str | None, Checkpoint] = {}
        self.anchor_key: VerifierKey | None = None
        if options.anchor is not None:
            self._open_anchor(options.anchor)
        self.trusted, self.trusted_as = self._trust_root(store)
        # The signer every session log must name: the store's (set once the store log is read).
        self.store_signer: VerifierKey | None = self.trusted

    def _trust_root(self, store: StoreDir) -> tuple[VerifierKey | None, str]:
        """The checkpoint signer to trust, from outside the store: --public-key, else the
        anchor's signer, else the signing key this handle is configured with. With the seed and
        none of these, the store log's MACed genesis authenticates its signer."""
        if self.options.public_key is not None:
            return self.options.public_key, self.options.public_key_from
        if self.anchor_key is not None:
            return self.anchor_key, "anchor"
        if self.options.seed is None and store.env.signer is not None:
            return store.env.signer.verifier, "signing-key"
        return None, "unverified"

    def _open_anchor(self, anchor: Anchor) -> None:
        """The anchor's checkpoints, each verified with the trusted key (or the anchor's own:
        it was kept outside the store, which is the point of it)."""
        if anchor.store != self.store.store_id:
            raise UsageError(f"the anchor is for store {anchor.store}, not {self.store.store_id}")
        try:
            key = self.options.public_key or parse_verifier_key(anchor.signer)
        except RecordError as exc:
            raise UsageError(f"the anchor's signer key is not valid: {exc.detail}") from None
        self.anchor_key = key
        for entry in anchor.logs:
            try:
                checkpoint = open_note(entry.note, key)
            except RecordError as exc:
                self.report.failures.append(Failure(f"anchor:{entry.log}", None, 0, 0, exc.check,
                                                    f"a checkpoint signed by {key.name}", exc.detail))
                continue
            self.anchored[entry.session] = checkpoint
            self.report.anchors.append(f"{entry.log} at size {checkpoint.size}")

    def anchor_for(self, store_log: LogReport, name: str, log_id: str) -> Checkpoint | None:
        """The anchored checkpoint that applies to session `name`'s current log. An anchor of
        an earlier session under the same name applies only if no deletion is recorded."""
        anchored = self.anchored.get(name)
        if anchored is None or anchored.log_id == log_id or name not in store_log.deleted:
            return anchored
        self.report.anchors.append(f"{session_target(name)}: anchored log {anchored.log_id} was deleted at store log "
                                   f"seq {store_log.deleted[name]}; the session was created again since")
        return None

    def verifier(self, label: str, audit: TreeDir, *, scope: str, session: str | None = None,
                 log_id: str | None = None, chain: bytes | None = None, anchor: Checkpoint | None = None,
                 committed: CommittedHead | None = None, store_log: LogReport | None = None) -> LogVerifier:
        seed, store_id = self.options.seed, self.store.store_id
        trusted, trusted_as = self.trusted, self.trusted_as
        if scope == "store":
            chain_for = (lambda log: store_log_key(seed, store_id, log)) if seed is not None else None
        else:
            chain_for = (lambda log: chain) if chain is not None else None
            if trusted is None and store_log is not None and store_log.signer_trust == "seed":
                trusted, trusted_as = self.store_signer, "seed"  # the store log's seed-authenticated signer
        return LogVerifier(
            label, scope=scope, store_id=store_id, session=session, log_id=log_id,
            max_line=self.limits.max_audit_line_bytes, append_only=is_append_only if scope == "session" else (lambda name: False),
            chain_for=chain_for, trusted=trusted, trusted_as=trusted_as, checkpoints=_checkpoint_lines(audit),
            checkpoints_label=label.replace(LOG_FILE, CHECKPOINTS_FILE),
            anchor=anchor if scope == "session" else self.anchored.get(None),
            max_unsealed=self.options.max_unsealed,
            signer_must_be=self.store_signer if scope == "session" else None, committed=committed,
        )

    def fail(self, log: str, commit: Commit | None, check: str, expected: object, actual: object) -> None:
        seq, line, offset = (commit.seq, commit.line, commit.offset) if commit else (None, 0, 0)
        self.report.failures.append(Failure(log, seq, line, offset, check, str(expected), str(actual)))

    def take(self, log: LogReport) -> LogReport:
        self.report.logs.append(log)
        if log.failure is not None:
            self.report.failures.append(log.failure)
        self.report.incomplete.extend(log.incomplete)
        if log.torn_bytes:
            self.torn(log.label, "record", log.torn_bytes, ", repaired on next write")
        if log.torn_checkpoint_bytes:
            self.torn(log.label, "checkpoint", log.torn_checkpoint_bytes, ", repaired on next write")
        return log

    def torn(self, label: str, what: str, size: int, repair: str = "") -> None:
        """A partial last line: a crash's mark on disk (a warning), tampering where every append
        is one transaction (PostgreSQL: no crash leaves one there)."""
        if not self.store.root.atomic_appends:
            self.report.warnings.append(f"{label}: torn final {what} ({size} bytes){repair}")
            return
        self.report.failures.append(Failure(label, None, 0, 0, "torn-record", f"whole {what}s only (every append is "
                                            "one transaction)", f"a partial final {what} of {size} bytes"))

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

    def anchored_sessions(self, store_log: LogReport, present: list[str], only: list[str] | None) -> None:
        """An anchored session that is gone must have an audited deletion in the store log."""
        for name, checkpoint in self.anchored.items():
            if name is None or name in present or (only is not None and name not in only) or not store_log.ok:
                continue
            target = session_target(name)
            commit = store_log.committed.get(target)
            if commit is not None and commit.sha256 is None:
                self.report.anchors.append(f"{target}: deleted, recorded at store log seq {commit.seq}")
            elif commit is None:
                self.report.failures.append(Failure(
                    target, None, 0, 0, "consistency", f"a session anchored at size {checkpoint.size}",
                    "no directory and no record of it in the store log (rolled back)", TRUNCATED))

    def store_level(self) -> tuple[LogReport, TreeDir]:
        root = self.store.root
        label = f"{AUDIT_DIR}/{LOG_FILE}"
        with root.open_dir(AUDIT_DIR) as audit:
            log = self.take(_verify_log(audit, label, self.verifier(label, audit, scope="store"),
                                        self.limits.max_audit_line_bytes))
        if self.store_signer is None and log.signer is not None:
            try:  # every session log must name the signer the store log names
                self.store_signer = parse_verifier_key(log.signer)
            except RecordError:
                pass  # the store log itself already failed its genesis check
        data = root.read(STORE_FILE, STORE_FILE_CAP)
        self.expect(log, STORE_FILE, sha256_hex(data))
        return log, root.open_dir(SESSIONS_DIR)

    def trust_root(self, store_log: LogReport) -> None:
        """Without anything from outside the store, nothing was authenticated: never a bare OK."""
        report = self.report
        report.trust_root = "seed" if self.options.seed is not None and self.trusted is None else self.trusted_as
        if self.options.seed is None and self.trusted is None:
            report.incomplete.append(Failure(
                "audit", None, 0, 0, "trust-root", "a trust root kept outside the store (--seed, --public-key, "
                "--anchor, or a configured signing key)", "none: no MAC and no checkpoint signature was "
                "authenticated, so a rewritten trail would look the same", INCOMPLETE))

    def deletions(self, store_log: LogReport) -> None:
        """Every deletion the store log records, so an auditor sees each one: a deletion in the
        store log's current epoch could have been forged with its stolen key (see README)."""
        current = store_log.epochs - 1
        for name, seq, ts, epoch in store_log.deletions:
            note = " (in the store log's current epoch: not protected against its stolen key)" if epoch == current else ""
            self.report.deletions.append(f"{session_target(name)} deleted at store log seq {seq} "
                                         f"({iso_ms(ts)}, epoch {epoch}){note}")

    def migration_records(self, store_log: LogReport) -> None:
        """Every import record the trail committed holds exactly what was committed (rollback acts
        on these files)."""
        root = self.store.root
        targets = [t for t in store_log.committed if t.startswith(f"{RECORDS_DIR}/")]
        pending = store_log.dangling
        if pending is not None and pending.target.startswith(f"{RECORDS_DIR}/") and pending.target not in targets:
            targets.append(pending.target)
        if root.entry(RECORDS_DIR) is None:
            for target in targets:
                self.expect(store_log, target, None)
            return
        with root.open_dir(RECORDS_DIR) as records:
            for target in targets:
                content = records.read_optional(target.removeprefix(f"{RECORDS_DIR}/"), 64 * 1024 * 1024)
                self.expect(store_log, target, None if content is None else sha256_hex(content))
            for name in records.list():
                if f"{RECORDS_DIR}/{name}" not in targets and not name.startswith("."):
                    self.report.warnings.append(f"{RECORDS_DIR}/{name}: an import record the trail never committed "
                                                "(a failed import's: rollback ignores it; anything else: rollback "
                                                "refuses it)")

    def index(self, store_log: LogReport, present: list[str]) -> None:
        """The listing index is derived and not fsynced, so a crash can leave it behind: where it
        disagrees with the trail (a live session hidden by a tombstone or a missing entry, or a
        gone one still listed) it is reported for `index rebuild`, never counted as tampering."""
        settling = set(store_log.in_flight)
        if store_log.dangling is not None:
            settling |= {t.target.removeprefix(f"{SESSIONS_DIR}/") for t in store_log.dangling.also}
            settling.add(store_log.dangling.target.removeprefix(f"{SESSIONS_DIR}/"))
        live = {name for name in store_log.live if name in present} - settling
        root = self.store.root
        if root.entry(INDEX_DIR) is None:
            if live:
                self.report.index.append(f"{INDEX_DIR}: missing; {len(live)} live sessions are not listed")
            return
        with root.open_dir(INDEX_DIR) as index_dir:
            findings = disagreements(index_dir, live, ignore=settling,
                                     max_index_bytes=self.limits.max_index_bytes)
        self.report.index.extend(findings)

    def lines_match(self, log: LogReport, target: str, data: bytes, lines: list[bytes], skip: int = 0) -> None:
        """An append-only file holds exactly the lines the trail committed, in order (or, with a
        compaction in flight that took effect, exactly the content that compaction wrote)."""
        pending = log.dangling
        if pending is not None and pending.target == target and pending.op.endswith(".compact") \
                and sha256_hex(data) == pending.sha256:
            self.report.files_checked += 1
            return
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

    def session(self, store_log: LogReport, sessions: TreeDir, name: str) -> None:
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
                self.torn(f"{target}/{MANIFEST_FILE}", "revision", len(torn))
            # The store log names the session by its first revision; its own log covers the rest.
            self.expect(store_log, target, line_hash(manifest_lines[0]) if manifest_lines else None)
            history = read_manifest(directory, self.limits, target)
            first = history.revisions[0]
            if not name_matches_key(name, first.key):
                self.fail(target, None, "name-mismatch", encode_name(first.key), name)
                return
            label = f"{target}/{AUDIT_DIR}/{LOG_FILE}"
            chain = store_log.child_key(name)
            if self.options.seed is not None and chain is None:
                self.fail(label, None, "mac", "a creating intent in the store log", "none (no key for this log)")
                return
            with directory.open_dir(AUDIT_DIR) as audit:
                log = self.take(_verify_log(audit, label, self.verifier(
                    label, audit, scope="session", session=name, log_id=first.audit_log_id, chain=chain,
                    anchor=self.anchor_for(store_log, name, first.audit_log_id),
                    committed=store_log.heads.get(first.audit_log_id), store_log=store_log,
                ), self.limits.max_audit_line_bytes))
            if not log.ok:
                return
            self.lines_match(log, MANIFEST_FILE, manifest_bytes, manifest_lines, skip=1)
            check_journal(self, log, directory, target)
            for name_ in (VAULT_FILE, VAULT_KEY_FILE, SNAPSHOT_FILE):
                content = directory.read_optional(name_, file_cap(name_, self.limits))
                self.expect(log, name_, None if content is None else sha256_hex(content))
            seen = set()
            with directory.open_dir(STATE_DIR) as state:
                for file in state.list():
                    if file.startswith("."):
                        self.report.warnings.append(f"{target}/{STATE_DIR}/{file}: leftover temporary file")
                        continue
                    seen.add(f"{STATE_DIR}/{file}")
                    self.expect(log, f"{STATE_DIR}/{file}", sha256_hex(state.read(file, self.store.env.slot_cap())))
            for slot, commit in log.committed.items():
                if slot.startswith(f"{STATE_DIR}/") and slot not in seen and commit.sha256 is not None:
                    self.expect(log, slot, None)


def check_journal(checker: Checker, log: LogReport, directory: TreeDir, target: str) -> None:
    """The active segment holds exactly the lines the trail committed; every other segment
    on disk or in the trail hashes to its seal's digest (or is gone, as the trail says); the
    whole transcript replays."""
    try:
        head = read_head(directory, checker.limits, target)
    except IntegrityError as exc:
        checker.fail(f"{target}/{SNAPSHOT_FILE}", None, "journal", "a readable transcript head", str(exc))
        return
    named = {name for name in [*log.committed, *log.appended] if is_journal(name)}
    listed = {segment.file for segment in head.model.segments}  # (a file nothing names is read by nothing)
    for name in sorted(named | listed | {head.active}):
        data = directory.read_optional(name, checker.limits.max_journal_bytes)
        lines, torn = split_lines(data or b"")
        if name == head.active:
            if torn:
                checker.torn(f"{target}/{name}", "record", len(torn))
            checker.lines_match(log, name, data or b"", lines)
        else:
            sealed = None if data is None else sha256_hex(data) if torn else lines_digest(map(line_hash, lines))
            checker.expect(log, name, sealed)
    try:
        all_items(directory, checker.limits, target, head)
    except (IntegrityError, NotFoundError) as exc:
        checker.fail(f"{target}/{head.active}", None, "journal", "a replayable journal", str(exc))
