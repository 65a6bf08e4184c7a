"""Directory handles anchored on file descriptors: the only place securestore touches files.

Every name is resolved one component at a time relative to an open directory fd, with
O_NOFOLLOW (and O_DIRECTORY for directories), so a symlink planted anywhere inside the store is
refused instead of followed. Every opened object is fstat-checked: type, owner == euid, mode,
and a link count of 1 for files (a planted hard link could alias a file outside the store).
Line reads (`lines`), locks (`locks`), key wiping (`wipe`) and the tree functions (`trees`)
are built on Dir's public methods only (`open_checked` first); modes and flags: `base`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable

from ..errors import AlreadyExistsError, NotFoundError, StorageError, UnsafeFileError
from .appending import Appending
from .dir_ops import DirOps
from .base import (
    APPEND_FLAGS,
    CREATE_FLAGS,
    DIR_FLAGS,
    DIR_MODE,
    FILE_MODE,
    MAX_TREE_DEPTH,
    READ_FLAGS,
    RW_FLAGS,
    TEMP_PREFIX,
    EntryInfo,
    FsContext,
    check_name,
    fill_new_file,
    kind_of,
    translate,
    verify_stat,
    write_all,
)


class Dir(DirOps):
    """An open directory inside the store. All names are single components relative to it."""

    def __init__(self, ctx: FsContext, fd: int, label: str) -> None:
        self.ctx = ctx
        self.fd = fd
        self.label = label
        self._appending = Appending(ctx)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        self._appending.stop()
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.ctx.close_quietly(fd)

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def child_label(self, name: str) -> str:
        return f"{self.label}/{name}" if self.label else name

    def open_checked(
        self, name: str, flags: int, kind: str, action: str, *, ours: bool = True
    ) -> tuple[int, os.stat_result]:
        """Open the entry `name` with `flags` and fstat-check it (see `base.verify_stat`):
        (fd, stat). The caller closes the fd."""
        check_name(name)
        label = self.child_label(name)
        try:
            fd = self.ctx.os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            raise translate(exc, action, label) from None
        try:
            st = self.ctx.os.fstat(fd)
            verify_stat(self.ctx, st, label, kind, DIR_MODE if kind == "dir" else FILE_MODE, ours=ours)
        except OSError as exc:
            self.ctx.close_quietly(fd)
            raise translate(exc, "stat", label) from None
        except BaseException:
            self.ctx.close_quietly(fd)
            raise
        return fd, st

    # -- directories ---------------------------------------------------------------------------
    def open_dir(self, name: str) -> Dir:
        fd, _ = self.open_checked(name, DIR_FLAGS, "dir", "open directory")
        return Dir(self.ctx, fd, self.child_label(name))

    def make_dir(self, name: str, *, durable: bool = True) -> Dir:
        """Create a 0700 directory (fails if the name exists) and make the entry durable
        (durable=False: inside a directory not yet published, whose own sync covers it)."""
        self.ctx.check_usable()
        check_name(name)
        label = self.child_label(name)
        try:
            self.ctx.os.mkdir(name, DIR_MODE, dir_fd=self.fd)
        except OSError as exc:
            raise translate(exc, "create directory", label) from None
        try:
            fd = self.ctx.os.open(name, DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            raise translate(exc, "open directory", label) from None
        child = Dir(self.ctx, fd, label)
        try:
            # The umask applies to mkdir's mode; set the mode explicitly, never touch the umask.
            self.ctx.os.fchmod(fd, DIR_MODE)
            verify_stat(self.ctx, self.ctx.os.fstat(fd), label, "dir", DIR_MODE)
            if durable:
                self.sync()
        except OSError as exc:
            child.close()
            raise translate(exc, "create directory", label) from None
        except BaseException:
            child.close()
            raise
        return child

    def open_or_make_dir(self, name: str) -> Dir:
        try:
            return self.open_dir(name)
        except NotFoundError:
            pass
        try:
            return self.make_dir(name)
        except AlreadyExistsError:  # another process made it first
            return self.open_dir(name)

    def disk_space(self) -> tuple[int, int]:
        """(bytes free to us, bytes in all) on this directory's filesystem."""
        try:
            found = self.ctx.os.fstatvfs(self.fd)
        except OSError as exc:
            raise translate(exc, "stat the filesystem of", self.label or ".") from None
        return found.f_bavail * found.f_frsize, found.f_blocks * found.f_frsize

    def sync(self) -> None:
        self.ctx.check_usable()
        self.ctx.fsync(self.fd, self.label or ".")

    def entry(self, name: str) -> EntryInfo | None:
        """lstat of one entry (never follows a symlink); None if absent."""
        check_name(name)
        try:
            st = self.ctx.os.lstat_at(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise translate(exc, "stat", self.child_label(name)) from None
        return EntryInfo(name, kind_of(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns)

    def holds(self, name: str, child: Dir) -> bool:
        """Is the entry `name` here still the directory `child` has open (not deleted or swapped)?"""
        check_name(name)
        try:
            current = self.ctx.os.lstat_at(name, dir_fd=self.fd, follow_symlinks=False)
            opened = self.ctx.os.fstat(child.fd)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise translate(exc, "stat", self.child_label(name)) from None
        return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)

    def list(self, *, sort: bool = True) -> list[str]:
        try:
            names = self.ctx.os.listdir(self.fd)
            return sorted(names) if sort else names
        except OSError as exc:
            raise translate(exc, "list", self.label or ".") from None

    # -- reads ---------------------------------------------------------------------------------
    def read(self, name: str, cap: int, *, ours: bool = True) -> bytes:
        """Read a whole regular file of at most `cap` bytes. `ours=False` is for files
        securestore did not write (legacy data): their mode and link count are not checked."""
        fd, st = self.open_checked(name, READ_FLAGS, "file", "open", ours=ours)
        label = self.child_label(name)
        try:
            if st.st_size > cap:
                raise StorageError(f"refused {label}: {st.st_size} bytes exceeds the {cap}-byte cap")
            chunks: list[bytes] = []
            remaining = st.st_size + 1  # one extra byte detects a file growing under us
            while remaining > 0:
                chunk = self.ctx.os.read(fd, min(remaining, 1 << 20))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
            data = b"".join(chunks)
            if len(data) > cap:
                raise StorageError(f"refused {label}: grew past the {cap}-byte cap while reading")
            return data
        except OSError as exc:
            raise translate(exc, "read", label) from None
        finally:
            self.ctx.close_quietly(fd)

    def read_optional(self, name: str, cap: int) -> bytes | None:
        try:
            return self.read(name, cap)
        except NotFoundError:
            return None

    # -- writes --------------------------------------------------------------------------------
    def write_atomic(self, name: str, data: bytes, *, durable: bool = True) -> None:
        """Replace `name` with `data`: temp file, fsync, renameat, fsync directory. With
        durable=False (derived data that can be rebuilt) the fsyncs are skipped: after a crash
        the old or the new content is there, or an empty file, never a mix of the two."""
        self.ctx.check_usable()
        check_name(name)
        self._appending.stop(name)
        label = self.child_label(name)
        existing = self.entry(name)
        if existing is not None and existing.kind not in ("file", "symlink"):
            raise UnsafeFileError(f"refused {label}: expected a file, found a {existing.kind}")
        fd, temp = _create_temp(self)
        published = False
        try:
            fill_new_file(self.ctx, fd, data, label, durable=durable)
            try:
                self.ctx.os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            except OSError as exc:
                raise translate(exc, "rename into", label) from None
            published = True
        finally:
            self.ctx.close_quietly(fd)
            if not published:
                _discard(self, temp)
        if durable:
            self.sync()

    def write_new(self, name: str, data: bytes) -> None:
        """Create `name` (must not exist) with `data`, durably, through a temp file."""
        self.ctx.check_usable()
        if self.entry(name) is not None:
            raise AlreadyExistsError(f"{self.child_label(name)} already exists")
        self.write_atomic(name, data)

    def append(self, name: str, data: bytes, *, durable: bool, create: bool = False) -> None:
        self.ctx.check_usable()
        fd = self._appending.fds.get(name)
        if fd is None:
            if create:
                self.ensure_file(name)
            fd, _ = self.open_checked(name, APPEND_FLAGS, "file", "open for append")
            self._appending.keep(name, fd)
        label = self.child_label(name)
        try:
            write_all(self.ctx, fd, data, label)
            if durable:
                self.ctx.fsync(fd, label)
        except BaseException:
            self._appending.stop(name)  # the next append opens and checks the file again
            raise

    def follow_commit(self, directory: str, lock: str, *, replace: tuple[str, str, bytes], append: tuple[str, bytes],
                      again: Callable[[], None], failed: Callable[[str], None]) -> None:
        return None  # nothing to follow: every write on disk is done when it returns

    def appended_stamp(self, name: str) -> tuple[int, int] | None:
        """(inode, size) of a file this handle keeps open for appending (None if it does not)."""
        fd = self._appending.fds.get(name)
        if fd is None:
            return None
        try:
            st = self.ctx.os.fstat(fd)
        except OSError:
            return None
        return st.st_ino, st.st_size

    def flush(self, name: str) -> None:
        """fsync a file we appended to without syncing (make everything in it durable)."""
        self.ctx.check_usable()
        fd, _ = self.open_checked(name, READ_FLAGS, "file", "open")
        try:
            self.ctx.fsync(fd, self.child_label(name))
        finally:
            self.ctx.close_quietly(fd)

    def truncate(self, name: str, length: int) -> None:
        self.ctx.check_usable()
        fd, _ = self.open_checked(name, RW_FLAGS, "file", "open for truncate")
        label = self.child_label(name)
        try:
            try:
                self.ctx.os.ftruncate(fd, length)
            except OSError as exc:
                raise translate(exc, "truncate", label) from None
            self.ctx.fsync(fd, label)
        finally:
            self.ctx.close_quietly(fd)

    def unlink(self, name: str, *, durable: bool = True) -> None:
        """Remove a file entry (a symlink is removed, never followed) and sync the directory
        (durable=False: a marker whose loss in a crash is harmless)."""
        self.ctx.check_usable()
        check_name(name)
        self._appending.stop(name)
        try:
            self.ctx.os.unlink(name, dir_fd=self.fd)
        except OSError as exc:
            raise translate(exc, "remove", self.child_label(name)) from None
        if durable:
            self.sync()

    def rename(self, src: str, dst: str, target: Dir | None = None) -> None:
        """rename src (here) to dst (here, or in `target`), failing if dst exists; sync both."""
        self.ctx.check_usable()
        check_name(src)
        check_name(dst)
        self._appending.stop(src)
        into = target or self
        into._appending.stop(dst)
        if into.entry(dst) is not None:
            raise AlreadyExistsError(f"{into.child_label(dst)} already exists")
        try:
            self.ctx.os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=into.fd)
        except OSError as exc:
            raise translate(exc, "rename", self.child_label(src)) from None
        into.sync()
        if into is not self:
            self.sync()

    def remove_tree(self, name: str) -> None:
        """Delete `name` and everything under it without ever following a symlink."""
        self.ctx.check_usable()
        remove_entry(self, name)
        self.sync()


def _create_temp(directory: Dir) -> tuple[int, str]:
    ctx = directory.ctx
    for _ in range(8):
        temp = f"{TEMP_PREFIX}{ctx.random_hex(12)}"
        try:
            fd = ctx.os.open(temp, CREATE_FLAGS, FILE_MODE, dir_fd=directory.fd)
        except FileExistsError:
            continue  # a planted name: never reuse it, pick another
        except OSError as exc:
            raise translate(exc, "create", directory.child_label(temp)) from None
        return fd, temp
    raise StorageError(f"could not create a temporary file in {directory.label or '.'}")


def _discard(directory: Dir, name: str) -> None:
    try:
        directory.ctx.os.unlink(name, dir_fd=directory.fd)
    except OSError:
        pass


def remove_entry(parent: Dir, name: str, depth: int = 0) -> None:
    """Delete `name` in `parent` and everything under it, never following a symlink, without
    syncing `parent` (`Dir.remove_tree` adds the latch check and the sync)."""
    info = parent.entry(name)
    if info is None:
        return
    ctx = parent.ctx
    label = parent.child_label(name)
    if info.kind != "dir":
        try:
            ctx.os.unlink(name, dir_fd=parent.fd)
        except OSError as exc:
            raise translate(exc, "remove", label) from None
        return
    if depth >= MAX_TREE_DEPTH:
        raise UnsafeFileError(f"refused to delete {label}: nested deeper than the store layout")
    try:
        fd = ctx.os.open(name, DIR_FLAGS, dir_fd=parent.fd)
    except OSError as exc:
        raise translate(exc, "open directory", label) from None
    child = Dir(ctx, fd, label)
    try:
        # Same inode as the lstat we decided on? If not, it was swapped: stop (rmtree's check).
        opened = ctx.os.fstat(fd)
        before = ctx.os.lstat_at(name, dir_fd=parent.fd, follow_symlinks=False)
        if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
            raise UnsafeFileError(f"refused to delete {label}: it changed while being deleted")
        for entry in child.list():
            remove_entry(child, entry, depth + 1)
    except OSError as exc:
        raise translate(exc, "delete", label) from None
    finally:
        child.close()
    try:
        ctx.os.rmdir(name, dir_fd=parent.fd)
    except OSError as exc:
        raise translate(exc, "remove directory", label) from None
