"""Writing inside a directory not yet published (a session being built under a staging name)."""

from __future__ import annotations

from .base import CREATE_FLAGS, FILE_MODE, check_name, translate, write_all
from .dirs import Dir


def write_private(directory: Dir, name: str, data: bytes) -> None:
    """Create `name` (must not exist) with `data`, fsynced, with no temp file and no directory
    sync: only inside a directory not yet published, which the caller syncs before the
    rename that publishes it (nobody can see a partial file there)."""
    directory.ctx.check_usable()
    check_name(name)
    label = directory.child_label(name)
    try:
        fd = directory.ctx.os.open(name, CREATE_FLAGS, FILE_MODE, dir_fd=directory.fd)
    except OSError as exc:
        raise translate(exc, "create", label) from None
    try:
        try:
            directory.ctx.os.fchmod(fd, FILE_MODE)
        except OSError as exc:
            raise translate(exc, "chmod", label) from None
        write_all(directory.ctx, fd, data, label)
        if data:
            directory.ctx.fsync(fd, label)
    finally:
        directory.ctx.close_quietly(fd)
