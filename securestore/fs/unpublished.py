"""Creating files in place: inside a directory not yet published (a session being built under a
staging name), and an empty file made once whoever races to make it."""

from __future__ import annotations

from .base import CREATE_FLAGS, FILE_MODE, DirCore, check_name, fill_new_file, translate


def write_private(directory: DirCore, name: str, data: bytes) -> None:
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
        fill_new_file(directory.ctx, fd, data, label, durable=bool(data))
    finally:
        directory.ctx.close_quietly(fd)


def ensure_file(directory: DirCore, name: str) -> None:
    """Create an empty 0600 file unless it exists: O_EXCL, so of racing creators exactly one
    creates it and none can replace a file another already wrote to."""
    directory.ctx.check_usable()
    check_name(name)
    label = directory.child_label(name)
    try:
        fd = directory.ctx.os.open(name, CREATE_FLAGS, FILE_MODE, dir_fd=directory.fd)
    except FileExistsError:
        return
    except OSError as exc:
        raise translate(exc, "create", label) from None
    try:
        fill_new_file(directory.ctx, fd, b"", label, durable=False)
    finally:
        directory.ctx.close_quietly(fd)
