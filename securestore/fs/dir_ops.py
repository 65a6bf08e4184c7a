"""The line, lock, wipe and tree operations of a `Dir` as methods, so the engine sees one
interface (`backends/tree.py` `TreeDir`) whatever keeps its tree. Each delegates to the module
that implements it (which see `Dir` only as `base.DirCore`: no import circle)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Self, cast

from .base import DirCore, EntryInfo
from .lines import iter_lines, lines_backward, read_tail, size_of
from .locks import FileLock, is_alive, lock, lock_owner, lock_plain
from .rewrite import rewrite_in_place
from .trees import walk
from .unpublished import ensure_file, write_private
from .wipe import replace_wiping, shred

_CHUNK = 1 << 16


def _me(ops: DirOps) -> DirCore:
    return cast(DirCore, ops)  # DirOps is only ever mixed into Dir


class DirOps:
    atomic_appends = False  # a crash can cut an append short: a torn last line is repaired, not blamed
    crash_leftovers = True  # a replace's temp file, until the rename

    def group(self, label: str) -> AbstractContextManager[None]:
        return nullcontext()  # on disk each write is ordered and made durable by its own fsyncs

    def attempt(self, label: str) -> AbstractContextManager[None]:
        return nullcontext()  # a failed act leaves what it wrote; the outcome records what is there

    def after_group(self, work: Callable[[], None]) -> None:
        work()  # no group on disk: now

    def walk(self) -> Iterator[tuple[str, EntryInfo]]:
        return walk(_me(self))

    def write_private(self, name: str, data: bytes) -> None:
        write_private(_me(self), name, data)

    def ensure_file(self, name: str) -> None:
        ensure_file(_me(self), name)

    def rewrite_in_place(self, name: str, data: bytes) -> None:
        rewrite_in_place(_me(self), name, data)

    def replace_wiping(self, name: str, data: bytes) -> None:
        replace_wiping(_me(self), name, data)

    def shred(self, name: str) -> None:
        shred(_me(self), name)

    def size_of(self, name: str) -> tuple[int, int] | None:
        return size_of(_me(self), name)

    def read_tail(self, name: str, nbytes: int, *, enough: Callable[[bytes], bool] | None = None) -> tuple[int, bytes]:
        return read_tail(_me(self), name, nbytes, enough)

    def lines_backward(self, name: str, end: int, max_line: int,
                       chunk: int = _CHUNK) -> Generator[tuple[int, bytes], None, None]:
        return lines_backward(_me(self), name, end, max_line, chunk)

    def iter_lines(self, name: str, max_line: int, chunk_size: int = _CHUNK, *,
                   start: int = 0) -> Iterator[tuple[int, bytes]]:
        return iter_lines(_me(self), name, max_line, chunk_size, start=start)

    def lock(self, name: str, timeout: float, now_ms: int, *, lasting: bool = False) -> FileLock:
        return lock(_me(self), name, timeout, now_ms)  # (no groups on disk: every lock lasts)

    def lock_plain(self, name: str, *, exclusive: bool, timeout: float) -> FileLock:
        return lock_plain(_me(self), name, exclusive=exclusive, timeout=timeout)

    if TYPE_CHECKING:  # Dir's own
        def open_or_make_dir(self, name: str) -> Self: ...
        def close(self) -> None: ...

    def open_locked(self, name: str, lock: str, *, exclusive: bool, timeout: float) -> tuple[Self, FileLock]:
        directory = self.open_or_make_dir(name)
        try:
            return directory, directory.lock_plain(lock, exclusive=exclusive, timeout=timeout)
        except BaseException:
            directory.close()
            raise

    def expect_locked(self, name: str, lock: str, *, exclusive: bool) -> None:
        pass  # (no round trips to save on disk)

    def expect_reads(self, reads: Sequence[object]) -> None:
        pass

    def lock_holder(self, name: str, *, live: bool = False) -> str | None:
        owner = lock_owner(_me(self), name)
        if owner is None or (live and not is_alive(_me(self).ctx.os, owner)):
            return None
        return owner.describe()
