"""Reading a foreign legacy store to import (a `sessions.json` file or a directory of `*.json`
files), and finding its `<name>.bak.<timestamp>` backups. These files are not ours: their mode
and link count are not checked, but O_NOFOLLOW, the owner, the per-file cap and "unchanged while
read" are.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import NotFoundError, StorageError, UnsafeFileError, VersionConflictError
from .base import DIR_FLAGS, READ_FLAGS, FsContext, read_upto, translate
from .dirs import Dir
from .paths import open_parent

# (device, inode, size, mtime_ns, ctime_ns) of an opened file: any write, truncation, replacement
# or metadata change gives a new stamp (ctime cannot be set back the way mtime can).
FileStamp = tuple[int, int, int, int, int]


def _stamp(st: os.stat_result) -> FileStamp:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


@dataclass(frozen=True)
class LegacyFile:
    name: str
    data: bytes
    stamp: FileStamp


class LegacySource:
    """An open legacy store: one `sessions.json` file ("file") or a directory of `*.json` files
    ("dir"). Its directory stays open until close(). Files are read one at a time, on demand, so
    memory is bounded by the per-file cap, never by the number of files."""

    def __init__(self, directory: Dir, kind: str, names: list[str], cap: int) -> None:
        self.kind = kind
        self.names = names
        self._directory = directory
        self._cap = cap

    def close(self) -> None:
        self._directory.close()

    def __enter__(self) -> LegacySource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[LegacyFile]:
        """Each file in turn. Drop each one before taking the next, or two files are held."""
        for name in self.names:
            yield self.read(name)

    def read(self, name: str) -> LegacyFile:
        """One file: O_NOFOLLOW, ours, a regular file, at most `cap` bytes (checked with fstat
        before reading), and unchanged while it was read."""
        directory = self._directory
        fd, st = directory.open_checked(name, READ_FLAGS, "file", "open", ours=False)
        label = directory.child_label(name)
        try:
            if st.st_size > self._cap:
                raise StorageError(f"refused {label}: {st.st_size} bytes exceeds the {self._cap}-byte cap")
            data = _read_exactly(directory.ctx, fd, st.st_size, label)
            if _stamp(directory.ctx.os.fstat(fd)) != _stamp(st):
                raise VersionConflictError(f"refused {label}: it changed while it was read; run the command again")
            return LegacyFile(name, data, _stamp(st))
        except OSError as exc:
            raise translate(exc, "read", label) from None
        finally:
            directory.ctx.close_quietly(fd)

    def reread(self, name: str, stamp: FileStamp) -> bytes:
        """A file read earlier, again: refused unless it is the same file, unchanged."""
        found = self.read(name)
        if found.stamp != stamp:
            raise VersionConflictError(self._changed(name))
        return found.data

    def check_unchanged(self, name: str, stamp: FileStamp) -> None:
        """The same check as reread, without reading the content (fstat only)."""
        fd, st = self._directory.open_checked(name, READ_FLAGS, "file", "open", ours=False)
        self._directory.ctx.close_quietly(fd)
        if _stamp(st) != stamp:
            raise VersionConflictError(self._changed(name))

    def _changed(self, name: str) -> str:
        return (f"refused {self._directory.child_label(name)}: it changed since it was checked (size, mtime, ctime "
                "or inode differ); nothing was imported: inspect it and run the import again")


def _read_exactly(ctx: FsContext, fd: int, size: int, label: str) -> bytes:
    """The `size` bytes fstat reported; any other count means the file changed while read."""
    data = read_upto(ctx, fd, size)
    if len(data) != size:
        raise VersionConflictError(f"refused {label}: it changed while it was read; run the command again")
    return data


def read_legacy_source(path: str, ctx: FsContext, *, cap: int) -> LegacySource:
    """Open a legacy store to import: a JSON file, or a directory of `*.json` files.

    The source and every file in it are opened with O_NOFOLLOW (a symlink is refused) and must
    be owned by us; each file is capped at `cap` bytes, checked with fstat before reading. Modes
    and link counts are not checked: these are not our files. The result is a context manager:
    iterate it (or read its `names` one at a time) while it is open.
    """
    holder, name = open_parent(path, ctx)
    try:
        info = holder.entry(name)
        if info is None:
            raise NotFoundError(f"{path} does not exist")
        if info.kind == "symlink":
            raise UnsafeFileError(f"refused {path}: it is a symbolic link")
        if info.kind == "file":
            return LegacySource(holder, "file", [name], cap)
        if info.kind != "dir":
            raise UnsafeFileError(f"refused {path}: not a file or a directory")
        fd, _ = holder.open_checked(name, DIR_FLAGS, "dir", "open", ours=False)
    except BaseException:
        holder.close()
        raise
    holder.close()
    directory = Dir(ctx, fd, path)
    try:
        names = [entry for entry in directory.list() if entry.endswith(".json") and not entry.startswith(".")]
    except BaseException:
        directory.close()
        raise
    return LegacySource(directory, "dir", names, cap)


def legacy_backups(path: str, ctx: FsContext) -> list[str]:
    """Names of `<name>.bak.<timestamp>` siblings of a legacy source, oldest first."""
    holder, name = open_parent(path, ctx)
    with holder:
        prefix = f"{name}.bak."
        return sorted(entry for entry in holder.list() if entry.startswith(prefix) and entry[len(prefix):].isdigit())
