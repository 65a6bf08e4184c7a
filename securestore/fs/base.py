"""What every module of the fence shares: modes, open flags, the name and stat checks, the
translation of OSError into securestore errors, and FsContext (the OS-call table of one store
handle with its fatal-failure latch). This is the fence's internal API: dirs, lines, locks,
paths and legacy_files import these public names, never each other's privates.

Mode policy: a file or directory whose mode differs from 0600/0700 is refused, never silently
repaired. securestore always sets modes with fchmod right after creating, so a different mode
means someone else changed it; refusing makes that visible instead of hiding it.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from typing import Protocol, Self

from ..errors import (
    AlreadyExistsError,
    DurabilityError,
    NotFoundError,
    SecureStoreError,
    StorageError,
    UnsafeFileError,
    UsageError,
)
from .osapi import REAL_OS, OsApi

FILE_MODE = 0o600
DIR_MODE = 0o700
TEMP_PREFIX = ".tmp-"
MAX_NAME_BYTES = 255
MAX_TREE_DEPTH = 16

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a planted FIFO returns at once instead of waiting for a writer.
READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
RW_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


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


def errno_name(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def translate(exc: OSError, action: str, label: str) -> SecureStoreError:
    """The securestore error for an OSError raised while doing `action` on `label`."""
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
    return StorageError(f"{action} {label} failed: {errno_name(exc)}")


class FsContext:
    """Shared state of one store handle: the OS-call table and the fatal-failure latch."""

    def __init__(self, os_api: OsApi = REAL_OS) -> None:
        self.os = os_api
        self.euid = os_api.geteuid()
        self.failed: str | None = None

    def check_usable(self) -> None:
        if self.failed is not None:
            raise DurabilityError(
                f"store handle is unusable after a write whose durability is unknown ({self.failed}); reopen the "
                "store (the next open settles it)"
            )

    def fsync(self, fd: int, label: str) -> None:
        # No retry: after a failed fsync the kernel may have dropped the dirty pages, and a
        # second fsync can "succeed" with the data gone (the PostgreSQL fsync lesson).
        try:
            self.os.fsync(fd)
        except OSError as exc:
            self.failed = f"fsync {label}: {errno_name(exc)}"
            raise DurabilityError(f"fsync of {label} failed: {errno_name(exc)}") from None

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


def kind_of(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "socket" if stat.S_ISSOCK(mode) else "device"


def verify_stat(ctx: FsContext, st: os.stat_result, label: str, kind: str, mode: int, *, ours: bool = True) -> None:
    """Type and owner always; link count and mode only for files securestore made itself."""
    actual_kind = kind_of(st.st_mode)
    if actual_kind != kind:
        raise UnsafeFileError(f"refused {label}: expected a {kind}, found a {actual_kind}")
    if st.st_uid != ctx.euid:
        raise UnsafeFileError(f"refused {label}: owned by uid {st.st_uid}, not {ctx.euid}")
    if not ours:
        return
    if kind == "file" and st.st_nlink != 1:
        raise UnsafeFileError(f"refused {label}: it has {st.st_nlink} hard links")
    actual_mode = stat.S_IMODE(st.st_mode)
    if actual_mode != mode:
        raise UnsafeFileError(f"refused {label}: mode {actual_mode:04o}, expected {mode:04o}")


def write_all(ctx: FsContext, fd: int, data: bytes, label: str) -> None:
    view = memoryview(data)
    while view:
        try:
            written = ctx.os.write(fd, view)
        except OSError as exc:
            raise translate(exc, "write", label) from None
        view = view[written:]


def fill_new_file(ctx: FsContext, fd: int, data: bytes, label: str, *, durable: bool) -> None:
    """A file just created with O_EXCL: its mode set explicitly (never the umask's), its
    content, and (durable) an fsync of it."""
    try:
        ctx.os.fchmod(fd, FILE_MODE)
    except OSError as exc:
        raise translate(exc, "chmod", label) from None
    write_all(ctx, fd, data, label)
    if durable:
        ctx.fsync(fd, label)


def read_upto(ctx: FsContext, fd: int, most: int) -> bytes:
    """At most `most` + 1 bytes (one more than expected shows a file larger than it should be),
    in one read call for a regular file, so a large file is never held twice."""
    chunks: list[bytes] = []
    total = 0
    while total <= most:
        chunk = ctx.os.read(fd, most + 1 - total)
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class DirCore(Protocol):
    """What the line, lock, wipe and tree functions use of a `Dir` (so `Dir` can offer them as
    methods without an import circle)."""
    ctx: FsContext
    fd: int
    label: str

    def __enter__(self) -> Self: ...
    def __exit__(self, *exc: object) -> None: ...
    def child_label(self, name: str) -> str: ...
    def open_checked(self, name: str, flags: int, kind: str, action: str, *,
                     ours: bool = True) -> tuple[int, os.stat_result]: ...
    def open_dir(self, name: str) -> Self: ...
    def entry(self, name: str) -> EntryInfo | None: ...
    def list(self, *, sort: bool = True) -> list[str]: ...
    def read_optional(self, name: str, cap: int) -> bytes | None: ...
    def write_atomic(self, name: str, data: bytes, *, durable: bool = True) -> None: ...
    def ensure_file(self, name: str) -> None: ...
    def unlink(self, name: str, *, durable: bool = True) -> None: ...
