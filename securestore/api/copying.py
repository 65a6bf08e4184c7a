"""A verified move of a whole store between backends: disk to PostgreSQL and back, disk to disk,
database to database (`securestore migrate copy --from SRC --to DST`).

Both backends hold the same tree with the same bytes (`backends/tree.py`), so a copy is the
tree copied file for file, and the audit trail, copied byte for byte, verifies on the copy with
the ORIGINAL seed, public key and anchors. In order:

1. The source is opened and locked still: its store lock, then every session's lock, then the
   listing index's (the store's own lock order; a session held open by a live writer makes the
   copy wait up to the lock timeout, then refuse naming the holder). Nothing writes to the
   source during the copy; nothing is written to it either, beyond taking those locks.
2. The source is verified as `audit verify` verifies it (every log, the data against the trail,
   with the seed / public key / anchor given, else the key directory's public key or the
   configured signing key). A source that does not verify is refused before the destination
   is even opened: nothing is written there (a directory is not even created).
3. The destination must be empty: a directory that does not exist or holds nothing, or a
   database set up by `pg-setup` that holds no store. Its store lock is taken (two copies never
   interleave), and `.copy-incomplete` is written first.
4. Every file is copied with its exact bytes: the audit logs and checkpoints (appended line by
   line: on PostgreSQL one append-only audit row per record), epoch keys, manifests, journal
   segments, slots, vaults and their wrapped keys, heads, the listing index, import records and
   the sessions a rollback moved aside. Lock files are not copied: locks belong to each backend
   (flock files on disk, advisory locks in PostgreSQL). `store.json`, the store's identity, is
   written LAST, after everything else is durable: until then the destination is not a store.
5. The source's locks are let go; the copy is verified with the same options, then compared
   with what was read from the source, byte for byte (derived files the trail does not cover
   included). Only then is `.copy-incomplete` removed.

A crash or an error at any point leaves the destination recognisably incomplete: it holds
`.copy-incomplete`, and before step 4 ends no `store.json` (a copy that fails step 5 has its
`store.json` removed again). A later copy into it is refused, naming the marker: remove the
directory, or (PostgreSQL: the store's role can never delete audit rows) have the database's
owner drop the schema and run `pg-setup` again.

Keys are not in the tree and are not copied. The copy keeps the store id, so the per-user key
directory `init` made for the store (found by store id) serves the copy as it is; keys given
by flag or environment ($SECURESTORE_MASTER_KEY_FILE, $SECURESTORE_AUDIT_SIGNING_KEY_FILE, ...)
are given to the copy the same way as to the source. On another machine, bring the key files
(or the key directory) over a channel of their own.

The identity's `backend` field says where the store was CREATED ("fs" or "postgres"), not where
it lives now: it is part of `store.json`, whose hash the trail commits, so it is copied
unchanged (a store made on disk and copied to PostgreSQL still says "fs").
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..audit.checkpoint import CHECKPOINTS_FILE
from ..backends.local.auditlog import LOG_FILE
from ..backends.local.index import INDEX_DIR
from ..backends.local.index_compact import INDEX_LOCK
from ..backends.local.layout import AUDIT_DIR, SESSION_LOCK, STORE_FILE, STORE_LOCK
from ..backends.roots import backend_of, open_store_root, root_label
from ..config import Limits, StoreConfig
from ..errors import IntegrityError, LockHeldError, SecureStoreError, UnsafeFileError, UsageError
from ..fs import FsContext, PathArg, environment, inside_root, path_text
from ..backends.tree import TreeDir
from .audit_tools import verify_options
from .store import SecureStore
from .verify import VerifyOptions, VerifyReport, verify_store

__all__ = ["COPY_MARKER", "CopyReport", "copy_store"]

COPY_MARKER = ".copy-incomplete"  # in the destination's root until the copy is verified
_LOCK_FILES = frozenset({STORE_LOCK, SESSION_LOCK, INDEX_LOCK})  # each backend's own: never copied
_APPENDED = (".jsonl", ".log")  # audit logs, checkpoints, manifests, journal segments, index logs
_MAX_DEPTH = 16
_BATCH = 1 << 16  # bytes per append of a non-audit appended file
_PIECE = 1 << 20  # the longest line read as one piece (longer ones arrive in pieces: same bytes)
_HINT = "remove the directory, or have the database's owner drop the schema and run `securestore pg-setup` again"

Progress = Callable[[str, int], None]  # (path just copied, files copied so far)


class CopyRefused(IntegrityError):
    """The source or the copy did not verify; the exit code is `audit verify`'s for it."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class CopyReport:
    store_id: str
    source: str  # as messages name it (a URL without its password)
    destination: str
    files: int
    bytes: int
    sessions: int
    source_verify: VerifyReport
    copy_verify: VerifyReport
    took_over: list[str] = field(default_factory=list)  # source locks left by dead holders

    def to_json(self) -> dict[str, Any]:
        def brief(report: VerifyReport) -> dict[str, Any]:
            return {"ok": report.ok, "exit_code": report.exit_code, "trust_root": report.trust_root,
                    "seed": report.seed, "files_checked": report.files_checked}

        return {"ok": True, "store_id": self.store_id, "from": self.source, "to": self.destination,
                "files": self.files, "bytes": self.bytes, "sessions": self.sessions,
                "source_verify": brief(self.source_verify), "copy_verify": brief(self.copy_verify),
                "took_over": self.took_over}


def copy_store(source: PathArg, destination: PathArg, *, seed_file: str | None = None,
               public_key_file: str | None = None, anchor_file: str | None = None,
               max_unsealed: int | None = None, config: StoreConfig | None = None,
               signing_key_file: str | None = None, environ: Mapping[str, str] | None = None,
               progress: Progress | None = None) -> CopyReport:
    """Copy the store at `source` into the empty `destination` (a directory or a postgresql://
    URL), verified before and after with the options `audit verify` takes (see the module
    docstring for every step and what a crash leaves). `signing_key_file` and `environ` name
    the keys as for `open_store`: a configured signing key is a trust root for both verifies."""
    environ = environment() if environ is None else environ
    src_path, dst_path = path_text(source), path_text(destination)
    _refuse_overlap(src_path, dst_path)
    with SecureStore(src_path, config, signing_key_file=signing_key_file, environ=environ) as src:
        options = verify_options(src, seed_file=seed_file, public_key_file=public_key_file,
                                 anchor_file=anchor_file, max_unsealed=max_unsealed)
        src_label, dst_label = src.backend.root_path, root_label(dst_path, environ)
        with ExitStack() as on_destination:
            with _held_still(src) as took_over:
                before = verify_store(src, None, options)
                if not before.ok:
                    raise CopyRefused(f"refused: the source {src_label} does not verify ({_result(before)}); nothing "
                                      f"was written to {dst_label}; `securestore audit verify` on it lists every "
                                      "finding", before.exit_code)
                dst = on_destination.enter_context(_empty_destination(dst_path, dst_label, environ, src.store_id,
                                                                         src.now_ms()))
                copier = _Copier(src.config.limits, progress)
                try:
                    copier.copy_tree(src.backend.root, dst)
                except SecureStoreError as exc:
                    raise type(exc)(f"{exc}; the copy at {dst_label} is incomplete (it holds {COPY_MARKER}): "
                                    f"{_HINT}, then copy again") from None
                sessions = len(src.backend.session_names())
            after = _verify_copy(dst, dst_path, dst_label, copier, src, options, signing_key_file, environ)
            dst.unlink(COPY_MARKER)
    return CopyReport(src.store_id, src_label, dst_label, len(copier.digests), copier.total, sessions, before,
                      after, took_over)


def _refuse_overlap(src_path: str, dst_path: str) -> None:
    """Two directories on disk, one inside the other: the copy would copy itself."""
    if backend_of(src_path) != "fs" or backend_of(dst_path) != "fs":
        return
    ctx = FsContext()
    if inside_root(dst_path, src_path, ctx) or inside_root(src_path, dst_path, ctx):
        raise UsageError(f"refused: {dst_path} and {src_path} overlap (one is the other or lies inside it); copy "
                         "into a directory outside the source")


@contextmanager
def _held_still(src: SecureStore) -> Iterator[list[str]]:
    """The source's store lock, then every session's lock, then the listing index's: no writer
    can change anything while they are held. Yields the locks taken over from dead holders."""
    backend = src.backend
    timeout, now = backend.config.lock_timeout_seconds, backend.env.clock()
    took_over: list[str] = []
    with ExitStack() as held:
        try:
            store_lock = held.enter_context(backend.root.lock(STORE_LOCK, timeout, now))
            if store_lock.recovered_from_text is not None:
                took_over.append(f"the store lock (holder {store_lock.recovered_from_text})")
            for name in backend.session_names():
                with backend.sessions.open_dir(name) as directory:
                    lock = held.enter_context(directory.lock(SESSION_LOCK, timeout, now))
                if lock.recovered_from_text is not None:
                    took_over.append(f"sessions/{name} (holder {lock.recovered_from_text})")
            if backend.root.entry(INDEX_DIR) is not None:
                with backend.root.open_dir(INDEX_DIR) as index:
                    held.enter_context(index.lock_plain(INDEX_LOCK, exclusive=True, timeout=timeout))
        except LockHeldError as exc:
            raise LockHeldError(f"refused: the source is in use ({exc}); the copy holds every lock of the store while "
                                "it copies: retry once its writers have closed") from None
        if backend.root.entry(COPY_MARKER) is not None:
            raise UsageError(f"refused: the source {backend.root_path} is itself an unfinished copy (it holds "
                             f"{COPY_MARKER}); copy from the original store")
        yield took_over


@contextmanager
def _empty_destination(dst_path: str, label: str, environ: Mapping[str, str], store_id: str,
                       now_ms: int) -> Iterator[TreeDir]:
    """The destination's root, checked empty, store-locked, marked incomplete."""
    with open_store_root(dst_path, FsContext(), environ, create=True) as dst:
        _refuse_unless_empty(dst, label)
        try:
            lock = dst.lock(STORE_LOCK, 0.0, now_ms)
        except LockHeldError as exc:
            raise LockHeldError(f"refused: {label} is being written by another copy ({exc})") from None
        with lock:
            _refuse_unless_empty(dst, label)  # another copy may have begun before we locked
            dst.write_new(COPY_MARKER, f"an unfinished `securestore migrate copy` of store {store_id}: not a "
                                       "store; remove it and copy again\n".encode())
            dst.sync()
            yield dst


def _refuse_unless_empty(dst: TreeDir, label: str) -> None:
    found = []
    for name in dst.list():
        info = dst.entry(name)
        if name != STORE_LOCK or info is None or info.kind != "file":  # a lock on disk is a file
            found.append(name)
    if not found:
        return
    if COPY_MARKER in found:
        raise UsageError(f"refused: {label} holds an unfinished copy ({COPY_MARKER}): {_HINT}, then copy again")
    if STORE_FILE in found:
        raise UsageError(f"refused: {label} already holds a store; a copy goes into an empty directory or a database "
                         "set up by `securestore pg-setup` that holds no store")
    raise UsageError(f"refused: {label} is not empty ({len(found)} entries, e.g. {found[0]!r}); a copy goes into an "
                     "empty directory or a database set up by `securestore pg-setup` that holds no store")


def _verify_copy(dst: TreeDir, dst_path: str, dst_label: str, copier: _Copier, src: SecureStore,
                 options: VerifyOptions, signing_key_file: str | None, environ: Mapping[str, str]) -> VerifyReport:
    """The copy verified as the source was (it is a sound store), then compared with what was
    read from the source (it is this store, byte for byte). A failure unpublishes `store.json`."""
    with SecureStore(dst_path, src.config, signing_key_file=signing_key_file, environ=environ) as copy:
        after = verify_store(copy, None, options)
    problem = None if after.ok else f"does not verify ({_result(after)})"
    code = after.exit_code
    if problem is None:
        difference = copier.differences(dst)
        problem, code = (None, 0) if difference is None else (f"differs from the source: {difference}", 1)
    if problem is None:
        return after
    dst.unlink(STORE_FILE)
    raise CopyRefused(f"the copy at {dst_label} {problem}; it is not a store (store.json removed, {COPY_MARKER} "
                      f"kept): {_HINT}; the source {src.backend.root_path} is unchanged", code)


def _result(report: VerifyReport) -> str:
    findings = report.failures or report.incomplete
    what = {1: "tampered", 5: "truncated or rolled back", 6: "incomplete"}.get(report.exit_code, "failed")
    return f"{what}: {findings[0].describe()}" if findings else what


class _Copier:
    """Copies a tree file for file, keeping each file's digest to compare the copy with."""

    def __init__(self, limits: Limits, progress: Progress | None) -> None:
        # The most a whole (not appended) file may hold: a head, a vault, a slot, an index file.
        self.cap = max(limits.max_snapshot_bytes, limits.max_index_bytes, limits.max_vault_bytes,
                       limits.max_value_bytes + limits.max_key_bytes + 4096)
        self.progress = progress
        self.digests: dict[str, tuple[int, str]] = {}  # path -> (size, sha256) of every file copied
        self.dirs: set[str] = set()
        self.total = 0

    def copy_tree(self, src: TreeDir, dst: TreeDir) -> None:
        self._copy_dir(src, dst, "", 0)
        dst.sync()  # everything below is durable before the identity makes it a store
        self._copy_file(src, dst, STORE_FILE, STORE_FILE)
        dst.sync()

    def _copy_dir(self, src: TreeDir, dst: TreeDir, prefix: str, depth: int) -> None:
        for name, kind in _entries(src, prefix, depth):
            path = prefix + name
            if kind == "dir":
                self.dirs.add(path)
                with src.open_dir(name) as src_child, dst.make_dir(name, durable=False) as dst_child:
                    self._copy_dir(src_child, dst_child, path + "/", depth + 1)
                    dst_child.sync()
            else:
                self._copy_file(src, dst, name, path)

    def _copy_file(self, src: TreeDir, dst: TreeDir, name: str, path: str) -> None:
        digest, size = hashlib.sha256(), 0
        if name.endswith(_APPENDED):  # appended as it grew: so too on the copy (PostgreSQL: rows)
            dst.write_private(name, b"")
            per_record = path.split("/")[-2:] in ([AUDIT_DIR, LOG_FILE], [AUDIT_DIR, CHECKPOINTS_FILE])
            batch: list[bytes] = []
            pending = 0
            for _, piece in src.iter_lines(name, _PIECE):
                digest.update(piece)
                size += len(piece)
                batch.append(piece)
                pending += len(piece)
                if per_record or pending >= _BATCH:
                    dst.append(name, b"".join(batch), durable=False)
                    batch, pending = [], 0
            if batch:
                dst.append(name, b"".join(batch), durable=False)
            dst.flush(name)
        else:
            data = src.read(name, self.cap)
            digest.update(data)
            size = len(data)
            if path == STORE_FILE:
                dst.write_new(name, data)
            else:
                dst.write_private(name, data)
        self.digests[path] = (size, digest.hexdigest())
        self.total += size
        if self.progress is not None:
            self.progress(path, len(self.digests))

    def differences(self, dst: TreeDir) -> str | None:
        """The first way the copy differs from what was copied (None: identical)."""
        found: dict[str, tuple[int, str]] = {}
        dirs: set[str] = set()
        self._digest_dir(dst, "", 0, found, dirs)
        for path in sorted(set(found) | set(self.digests)):
            if path not in found:
                return f"{path} is missing"
            if path not in self.digests:
                return f"{path} is not in the source"
            if found[path] != self.digests[path]:
                return f"{path} holds other bytes ({found[path][0]} bytes, not {self.digests[path][0]})"
        extra = sorted(dirs ^ self.dirs)
        return None if not extra else f"directory {extra[0]} is in one tree only"

    def _digest_dir(self, directory: TreeDir, prefix: str, depth: int, found: dict[str, tuple[int, str]],
                    dirs: set[str]) -> None:
        for name, kind in _entries(directory, prefix, depth, keep_identity=True):
            path = prefix + name
            if kind == "dir":
                dirs.add(path)
                with directory.open_dir(name) as child:
                    self._digest_dir(child, path + "/", depth + 1, found, dirs)
                continue
            digest = hashlib.sha256()
            size = 0
            if name.endswith(_APPENDED):
                for _, piece in directory.iter_lines(name, _PIECE):
                    digest.update(piece)
                    size += len(piece)
            else:
                data = directory.read(name, self.cap)
                digest.update(data)
                size = len(data)
            found[path] = (size, digest.hexdigest())


def _entries(directory: TreeDir, prefix: str, depth: int, *, keep_identity: bool = False) -> list[tuple[str, str]]:
    """(name, "dir" | "file") of what a copy carries in `directory`: not lock files, not the
    marker; the root's `store.json` only when asked (it is copied last)."""
    if depth > _MAX_DEPTH:
        raise UnsafeFileError(f"refused {prefix}: deeper than any store's tree ({_MAX_DEPTH} levels)")
    kept: list[tuple[str, str]] = []
    for name in directory.list():
        info = directory.entry(name)
        if info is None:
            continue
        if info.kind not in ("dir", "file"):
            raise UnsafeFileError(f"refused {prefix}{name}: a {info.kind}, which no store holds; nothing was copied "
                                  "past it")
        if info.kind == "file" and name in _LOCK_FILES:
            continue
        if not prefix and name in (COPY_MARKER, *(() if keep_identity else (STORE_FILE,))):
            continue
        kept.append((name, info.kind))
    return kept
