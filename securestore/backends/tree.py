"""The store's tree, as the engine in `backends/local/` uses it: directories of files, each file
either replaced whole or grown by appended lines, and named locks.

Two implementations: `fs.Dir` (a directory on disk, anchored on fds, O_NOFOLLOW) and
`backends/postgres/tree.py` `PgDir` (the same tree kept in rows of a PostgreSQL database, a lock
being an advisory lock that dies with its connection). The engine names the same files and
writes the same bytes on both, so an audit trail means the same thing on either and a store
copies between them file for file (like SQLite's VFS or LevelDB's Env: one engine, the
storage behind a table of operations). `durable=True` means "survives a power cut once this
returns"; `durable=False`, "may be lost in a crash, never torn into something else".
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol, Self

from ..fs import EntryInfo, FsContext

LINE_CHUNK = 1 << 16


ReadKind = Literal["entry", "read", "tail", "dir"]


@dataclass(frozen=True)
class Expected:
    """A read that comes soon (TreeDir.expect_reads): `entry(name)`, `read(name, cap)`, the
    start of a read of its end (`read_tail`, `lines_backward`), or the lookup of a directory
    (`open_dir(name)`, `holds(name, ...)`)."""

    kind: ReadKind
    name: str
    cap: int = 0


class TreeLock(Protocol):
    @property
    def recovered_from_text(self) -> str | None:
        """The dead holder this lock was taken over from, described (None: it was free)."""

    def release(self) -> None: ...
    def __enter__(self) -> TreeLock: ...
    def __exit__(self, *exc: object) -> None: ...


class TreeDir(Protocol):
    ctx: FsContext
    label: str
    # Every append is all or nothing (a transaction): a partial last line was written from outside.
    atomic_appends: bool
    # A crash can leave temporary files behind (on disk: a replace writes a temp file first). On
    # PostgreSQL every change is one transaction and nothing is written under a temporary name.
    crash_leftovers: bool

    def close(self) -> None: ...
    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
    def child_label(self, name: str) -> str: ...
    def group(self, label: str) -> AbstractContextManager[None]:
        """Every write of this handle inside the block commits together at its end (PostgreSQL:
        one transaction, one WAL flush); on disk, nothing changes."""
    def attempt(self, label: str) -> AbstractContextManager[None]:
        """The scope of an act inside a group: if it fails, what it wrote is undone (a savepoint)
        and the group's earlier writes (its intent) still commit; on disk, nothing changes."""
    def after_group(self, work: Callable[[], None]) -> None:
        """Run `work` once the open group has committed and let go of its locks (on disk: now)."""

    # -- directories
    def open_dir(self, name: str) -> Self: ...
    def make_dir(self, name: str, *, durable: bool = True) -> Self: ...
    def open_or_make_dir(self, name: str) -> Self: ...
    def sync(self) -> None:
        """Make every earlier change in this directory durable (a barrier)."""
    def entry(self, name: str) -> EntryInfo | None: ...
    def holds(self, name: str, child: Self) -> bool:
        """Is `name` still the directory `child` has open (not deleted or replaced)?"""
    def list(self, *, sort: bool = True) -> list[str]: ...
    def walk(self) -> Iterator[tuple[str, EntryInfo]]: ...
    def remove_tree(self, name: str) -> None: ...
    def rename(self, src: str, dst: str, target: Self | None = None) -> None: ...

    # -- whole files
    def read(self, name: str, cap: int, *, ours: bool = True) -> bytes: ...
    def read_optional(self, name: str, cap: int) -> bytes | None: ...
    def write_atomic(self, name: str, data: bytes, *, durable: bool = True) -> None: ...
    def write_new(self, name: str, data: bytes) -> None: ...
    def write_private(self, name: str, data: bytes) -> None:
        """Create `name` in a directory not yet published (its rename makes it visible)."""
    def rewrite_in_place(self, name: str, data: bytes) -> None:
        """Overwrite derived data whose readers validate it (may tear in a crash)."""
    def replace_wiping(self, name: str, data: bytes) -> None:
        """Replace key material, destroying the old bytes."""
    def shred(self, name: str) -> None:
        """Destroy key material and remove its name."""
    def ensure_file(self, name: str) -> None: ...
    def unlink(self, name: str, *, durable: bool = True) -> None: ...

    # -- appended lines
    def append(self, name: str, data: bytes, *, durable: bool, create: bool = False) -> None:
        """Append `data`; `create`: make the file (empty, 0600) first if it does not exist."""
    def follow_commit(self, directory: str, lock: str, *, replace: tuple[str, str, bytes], append: tuple[str, bytes],
                      again: Callable[[], None], failed: Callable[[str], None]) -> TreeDir | None:
        """In an open group on PostgreSQL: once the group has committed, in a transaction of
        their own sent in the commit's round trip, replace the file replace[1] in the child
        directory replace[0] of `directory` with replace[2] and append append[1] to its file
        append[0] (made if missing), neither durably, under its lock `lock` (shared, only
        tried). If that did not happen (the lock was busy, the directory moved...), `again()`
        runs once the round trip is over, and `failed(why)` if it raises. Returns `directory`.
        None (on disk, or outside a group): the caller writes them now. Every writer of the
        store appends to that file: in the group's transaction its row would be held until the
        commit's flush, one write at a time for the whole store."""
    def appended_stamp(self, name: str) -> tuple[int, int] | None:
        """(identity, size) as `size_of` gives them, of the file this handle last appended to
        under `name`, after that append (None if it made none): what the append learned, no read."""
    def flush(self, name: str) -> None: ...
    def truncate(self, name: str, length: int) -> None: ...
    def size_of(self, name: str) -> tuple[int, int] | None:
        """(identity, size): moves whenever the file is replaced or grows; None if absent."""
    def read_tail(self, name: str, nbytes: int, *, enough: Callable[[bytes], bool] | None = None) -> tuple[int, bytes]:
        """(size, the last `nbytes` bytes); with `enough`, possibly a shorter tail that it
        accepts, the first the backend reads cheaply (on disk a small pread, on PostgreSQL a
        few rows instead of a walk back through `nbytes`)."""
    def lines_backward(self, name: str, end: int, max_line: int,
                       chunk: int = LINE_CHUNK) -> Generator[tuple[int, bytes], None, None]: ...
    def iter_lines(self, name: str, max_line: int, chunk_size: int = LINE_CHUNK, *,
                   start: int = 0) -> Iterator[tuple[int, bytes]]: ...

    # -- locks
    def lock(self, name: str, timeout: float, now_ms: int, *, lasting: bool = False) -> TreeLock:
        """The exclusive, owner-recorded lock of a writer (LockHeldError naming the holder).
        Taken inside a group it is let go when the group commits, unless `lasting`: then it
        is held until released (on disk, every lock is)."""
    def lock_plain(self, name: str, *, exclusive: bool, timeout: float) -> TreeLock: ...
    def open_locked(self, name: str, lock: str, *, exclusive: bool, timeout: float) -> tuple[Self, TreeLock]:
        """`open_or_make_dir(name)`, then its `lock_plain(lock)` (on PostgreSQL, inside a group,
        one round trip once this handle has found the directory before)."""
    def expect_reads(self, reads: Sequence[Expected]) -> None:
        """A hint inside a group, under the lock that guards these files: they are read soon. On
        PostgreSQL they ride with the group's next round trip and their answers stand in for
        those reads until the group writes anything; on disk, nothing."""
    def expect_locked(self, name: str, lock: str, *, exclusive: bool) -> None:
        """A hint, inside a group: `open_locked(name, lock)` comes later in it. On PostgreSQL the
        lock is tried with the group's next round trip, so that call need not make one; on disk,
        nothing."""
    def lock_holder(self, name: str, *, live: bool = False) -> str | None:
        """Who holds (or last held, unless `live`) the lock `name`, described."""


def read_tail_until(directory: TreeDir, name: str, nbytes: int,
                    enough: Callable[[bytes], bool]) -> tuple[int, bytes]:
    """The end of a file that `enough` accepts, or its last `nbytes` bytes (see read_tail)."""
    return directory.read_tail(name, nbytes, enough=enough)


def holds_last_line(tail: bytes) -> bool:
    """Does `tail` hold a whole last line (the newline before it too) and whatever follows it?"""
    last = tail.rfind(b"\n")
    return last > 0 and tail.rfind(b"\n", 0, last) >= 0
