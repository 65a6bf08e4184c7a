"""Destroying key material in a `DirCore`: overwrite with zeros and fsync before the name goes.

On a journaling or flash filesystem the old blocks may survive (see SECURITY.md); the unlink or
replacement is what makes the old key unreachable through the store.
"""

from __future__ import annotations

from ..errors import NotFoundError
from .base import RW_FLAGS, DirCore, FsContext, translate


def shred(directory: DirCore, name: str) -> None:
    """Overwrite a file with zeros, fsync, then unlink it. On a journaling or flash
    filesystem the old blocks may survive; the unlink is what makes the name unrecoverable
    through the store. Used for key material."""
    ctx = directory.ctx
    ctx.check_usable()
    fd, st = directory.open_checked(name, RW_FLAGS, "file", "open for shredding")
    try:
        _zero(ctx, fd, st.st_size, directory.child_label(name))
    finally:
        ctx.close_quietly(fd)
    directory.unlink(name)


def replace_wiping(directory: DirCore, name: str, data: bytes) -> None:
    """Replace key material durably, then overwrite the old file's blocks through a handle
    kept open across the rename, so no crash window leaves the name without a key. (On
    journaling or flash storage old blocks may still survive: see SECURITY.md.)"""
    ctx = directory.ctx
    ctx.check_usable()
    try:
        old_fd, st = directory.open_checked(name, RW_FLAGS, "file", "open for replacing")
    except NotFoundError:
        old_fd, st = None, None
    try:
        directory.write_atomic(name, data)
        if old_fd is not None and st is not None:
            _zero(ctx, old_fd, st.st_size, directory.child_label(name))
    finally:
        if old_fd is not None:
            ctx.close_quietly(old_fd)


def _zero(ctx: FsContext, fd: int, size: int, label: str) -> None:
    """Overwrite a file's bytes with zeros in place and fsync them (key material)."""
    try:
        ctx.os.pwrite(fd, b"\x00" * size, 0)
    except OSError as exc:
        raise translate(exc, "overwrite", label) from None
    ctx.fsync(fd, label)
