"""Directory handles anchored on file descriptors: the only place securestore touches files.

Every name is resolved one component at a time relative to an open directory fd, with
O_NOFOLLOW (and O_DIRECTORY for directories), so a symlink planted anywhere inside the store is
refused instead of followed. Every opened object is fstat-checked: type, owner == euid, mode,
and a link count of 1 for files (a planted hard link could alias a file outside the store).

Mode policy: a file or directory whose mode differs from 0600/0700 is refused, never silently
repaired. securestore always sets modes with fchmod right after creating, so a different mode
means someone else changed it; refusing makes that visible instead of hiding it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
from dataclasses import dataclass
from collections.abc import Iterator

from ..errors import (
    AlreadyExistsError,
    DurabilityError,
    LockHeldError,
    NotFoundError,
    SecureStoreError,
    StorageError,
    UnsafeFileError,
    UsageError,
)
from .osapi import REAL_OS, OsApi
from .owner import Liveness, Owner, current_owner, liveness, parse_owner

FILE_MODE = 0o600
DIR_MODE = 0o700
TEMP_PREFIX = ".tmp-"
MAX_NAME_BYTES = 255
_MAX_TREE_DEPTH = 16
_LOCK_FILE_REOPENS = 3  # a lock file replaced again and again is tampering, not contention

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a planted FIFO returns at once instead of waiting for a writer.
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_RW_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def check_name(name: str) -> None:
    """A single path component we are willing to pass to the kernel."""
    if not isinstance(name, str) or name in ("", ".", ".."):
        raise UsageError(f"invalid file name {name!r}")
    if "/" in name or "\x00" in name:
        raise UsageError("invalid file name: contains '/' or NUL")
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError("invalid file name: not encodable as UTF-8") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise UsageError(f"invalid file name: {len(encoded)} bytes, limit {MAX_NAME_BYTES}")


def _errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def _translate(exc: OSError, action: str, label: str) -> SecureStoreError:
    code = exc.errno
    if code == errno.ELOOP:
        return UnsafeFileError(f"refused {label}: it is a symbolic link")
    if code == errno.ENOTDIR:
        return UnsafeFileError(f"refused {label}: not a directory (or a symbolic link)")
    if code == errno.ENXIO:
        return UnsafeFileError(f"refused {label}: not a regular file (a FIFO or device)")
    if code == errno.ENOENT:
        return NotFoundError(f"{label} does not exist")
    if code == errno.EEXIST:
        return AlreadyExistsError(f"{label} already exists")
    return StorageError(f"{action} {label} failed: {_errno_name(exc)}")


class FsContext:
    """Shared state of one store handle: the OS-call table and the fatal-failure latch."""

    def __init__(self, os_api: OsApi = REAL_OS) -> None:
        self.os = os_api
        self.euid = os_api.geteuid()
        self.failed: str | None = None

    def check_usable(self) -> None:
        if self.failed is not None:
            raise DurabilityError(
                f"store handle is unusable after a failed fsync ({self.failed}); reopen the store"
            )

    def fsync(self, fd: int, label: str) -> None:
        # No retry: after a failed fsync the kernel may have dropped the dirty pages, and a
        # second fsync can "succeed" with the data gone (the PostgreSQL fsync lesson).
        try:
            self.os.fsync(fd)
        except OSError as exc:
            self.failed = f"fsync {label}: {_errno_name(exc)}"
            raise DurabilityError(f"fsync of {label} failed: {_errno_name(exc)}") from None

    def close_quietly(self, fd: int) -> None:
        # A close error after the data was fsynced (or never written) changes nothing we rely on.
        try:
            self.os.close(fd)
        except OSError:
            pass

    def random_hex(self, nbytes: int) -> str:
        return self.os.urandom(nbytes).hex()


@dataclass(frozen=True)
class EntryInfo:
    name: str
    kind: str  # "file" | "dir" | "symlink" | "fifo" | "socket" | "device"
    mode: int
    size: int
    mtime_ns: int


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "socket" if stat.S_ISSOCK(mode) else "device"


class Dir:
    """An open directory inside the store. All names are single components relative to it."""

    def __init__(self, ctx: FsContext, fd: int, label: str) -> None:
        self.ctx = ctx
        self.fd = fd
        self.label = label

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.ctx.close_quietly(fd)

    def __enter__(self) -> Dir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def child_label(self, name: str) -> str:
        return f"{self.label}/{name}" if self.label else name

    # -- checks --------------------------------------------------------------------------------
    def _verify(self, st: os.stat_result, label: str, kind: str, mode: int, *, ours: bool = True) -> None:
        """Type and owner always; link count and mode only for files securestore made itself."""
        actual_kind = _kind(st.st_mode)
        if actual_kind != kind:
            raise UnsafeFileError(f"refused {label}: expected a {kind}, found a {actual_kind}")
        if st.st_uid != self.ctx.euid:
            raise UnsafeFileError(f"refused {label}: owned by uid {st.st_uid}, not {self.ctx.euid}")
        if not ours:
            return
        if kind == "file" and st.st_nlink != 1:
            raise UnsafeFileError(f"refused {label}: it has {st.st_nlink} hard links")
        actual_mode = stat.S_IMODE(st.st_mode)
        if actual_mode != mode:
            raise UnsafeFileError(f"refused {label}: mode {actual_mode:04o}, expected {mode:04o}")

    def _open_checked(
        self, name: str, flags: int, kind: str, action: str, *, ours: bool = True
    ) -> tuple[int, os.stat_result]:
        check_name(name)
        label = self.child_label(name)
        try:
            fd = self.ctx.os.open(name, flags, dir_fd=self.fd)
        except OSError as exc:
            raise _translate(exc, action, label) from None
        try:
            st = self.ctx.os.fstat(fd)
            self._verify(st, label, kind, DIR_MODE if kind == "dir" else FILE_MODE, ours=ours)
        except OSError as exc:
            self.ctx.close_quietly(fd)
            raise _translate(exc, "stat", label) from None
        except BaseException:
            self.ctx.close_quietly(fd)
            raise
        return fd, st

    # -- directories ---------------------------------------------------------------------------
    def open_dir(self, name: str) -> Dir:
        fd, _ = self._open_checked(name, _DIR_FLAGS, "dir", "open directory")
        return Dir(self.ctx, fd, self.child_label(name))

    def make_dir(self, name: str) -> Dir:
        """Create a 0700 directory (fails if the name exists) and make the entry durable."""
        self.ctx.check_usable()
        check_name(name)
        label = self.child_label(name)
        try:
            self.ctx.os.mkdir(name, DIR_MODE, dir_fd=self.fd)
        except OSError as exc:
            raise _translate(exc, "create directory", label) from None
        try:
            fd = self.ctx.os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            raise _translate(exc, "open directory", label) from None
        child = Dir(self.ctx, fd, label)
        try:
            # The umask applies to mkdir's mode; set the mode explicitly, never touch the umask.
            self.ctx.os.fchmod(fd, DIR_MODE)
            child._verify(self.ctx.os.fstat(fd), label, "dir", DIR_MODE)
            self.sync()
        except OSError as exc:
            child.close()
            raise _translate(exc, "create directory", label) from None
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
            raise _translate(exc, "stat", self.child_label(name)) from None
        return EntryInfo(name, _kind(st.st_mode), stat.S_IMODE(st.st_mode), st.st_size, st.st_mtime_ns)

    def holds(self, name: str, child: Dir) -> bool:
        """Is the entry `name` here still the directory `child` has open (not deleted or swapped)?"""
        check_name(name)
        try:
            current = self.ctx.os.lstat_at(name, dir_fd=self.fd, follow_symlinks=False)
            opened = self.ctx.os.fstat(child.fd)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise _translate(exc, "stat", self.child_label(name)) from None
        return (current.st_dev, current.st_ino) == (opened.st_dev, opened.st_ino)

    def list(self, *, sort: bool = True) -> list[str]:
        try:
            names = self.ctx.os.listdir(self.fd)
            return sorted(names) if sort else names
        except OSError as exc:
            raise _translate(exc, "list", self.label or ".") from None

    # -- reads ---------------------------------------------------------------------------------
    def read(self, name: str, cap: int, *, ours: bool = True) -> bytes:
        """Read a whole regular file of at most `cap` bytes. `ours=False` is for files
        securestore did not write (legacy data): their mode and link count are not checked."""
        fd, st = self._open_checked(name, _READ_FLAGS, "file", "open", ours=ours)
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
            raise _translate(exc, "read", label) from None
        finally:
            self.ctx.close_quietly(fd)

    def read_optional(self, name: str, cap: int) -> bytes | None:
        try:
            return self.read(name, cap)
        except NotFoundError:
            return None

    def read_tail(self, name: str, nbytes: int) -> tuple[int, bytes]:
        """(file size, last `nbytes` bytes) of a regular file."""
        fd, st = self._open_checked(name, _READ_FLAGS, "file", "open")
        try:
            start = max(0, st.st_size - nbytes)
            data = self.ctx.os.pread(fd, st.st_size - start, start)
            return st.st_size, data
        except OSError as exc:
            raise _translate(exc, "read", self.child_label(name)) from None
        finally:
            self.ctx.close_quietly(fd)

    def size_of(self, name: str) -> tuple[int, int] | None:
        """(inode, size) of a regular file we made, or None if absent."""
        try:
            fd, st = self._open_checked(name, _READ_FLAGS, "file", "open")
        except NotFoundError:
            return None
        self.ctx.close_quietly(fd)
        return st.st_ino, st.st_size

    def lines_backward(self, name: str, end: int, max_line: int, chunk: int = 1 << 16) -> Iterator[tuple[int, bytes]]:
        """(offset, line without its newline) for the complete lines before byte `end`, last
        first. A final fragment without a newline (an append in progress) is not yielded, nor
        anything appended after `end`. A line longer than `max_line` ends the iteration."""
        fd, st = self._open_checked(name, _READ_FLAGS, "file", "open")
        label = self.child_label(name)
        try:
            position = min(end, st.st_size)
            buffer = b""  # bytes [position, line_end): complete lines, possibly cut at the front
            trailing = True  # the bytes after the last newline are a fragment: skip them
            while position > 0:
                start = max(0, position - chunk)
                try:
                    buffer = self.ctx.os.pread(fd, position - start, start) + buffer
                except OSError as exc:
                    raise _translate(exc, "read", label) from None
                position = start
                if trailing:
                    cut = buffer.rfind(b"\n")
                    if cut < 0 and position > 0:
                        continue
                    buffer, trailing = buffer[: cut + 1], False
                while True:  # emit every line whose start is known (preceded by a newline)
                    cut = buffer.rfind(b"\n", 0, len(buffer) - 1)
                    if cut < 0:
                        break
                    yield position + cut + 1, buffer[cut + 1 : -1]
                    buffer = buffer[: cut + 1]
                if len(buffer) > max_line + 1:
                    return
            if buffer:
                yield 0, buffer[:-1] if buffer.endswith(b"\n") else buffer
        finally:
            self.ctx.close_quietly(fd)

    def iter_lines(
        self, name: str, max_line: int, chunk_size: int = 1 << 16, *, start: int = 0
    ) -> Iterator[tuple[int, bytes]]:
        """Stream (offset, line) pairs from byte `start`; the last line may lack its newline.
        Constant memory."""
        fd, _ = self._open_checked(name, _READ_FLAGS, "file", "open")
        label = self.child_label(name)
        try:
            buffer = b""
            offset = start
            position = start
            while True:
                try:
                    chunk = self.ctx.os.pread(fd, chunk_size, position)
                except OSError as exc:
                    raise _translate(exc, "read", label) from None
                if not chunk:
                    break
                position += len(chunk)
                buffer += chunk
                begin = 0  # scan with an index: reslicing per line would copy the chunk each time
                while True:
                    cut = buffer.find(b"\n", begin)
                    if cut < 0:
                        break
                    yield offset, buffer[begin : cut + 1]
                    offset += cut + 1 - begin
                    begin = cut + 1
                buffer = buffer[begin:]
                if len(buffer) > max_line:
                    # Yield the oversized fragment; the parser above reports it.
                    yield offset, buffer
                    offset += len(buffer)
                    buffer = b""
            if buffer:
                yield offset, buffer
        finally:
            self.ctx.close_quietly(fd)

    # -- writes --------------------------------------------------------------------------------
    def _write_all(self, fd: int, data: bytes, label: str) -> None:
        view = memoryview(data)
        while view:
            try:
                written = self.ctx.os.write(fd, view)
            except OSError as exc:
                raise _translate(exc, "write", label) from None
            view = view[written:]

    def _create_temp(self) -> tuple[int, str]:
        for _ in range(8):
            temp = f"{TEMP_PREFIX}{self.ctx.random_hex(12)}"
            try:
                fd = self.ctx.os.open(temp, _CREATE_FLAGS, FILE_MODE, dir_fd=self.fd)
            except FileExistsError:
                continue  # a planted name: never reuse it, pick another
            except OSError as exc:
                raise _translate(exc, "create", self.child_label(temp)) from None
            return fd, temp
        raise StorageError(f"could not create a temporary file in {self.label or '.'}")

    def write_atomic(self, name: str, data: bytes, *, durable: bool = True) -> None:
        """Replace `name` with `data`: temp file, fsync, renameat, fsync directory. With
        durable=False (derived data that can be rebuilt) the fsyncs are skipped: after a crash
        the old or the new content is there, or an empty file, never a mix of the two."""
        self.ctx.check_usable()
        check_name(name)
        label = self.child_label(name)
        existing = self.entry(name)
        if existing is not None and existing.kind not in ("file", "symlink"):
            raise UnsafeFileError(f"refused {label}: expected a file, found a {existing.kind}")
        fd, temp = self._create_temp()
        published = False
        try:
            try:
                self.ctx.os.fchmod(fd, FILE_MODE)
            except OSError as exc:
                raise _translate(exc, "chmod", label) from None
            self._write_all(fd, data, label)
            if durable:
                self.ctx.fsync(fd, label)
            try:
                self.ctx.os.replace(temp, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            except OSError as exc:
                raise _translate(exc, "rename into", label) from None
            published = True
        finally:
            self.ctx.close_quietly(fd)
            if not published:
                self._discard(temp)
        if durable:
            self.sync()

    def replace_wiping(self, name: str, data: bytes) -> None:
        """Replace key material durably, then overwrite the old file's blocks through a handle
        kept open across the rename, so no crash window leaves the name without a key. (On
        journaling or flash storage old blocks may still survive: see SECURITY.md.)"""
        self.ctx.check_usable()
        try:
            old_fd, st = self._open_checked(name, _RW_FLAGS, "file", "open for replacing")
        except NotFoundError:
            old_fd, st = None, None
        try:
            self.write_atomic(name, data)
            if old_fd is not None and st is not None:
                self._zero(old_fd, st.st_size, self.child_label(name))
        finally:
            if old_fd is not None:
                self.ctx.close_quietly(old_fd)

    def write_new(self, name: str, data: bytes) -> None:
        """Create `name` (must not exist) with `data`, durably, through a temp file."""
        self.ctx.check_usable()
        if self.entry(name) is not None:
            raise AlreadyExistsError(f"{self.child_label(name)} already exists")
        self.write_atomic(name, data)

    def ensure_file(self, name: str) -> None:
        """Create an empty 0600 file unless it exists: O_EXCL, so of racing creators exactly one
        creates it and none can replace a file another already wrote to."""
        self.ctx.check_usable()
        check_name(name)
        try:
            fd = self.ctx.os.open(name, _CREATE_FLAGS, FILE_MODE, dir_fd=self.fd)
        except FileExistsError:
            return
        except OSError as exc:
            raise _translate(exc, "create", self.child_label(name)) from None
        try:
            self.ctx.os.fchmod(fd, FILE_MODE)
        except OSError as exc:
            raise _translate(exc, "chmod", self.child_label(name)) from None
        finally:
            self.ctx.close_quietly(fd)

    def append(self, name: str, data: bytes, *, durable: bool) -> None:
        self.ctx.check_usable()
        fd, _ = self._open_checked(name, _APPEND_FLAGS, "file", "open for append")
        label = self.child_label(name)
        try:
            self._write_all(fd, data, label)
            if durable:
                self.ctx.fsync(fd, label)
        finally:
            self.ctx.close_quietly(fd)

    def flush(self, name: str) -> None:
        """fsync a file we appended to without syncing (make everything in it durable)."""
        self.ctx.check_usable()
        fd, _ = self._open_checked(name, _READ_FLAGS, "file", "open")
        try:
            self.ctx.fsync(fd, self.child_label(name))
        finally:
            self.ctx.close_quietly(fd)

    def truncate(self, name: str, length: int) -> None:
        self.ctx.check_usable()
        fd, _ = self._open_checked(name, _RW_FLAGS, "file", "open for truncate")
        label = self.child_label(name)
        try:
            try:
                self.ctx.os.ftruncate(fd, length)
            except OSError as exc:
                raise _translate(exc, "truncate", label) from None
            self.ctx.fsync(fd, label)
        finally:
            self.ctx.close_quietly(fd)

    def unlink(self, name: str, *, durable: bool = True) -> None:
        """Remove a file entry (a symlink is removed, never followed) and sync the directory
        (durable=False: a marker whose loss in a crash is harmless)."""
        self.ctx.check_usable()
        check_name(name)
        try:
            self.ctx.os.unlink(name, dir_fd=self.fd)
        except OSError as exc:
            raise _translate(exc, "remove", self.child_label(name)) from None
        if durable:
            self.sync()

    def shred(self, name: str) -> None:
        """Overwrite a file with zeros, fsync, then unlink it. On a journaling or flash
        filesystem the old blocks may survive; the unlink is what makes the name unrecoverable
        through the store. Used for key material."""
        self.ctx.check_usable()
        fd, st = self._open_checked(name, _RW_FLAGS, "file", "open for shredding")
        try:
            self._zero(fd, st.st_size, self.child_label(name))
        finally:
            self.ctx.close_quietly(fd)
        self.unlink(name)

    def _zero(self, fd: int, size: int, label: str) -> None:
        """Overwrite a file's bytes with zeros in place and fsync them (key material)."""
        try:
            self.ctx.os.pwrite(fd, b"\x00" * size, 0)
        except OSError as exc:
            raise _translate(exc, "overwrite", label) from None
        self.ctx.fsync(fd, label)

    def _discard(self, name: str) -> None:
        try:
            self.ctx.os.unlink(name, dir_fd=self.fd)
        except OSError:
            pass

    def rename(self, src: str, dst: str, target: Dir | None = None) -> None:
        """rename src (here) to dst (here, or in `target`), failing if dst exists; sync both."""
        self.ctx.check_usable()
        check_name(src)
        check_name(dst)
        into = target or self
        if into.entry(dst) is not None:
            raise AlreadyExistsError(f"{into.child_label(dst)} already exists")
        try:
            self.ctx.os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=into.fd)
        except OSError as exc:
            raise _translate(exc, "rename", self.child_label(src)) from None
        into.sync()
        if into is not self:
            self.sync()

    def remove_tree(self, name: str) -> None:
        """Delete `name` and everything under it without ever following a symlink."""
        self.ctx.check_usable()
        self._remove_entry(name, 0)
        self.sync()

    def _remove_entry(self, name: str, depth: int) -> None:
        info = self.entry(name)
        if info is None:
            return
        label = self.child_label(name)
        if info.kind != "dir":
            try:
                self.ctx.os.unlink(name, dir_fd=self.fd)
            except OSError as exc:
                raise _translate(exc, "remove", label) from None
            return
        if depth >= _MAX_TREE_DEPTH:
            raise UnsafeFileError(f"refused to delete {label}: nested deeper than the store layout")
        try:
            fd = self.ctx.os.open(name, _DIR_FLAGS, dir_fd=self.fd)
        except OSError as exc:
            raise _translate(exc, "open directory", label) from None
        child = Dir(self.ctx, fd, label)
        try:
            # Same inode as the lstat we decided on? If not, it was swapped: stop (rmtree's check).
            opened = self.ctx.os.fstat(fd)
            before = self.ctx.os.lstat_at(name, dir_fd=self.fd, follow_symlinks=False)
            if (opened.st_dev, opened.st_ino) != (before.st_dev, before.st_ino):
                raise UnsafeFileError(f"refused to delete {label}: it changed while being deleted")
            for entry in child.list():
                child._remove_entry(entry, depth + 1)
        except OSError as exc:
            raise _translate(exc, "delete", label) from None
        finally:
            child.close()
        try:
            self.ctx.os.rmdir(name, dir_fd=self.fd)
        except OSError as exc:
            raise _translate(exc, "remove directory", label) from None

    # -- locking ---------------------------------------------------------------------------------
    def lock(self, name: str, timeout: float, now_ms: int) -> FileLock:
        """Exclusive flock on `name` (created 0600 if missing), with an owner record inside.

        The lock file is never unlinked: contenders that opened the old inode would lock a
        different file. A free flock whose file still names a provably dead owner is a stale
        lock (its holder crashed): taken, and reported in `FileLock.recovered_from`. A record
        naming a live process is never broken, however old; the caller waits, then gets
        LockHeldError naming the holder. A holder in a pid namespace we cannot see is proved
        gone by the flock alone, so the flock only counts once `name` is checked to still
        refer to the inode it is held on: a file replaced under us is reopened and locked anew.
        """
        label = self.child_label(name)
        deadline = self.ctx.os.monotonic() + timeout
        for _ in range(_LOCK_FILE_REOPENS + 1):
            self.ensure_file(name)
            fd, _ = self._open_checked(name, _RW_FLAGS, "file", "open lock")
            try:
                taken = self._wait_and_take(fd, name, label, deadline, now_ms)
            except OSError as exc:
                self.ctx.close_quietly(fd)
                raise _translate(exc, "lock", label) from None
            except BaseException:
                self.ctx.close_quietly(fd)
                raise
            if taken is not None:
                return taken
            self.ctx.close_quietly(fd)  # releases the flock on the file that is no longer `name`
        raise UnsafeFileError(f"refused {label}: it was replaced {_LOCK_FILE_REOPENS + 1} times while being "
                              "locked; securestore never replaces a lock file, stop whatever does and retry")

    def _wait_and_take(self, fd: int, name: str, label: str, deadline: float, now_ms: int) -> FileLock | None:
        """Wait for the flock on `fd` and take it over; None if `name` now refers to another file."""
        delay = 0.005
        holder: Owner | None = None
        while True:
            try:
                self.ctx.os.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if not self._still_named(name, fd):
                    return None
                previous = parse_owner(self.ctx.os.pread(fd, 4096, 0))
                mine = current_owner(self.ctx.os, now_ms)
                if previous is not None and previous.same_process(mine):
                    # We won the flock on a new descriptor, so no handle of ours holds it:
                    # the record is left over from one of our handles that failed to clear it.
                    previous = None
                # DEAD or UNSEEN: we hold the flock on the file `name` refers to, so its holder does not.
                if previous is None or liveness(self.ctx.os, previous) is not Liveness.ALIVE:
                    self.ctx.os.ftruncate(fd, 0)
                    self.ctx.os.pwrite(fd, mine.to_bytes(), 0)
                    return FileLock(self.ctx, fd, mine, previous)
                holder = previous  # free flock, live owner on record: prove nothing, break nothing
                self.ctx.os.flock(fd, fcntl.LOCK_UN)
            except BlockingIOError:
                holder = parse_owner(self.ctx.os.pread(fd, 4096, 0)) or holder
            if self.ctx.os.monotonic() >= deadline:
                who = holder.describe() if holder else "another process"
                raise LockHeldError(f"{label} is held by {who}")
            self.ctx.os.sleep(delay)
            delay = min(delay * 2, 0.1)

    def _still_named(self, name: str, fd: int) -> bool:
        """Does `name` still refer to the inode `fd` is open on? The open descriptor pins that
        inode, so a replacement cannot reuse its number while we compare."""
        held = self.ctx.os.fstat(fd)
        try:
            named = self.ctx.os.lstat_at(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)

    def lock_plain(self, name: str, *, exclusive: bool, timeout: float) -> FileLock:
        """A short-held leaf lock with no owner record: shared for appenders, exclusive for a
        rewrite. Never held while taking another lock."""
        label = self.child_label(name)
        self.ensure_file(name)
        fd, _ = self._open_checked(name, _RW_FLAGS, "file", "open lock")
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        deadline = self.ctx.os.monotonic() + timeout
        delay = 0.002
        while True:
            try:
                self.ctx.os.flock(fd, mode | fcntl.LOCK_NB)
                return FileLock(self.ctx, fd, None, None)
            except BlockingIOError:
                if self.ctx.os.monotonic() >= deadline:
                    self.ctx.close_quietly(fd)
                    raise LockHeldError(f"{label} is busy") from None
                self.ctx.os.sleep(delay)
                delay = min(delay * 2, 0.05)
            except OSError as exc:
                self.ctx.close_quietly(fd)
                raise _translate(exc, "lock", label) from None

    def lock_owner(self, name: str) -> Owner | None:
        """The owner record of a lock file, read without locking (for display)."""
        data = self.read_optional(name, 4096)
        return None if data is None else parse_owner(data)

    # -- inspection ----------------------------------------------------------------------------
    def walk(self, depth: int = 0) -> Iterator[tuple[str, EntryInfo]]:
        """(relative path, info) for every entry below, directories before their contents."""
        for name in self.list():
            info = self.entry(name)
            if info is None:
                continue
            yield name, info
            if info.kind == "dir" and depth < _MAX_TREE_DEPTH:
                with self.open_dir(name) as child:
                    for sub, sub_info in child.walk(depth + 1):
                        yield f"{name}/{sub}", sub_info


class FileLock:
    def __init__(self, ctx: FsContext, fd: int, owner: Owner | None, recovered_from: Owner | None) -> None:
        self.ctx = ctx
        self.fd = fd
        self.owner = owner
        self.recovered_from = recovered_from  # a dead holder whose lock this one took over
        self.pid = ctx.os.getpid()

    def release(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            if self.ctx.os.getpid() != self.pid:
                # A forked child shares the holder's open file description: LOCK_UN or truncating
                # here would drop the lock under the still-running parent. Close our copy only.
                self.ctx.close_quietly(fd)
                return
            if self.owner is not None:
                try:
                    self.ctx.os.ftruncate(fd, 0)  # a clean release leaves no owner record behind
                except OSError:
                    pass
            try:
                self.ctx.os.flock(fd, fcntl.LOCK_UN)
            except OSError:
                pass
            self.ctx.close_quietly(fd)  # closing releases the flock in any case

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
