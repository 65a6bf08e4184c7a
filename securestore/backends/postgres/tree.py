"""PgDir: a directory of the store's tree kept in PostgreSQL (see `backends/tree.py`).

Names are checked as on disk (one component, no NUL or '/'); there are no symlinks, modes or
hard links to plant, and no torn writes: every change is one transaction. Sizes and
generations live on the node row, so `size_of` and the tails are single-row or indexed reads.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ...audit.checkpoint import CHECKPOINTS_FILE
from ...errors import AlreadyExistsError, IntegrityError, NotFoundError, SecureStoreError, StorageError, UnsafeFileError
from ...fs import EntryInfo, FsContext, check_name
from ..tree import LINE_CHUNK, Expected, ReadKind
from .group import Queued, any_answer, expect_answer
from .link import PgLink
from .reads import query, read_ahead
from .lines import backward_lines, chunks_backward, chunks_forward, forward_lines, tail_of, tail_query, tail_start
from .locks import AdvisoryLock, DirectoryMoved, anticipate, holder, take
from .schema import ROOT

# The audit trail's files: their rows go to `audit_records`, which only ever grows.
AUDIT_FILES = frozenset({("audit", "log.jsonl"), ("audit", CHECKPOINTS_FILE)})
_KINDS = {"d": "dir", "f": "file"}
REPLACE_CHUNK = 16 * 1024  # a file replaced whole is kept in chunks of this size
_NO_END = 1 << 62  # a read of a file's tail: up to its size, whatever that is
# The store's top directories that a handle looks up once, as a directory store's handle keeps
# them open (StoreDir): made by init, never removed or replaced. Not `index`: a lost index is
# rebuilt in a new directory, which every handle must find.
STABLE_ROOT_DIRS = frozenset({"audit", "sessions"})
_MODES = {"d": 0o700, "f": 0o600}


class PgDir:
    atomic_appends = True  # a partial last line is never a crash's: see truncate
    crash_leftovers = False  # every change is one transaction; nothing has a temporary name

    def __init__(self, link: PgLink, node: int, name: str, label: str, *, owns_link: bool = False) -> None:
        self.link = link
        self.owns_link = owns_link  # the root: closing it closes the store handle's connection
        self.node = node
        self.name = name
        self.label = label
        self.ctx: FsContext = link.ctx
        self.sql = link.sql
        self._appended: dict[str, tuple[int, int]] = {}  # file -> (gen, size) after this handle's last append

    def close(self) -> None:
        if self.owns_link:  # any other directory holds nothing open: the link does
            self.link.close()

    def __enter__(self) -> PgDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def child_label(self, name: str) -> str:
        return f"{self.label}/{name}" if self.label else name

    def group(self, label: str) -> AbstractContextManager[None]:
        return self.link.grouped(label)

    def attempt(self, label: str) -> AbstractContextManager[None]:
        return self.link.attempt(label)

    def after_group(self, work: Callable[[], None]) -> None:
        self.link.after_group(work)

    def _one(self, label: str, kind: ReadKind, name: str, cap: int = 0) -> tuple[Any, ...] | None:
        """The first row of a read (one round trip, with the group's queued writes; or answered
        from what was asked ahead: `_statements` makes both ask the same)."""
        return query(self.link, label, _statements(self, kind, name, cap))[-1].fetchone()

    def _now(self) -> int:
        return self.ctx.os.now_ns() // 1_000_000

    def _key(self, name: str) -> dict[str, Any]:
        check_name(name)
        return {"parent": self.node, "name": name}

    def _is_audit(self, name: str) -> bool:
        return (self.name, name) in AUDIT_FILES

    # -- directories ---------------------------------------------------------------------------
    def open_dir(self, name: str) -> PgDir:
        label = self.child_label(name)
        known = self.link.known_dir(self.node, name)
        if known is not None:
            return PgDir(self.link, known, name, label)
        row = self._one(label, "dir", name)
        if row is None:
            raise NotFoundError(f"{label} does not exist")
        if row[1] != "d":
            raise UnsafeFileError(f"refused {label}: expected a directory, found a file")
        if self.node == ROOT and name in STABLE_ROOT_DIRS:
            self.link.root_dirs[name] = int(row[0])
        return PgDir(self.link, int(row[0]), name, label)

    def make_dir(self, name: str, *, durable: bool = True) -> PgDir:
        label = self.child_label(name)
        made = self.link.write(label, self.sql.make_dir, {**self._key(name), "now": self._now()}, durable=durable)
        if made is None:
            raise AlreadyExistsError(f"{label} already exists")
        if (group := self.link.my_group()) is not None:
            group.made_dir(self.node, name, int(made))
        return PgDir(self.link, int(made), name, label)

    def open_or_make_dir(self, name: str) -> PgDir:
        try:
            return self.open_dir(name)
        except NotFoundError:
            pass
        try:
            return self.make_dir(name)
        except AlreadyExistsError:  # another writer made it first
            return self.open_dir(name)

    def sync(self) -> None:
        self.ctx.check_usable()
        self.link.barrier(self.label or ".")

    def entry(self, name: str) -> EntryInfo | None:
        row = self._one(self.child_label(name), "entry", name)
        if row is None:
            return None
        kind = str(row[0])
        return EntryInfo(name, _KINDS[kind], _MODES[kind], int(row[1]), int(row[2]) * 1_000_000)

    def holds(self, name: str, child: PgDir) -> bool:
        row = self._one(self.child_label(name), "dir", name)
        return row is not None and int(row[0]) == child.node

    def list(self, *, sort: bool = True) -> list[str]:
        (rows,) = query(self.link, self.label or ".", [(self.sql.children, {"parent": self.node})])
        names = [str(row[0]) for row in rows.fetchall()]
        return sorted(names) if sort else names

    def walk(self) -> Iterator[tuple[str, EntryInfo]]:
        for name in self.list():
            info = self.entry(name)
            if info is None:
                continue
            yield name, info
            if info.kind == "dir":
                with self.open_dir(name) as child:
                    for sub, sub_info in child.walk():
                        yield f"{name}/{sub}", sub_info

    def remove_tree(self, name: str) -> None:
        """Delete `name` and everything under it, except the audit trail's files: those are
        retired (kept, out of the tree), never deleted."""
        label = self.child_label(name)
        if (group := self.link.my_group()) is not None:
            group.removed(self.node, name)
        with self.link.writing(label, durable=True) as connection:
            rows = connection.execute(self.sql.subtree, self._key(name)).fetchall()
            ids = [int(row[0]) for row in rows]
            connection.execute(self.sql.retire, {"ids": [int(row[0]) for row in rows if row[1]]})
            connection.execute(self.sql.drop_chunks, {"ids": ids})
            connection.execute(self.sql.drop_nodes, {"ids": ids})

    def rename(self, src: str, dst: str, target: PgDir | None = None) -> None:
        into = target or self
        check_name(dst)
        params = {**self._key(src), "into": into.node, "dst": dst}
        self.link.write(into.child_label(dst), self.sql.rename, params, durable=True,  # names dst if it exists
                        check=expect_answer(1, NotFoundError, f"{self.child_label(src)} does not exist"))
        if (group := self.link.my_group()) is not None:
            group.renamed(self.node, src, into.node, dst)

    # -- whole files ---------------------------------------------------------------------------
    def read(self, name: str, cap: int, *, ours: bool = True) -> bytes:
        label = self.child_label(name)
        row = self._one(label, "read", name, cap)
        if row is None:
            raise NotFoundError(f"{label} does not exist")
        if row[0] != "f":
            raise UnsafeFileError(f"refused {label}: expected a file, found a directory")
        if int(row[1]) > cap:
            raise StorageError(f"refused {label}: {row[1]} bytes exceeds the {cap}-byte cap")
        return bytes(row[2] or b"")

    def read_optional(self, name: str, cap: int) -> bytes | None:
        try:
            return self.read(name, cap)
        except NotFoundError:
            return None

    def write_atomic(self, name: str, data: bytes, *, durable: bool = True) -> None:
        label = self.child_label(name)
        if self._is_audit(name):
            raise UnsafeFileError(f"refused to replace {label}: the audit trail only grows")
        self.link.write(label, self.sql.replace, _replace_params(self, name, data), durable=durable, check=expect_answer(
            1, UnsafeFileError, f"refused {label}: expected a file, found a directory"))

    def write_new(self, name: str, data: bytes) -> None:
        label = self.child_label(name)
        params = {**self._key(name), "size": len(data), "data": data, "now": self._now(),
                  "audit": self._is_audit(name)}
        self.link.write(label, self.sql.create, params, durable=True,
                        check=expect_answer(1, AlreadyExistsError, f"{label} already exists"))

    def write_private(self, name: str, data: bytes) -> None:
        self.write_new(name, data)

    def rewrite_in_place(self, name: str, data: bytes) -> None:
        self.write_atomic(name, data, durable=False)  # a row replaced is never torn

    def replace_wiping(self, name: str, data: bytes) -> None:
        # The old row is deleted in the same transaction; its bytes stay in the table's dead
        # tuples and the WAL until VACUUM and WAL recycling (SECURITY.md, the database boundary).
        self.write_atomic(name, data)

    def shred(self, name: str) -> None:
        self.unlink(name)

    def ensure_file(self, name: str) -> None:
        params = {**self._key(name), "size": 0, "data": b"", "now": self._now(), "audit": self._is_audit(name)}
        # Its answer (1 made, 0 there already) changes nothing: queued with what comes next.
        self.link.write(self.child_label(name), self.sql.create, params, durable=False, check=any_answer)

    def unlink(self, name: str, *, durable: bool = True) -> None:
        label = self.child_label(name)
        if not self.link.write(label, self.sql.unlink, self._key(name), durable=durable):
            raise NotFoundError(f"{label} does not exist")

    # -- appended lines ------------------------------------------------------------------------
    def append(self, name: str, data: bytes, *, durable: bool, create: bool = False) -> None:
        label = self.child_label(name)
        params = {**self._key(name), "size": len(data), "data": data, "now": self._now()}
        if create and self._is_audit(name):
            raise UnsafeFileError(f"refused to create {label} by appending: the audit trail's files are made whole")
        self.link.write(label, self.sql.append_creating if create else self.sql.append, params, durable=durable,
                        check=_appending(self, name, create))

    def follow_commit(self, directory: str, lock: str, *, replace: tuple[str, str, bytes], append: tuple[str, bytes],
                      again: Callable[[], None], failed: Callable[[str], None]) -> PgDir | None:
        return _follow_commit(self, directory, lock, replace, append, again, failed)

    def appended_stamp(self, name: str) -> tuple[int, int] | None:
        """(generation, size) of `name` after this handle's last append to it (None if it made
        none), as an append descriptor's fstat on disk: the append's answer, no round trip."""
        return self._appended.get(name)

    def flush(self, name: str) -> None:
        self.ctx.check_usable()
        self.link.barrier(self.child_label(name))

    def truncate(self, name: str, length: int) -> None:
        """Only ever asked to cut a torn last line, which no crash leaves here: refused."""
        raise IntegrityError(f"refused to cut {self.child_label(name)}: it ends with a partial record, which no crash "
                             "leaves in PostgreSQL (every append is one transaction), so it was written from outside "
                             "the store; run `securestore audit verify` and restore the database from a backup")

    def _file(self, name: str) -> tuple[int, int, int, bool] | None:
        """(node, generation, size, audit) of a file; None if absent."""
        row = query(self.link, self.child_label(name), [(self.sql.file_info, self._key(name))])[0].fetchone()
        if row is None:
            return None
        if row[4] != "f":
            raise UnsafeFileError(f"refused {self.child_label(name)}: expected a file, found a directory")
        return int(row[0]), int(row[1]), int(row[2]), bool(row[3])

    def size_of(self, name: str) -> tuple[int, int] | None:
        found = self._file(name)
        return None if found is None else (found[1], found[2])

    def _existing(self, name: str) -> tuple[int, int, int, bool]:
        found = self._file(name)
        if found is None:
            raise NotFoundError(f"{self.child_label(name)} does not exist")
        return found

    def read_tail(self, name: str, nbytes: int, *, enough: Callable[[bytes], bool] | None = None) -> tuple[int, bytes]:
        node, size, audit, first = tail_start(self.link, self.child_label(name), self._key(name), _NO_END)
        chunks = chunks_backward(self.link, self.child_label(name), node, audit, size, first)
        return size, tail_of(chunks, size, nbytes, len(first), enough)

    def lines_backward(self, name: str, end: int, max_line: int,
                       chunk: int = LINE_CHUNK) -> Generator[tuple[int, bytes], None, None]:
        node, size, audit, first = tail_start(self.link, self.child_label(name), self._key(name), end)
        chunks = chunks_backward(self.link, self.child_label(name), node, audit, min(end, size), first)
        return backward_lines(chunks, min(end, size), max_line)

    def iter_lines(self, name: str, max_line: int, chunk_size: int = LINE_CHUNK, *,
                   start: int = 0) -> Iterator[tuple[int, bytes]]:
        node, _, size, audit = self._existing(name)
        return forward_lines(chunks_forward(self.link, self.child_label(name), node, audit, start, size), start,
                             max_line)

    # -- locks -----------------------------------------------------------------------------------
    def lock(self, name: str, timeout: float, now_ms: int, *, lasting: bool = False) -> AdvisoryLock:
        return take(self.link, self.link.lock_key(self.node, name), self.child_label(name), exclusive=True,
                    timeout=timeout, directory=self.node, lasting=lasting)

    def lock_plain(self, name: str, *, exclusive: bool, timeout: float) -> AdvisoryLock:
        return take(self.link, self.link.lock_key(self.node, name), self.child_label(name), exclusive=exclusive,
                    timeout=timeout, directory=self.node)

    def open_locked(self, name: str, lock: str, *, exclusive: bool, timeout: float) -> tuple[PgDir, AdvisoryLock]:
        return _open_locked(self, name, lock, exclusive=exclusive, timeout=timeout)

    def expect_reads(self, reads: Sequence[Expected]) -> None:
        read_ahead(self.link, [_statements(self, read.kind, read.name, read.cap) for read in reads
                               if read.kind != "dir" or self.link.known_dir(self.node, read.name) is None])

    def expect_locked(self, name: str, lock: str, *, exclusive: bool) -> None:
        known = self.link.locked_dirs.get((self.node, name))
        if known is not None:
            anticipate(self.link, self.link.lock_key(known, lock), exclusive=exclusive, directory=known,
                       where=(self.node, name))

    def lock_holder(self, name: str, *, live: bool = False) -> str | None:
        return holder(self.link, self.link.lock_key(self.node, name), self.child_label(name))


def _follow_commit(root: PgDir, directory: str, lock: str, replace: tuple[str, str, bytes],
                   append: tuple[str, bytes], again: Callable[[], None], failed: Callable[[str], None]) -> PgDir | None:
    """TreeDir.follow_commit: the child directory is found under the lock, by the statement that
    writes in it (replace_in: not there, the follower fails); `directory` is remembered."""
    link = root.link
    group = link.my_group()
    if group is None:
        return None
    known = link.locked_dirs.get((root.node, directory))
    target = PgDir(link, known, directory, root.child_label(directory)) if known is not None \
        else root.open_or_make_dir(directory)
    link.locked_dirs[(root.node, directory)] = target.node
    (sub, name, data), (log, line) = replace, append
    check_name(sub)
    replacing = {**_replace_params(target, name, data), "dir": target.node, "sub": sub, "commit": "off"}
    appending = {**target._key(log), "size": len(line), "data": line, "now": target._now(), "commit": "off"}

    def once_more() -> None:
        try:
            again()
        except BaseException as exc:
            failed(str(exc) or type(exc).__name__)  # (an interrupt too: the listing is stale)
            if not isinstance(exc, SecureStoreError):
                raise

    def late(why: str) -> None:  # the lock was busy (now taken by polling, never waited for in the
        link.locked_dirs.pop((root.node, directory), None)  # round trip), the directory moved...
        link.after_group(once_more)

    label = f"{target.child_label(sub)}/{name}"
    group.follow(link.lock_key(target.node, lock), (
        Queued(link.sql.replace_in, replacing, expect_answer(1, NotFoundError, f"{label}: not written")),
        Queued(link.sql.append_creating, appending, _appending(target, log, True))), late)
    return target


def _replace_params(directory: PgDir, name: str, data: bytes) -> dict[str, Any]:
    positions = list(range(0, len(data), REPLACE_CHUNK))  # none for an empty file: no row is empty
    return {**directory._key(name), "size": len(data), "now": directory._now(), "count": len(positions),
            "parts": [data[at: at + REPLACE_CHUNK] for at in positions], "positions": positions}


def _appending(directory: PgDir, name: str, create: bool) -> Callable[[Any], None]:
    """An append's check (when its answer arrives, in a group), keeping the size it left."""
    label = directory.child_label(name)
    check = expect_answer(None, UnsafeFileError, f"refused {label}: expected a file, found a directory") if create \
        else expect_answer(None, NotFoundError, f"{label} does not exist")

    def checked(stamp: Any) -> None:  # [generation, size]
        check(stamp)
        directory._appended[name] = (int(stamp[0]), int(stamp[1]))
    return checked


def _statements(directory: PgDir, kind: ReadKind, name: str, cap: int) -> list[tuple[bytes, dict[str, Any] | None]]:
    """What a read of `name` asks: an entry, a directory's lookup, a whole file, or its end."""
    if kind == "tail":
        return tail_query(directory.link, directory._key(name), _NO_END)
    statement = {"entry": directory.sql.entry, "dir": directory.sql.find, "read": directory.sql.read}[kind]
    return [(statement, {**directory._key(name), "cap": cap} if kind == "read" else directory._key(name))]


def _open_locked(parent: PgDir, name: str, lock: str, *, exclusive: bool,
                 timeout: float) -> tuple[PgDir, AdvisoryLock]:
    """Inside a group, a directory this handle found before is taken at its word and checked
    in the lock's round trip (found elsewhere by then: looked up again); one round trip."""
    link = parent.link
    known = link.locked_dirs.get((parent.node, name))
    if known is not None and link.my_group() is not None:
        directory = PgDir(link, known, name, parent.child_label(name))
        try:
            return directory, take(link, link.lock_key(known, lock), directory.child_label(lock), exclusive=exclusive,
                                   timeout=timeout, directory=known, where=(parent.node, name))
        except DirectoryMoved:
            del link.locked_dirs[(parent.node, name)]
    directory = parent.open_or_make_dir(name)
    held = directory.lock_plain(lock, exclusive=exclusive, timeout=timeout)
    link.locked_dirs[(parent.node, name)] = directory.node
    return directory, held
