"""Paths outside the store's fd-anchored tree: opening the store root, key files that must live
outside it, export (output) files, temporary directories, and the process environment that
names some of them."""

from __future__ import annotations

import os
import stat

from ..errors import (
    AlreadyExistsError,
    KeyMaterialError,
    NotFoundError,
    StorageError,
    UnsafeFileError,
    UsageError,
)
from .base import DIR_FLAGS, DIR_MODE, READ_FLAGS, FsContext, read_upto, translate
from .dirs import Dir, remove_entry


def _split(path: str) -> tuple[str, str]:
    absolute = os.path.abspath(path)
    parent, name = os.path.split(absolute)
    if not name:
        raise UsageError("the filesystem root cannot be a store root")
    return parent, name


def open_parent(path: str, ctx: FsContext) -> tuple[Dir, str]:
    """The (normally resolved) parent directory of `path` as a handle, and the last component."""
    parent, name = _split(path)
    try:
        fd = ctx.os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise translate(exc, "open", parent) from None
    return Dir(ctx, fd, parent), name


def open_root(path: str, ctx: FsContext, *, create: bool, what: str = "store root") -> Dir:
    """Open (or create) the store root as a directory handle.

    The root itself is opened with O_NOFOLLOW and must be a directory owned by us with mode 0700.
    Its parents are resolved normally (a symlinked /home or /var is common and legitimate);
    documented in SECURITY.md. `create` may tighten the mode of an empty directory we own.
    `what` names it in errors (the same rules hold for a per-user key directory).
    """
    if create:
        _make_parents(_split(path)[0], ctx)
    holder, name = open_parent(path, ctx)
    parent_fd = holder.fd
    with holder:
        created = False
        if create:
            try:
                ctx.os.mkdir(name, DIR_MODE, dir_fd=parent_fd)
                created = True
            except FileExistsError:
                pass
            except OSError as exc:
                raise translate(exc, "create", path) from None
        try:
            fd = ctx.os.open(name, DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            error = translate(exc, f"open {what}", path)
            if isinstance(error, NotFoundError):
                raise NotFoundError(f"no store at {path} (run `securestore init`)" if what == "store root"
                                    else f"no {what} at {path}") from None
            raise error from None
        root = Dir(ctx, fd, "")
        try:
            st = ctx.os.fstat(fd)
            if st.st_uid != ctx.euid:
                raise UnsafeFileError(f"refused {what} {path}: owned by uid {st.st_uid}, not {ctx.euid}")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o022:
                raise UnsafeFileError(f"refused {what} {path}: mode {mode:04o} is group/world-writable")
            if mode != DIR_MODE:
                if not (create and (created or not root.list())):
                    raise UnsafeFileError(f"refused {what} {path}: mode {mode:04o}, expected 0700")
                ctx.os.fchmod(fd, DIR_MODE)
            if created:
                holder.sync()
        except OSError as exc:
            root.close()
            raise translate(exc, f"open {what}", path) from None
        except BaseException:
            root.close()
            raise
        return root


def _make_parents(parent: str, ctx: FsContext) -> None:
    """mkdir -p for the root's parents, 0700 (the umask may only narrow that)."""
    missing: list[str] = []
    current = parent
    while True:
        try:
            ctx.os.lstat_at(current)
            break
        except FileNotFoundError:
            missing.append(current)
            current = os.path.dirname(current)
        except OSError as exc:
            raise translate(exc, "stat", current) from None
    for directory in reversed(missing):
        try:
            ctx.os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise translate(exc, "create", directory) from None


def unsafe_ancestor(path: str, ctx: FsContext) -> str | None:
    """Why a directory that others could swap lies on `path`'s way from `/` (ssh StrictModes):
    every existing ancestor of the resolved path must be ours or root's, and writable by group or
    others only if sticky (like /tmp, where nobody renames another's entries). None if safe."""
    current = ctx.os.realpath(path)
    while True:
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
        try:
            st = ctx.os.lstat_at(current)
        except FileNotFoundError:
            continue
        except OSError as exc:
            return f"{current} cannot be checked ({exc.strerror})"
        if st.st_uid not in (ctx.euid, 0):
            return f"{current} belongs to uid {st.st_uid}"
        if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
            return f"{current} is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"


def inside_root(path: str, root_path: str, ctx: FsContext) -> bool:
    """Whether `path` (resolved) is the store root or lies under it."""
    real_root = ctx.os.realpath(root_path)
    return os.path.commonpath([ctx.os.realpath(path), real_root]) == real_root


def _outside_root(key_path: str, root_path: str | None, ctx: FsContext) -> None:
    if root_path is None:
        return
    if inside_root(key_path, root_path, ctx):
        raise KeyMaterialError("refused key file: it must live outside the store root")


def read_key_file(path: str, ctx: FsContext, *, root_path: str | None, cap: int = 4096, secret: bool = True) -> bytes:
    """Read a private key file: not under the store root, not a symlink, ours, owner-only mode,
    and exactly one name (st_nlink == 1, like every store file).
    With secret=False (public keys, anchors, proofs) any mode and link count are accepted; it
    must still be ours: a public value loses nothing through a second name, and a second name of
    an inode we own gives nobody else a way to change it."""
    _outside_root(path, root_path, ctx)
    try:
        holder, name = open_parent(path, ctx)
        with holder:
            fd = ctx.os.open(name, READ_FLAGS, dir_fd=holder.fd)
            try:
                st = ctx.os.fstat(fd)
                _check_key_file(path, st, ctx, cap=cap, secret=secret)
                return _read_all(ctx, fd, cap)
            finally:
                ctx.close_quietly(fd)
    except OSError as exc:
        raise KeyMaterialError(f"cannot read key file: {translate(exc, 'read', path)}") from None
    except (NotFoundError, UnsafeFileError, StorageError) as exc:
        raise KeyMaterialError(f"cannot read key file: {exc}") from None


def _check_key_file(path: str, st: os.stat_result, ctx: FsContext, *, cap: int, secret: bool) -> None:
    mode = stat.S_IMODE(st.st_mode)
    if not stat.S_ISREG(st.st_mode):
        raise KeyMaterialError(f"refused key file {path}: not a regular file")
    if st.st_uid != ctx.euid:
        raise KeyMaterialError(f"refused key file {path}: owned by uid {st.st_uid}")
    # A second name (say, inside the store root, where the realpath check cannot see it) would
    # copy the key wherever that name is backed up, exported or read: secret key files have one.
    if secret and st.st_nlink != 1:
        raise KeyMaterialError(f"refused key file {path}: it has {st.st_nlink} hard links; a secret key file must "
                               "have exactly one name (st_nlink == 1): remove its other links")
    if secret and mode & 0o077:
        raise KeyMaterialError(f"refused key file {path}: mode {mode:04o} lets others read it")
    if st.st_size > cap:
        raise KeyMaterialError(f"refused key file {path}: larger than {cap} bytes")


def _read_all(ctx: FsContext, fd: int, cap: int) -> bytes:
    data = read_upto(ctx, fd, cap)
    if len(data) > cap:
        raise KeyMaterialError(f"refused file: larger than {cap} bytes")
    return data


def write_key_file(path: str, data: bytes, ctx: FsContext, *, root_path: str | None) -> None:
    """Create a new 0600 key file outside the store root; never overwrites an existing file."""
    _outside_root(path, root_path, ctx)
    try:
        holder, name = open_parent(path, ctx)
        with holder:
            holder.write_new(name, data)
    except (NotFoundError, UnsafeFileError, StorageError, AlreadyExistsError) as exc:
        raise KeyMaterialError(f"cannot create key file: {exc}") from None


def write_output_file(path: str, data: bytes, ctx: FsContext) -> None:
    """Create a new 0600 file for an export (anchor, proof); never overwrites or follows a link."""
    try:
        holder, name = open_parent(path, ctx)
        with holder:
            holder.write_new(name, data)
    except (NotFoundError, UnsafeFileError, StorageError, AlreadyExistsError) as exc:
        raise UsageError(f"cannot create {path}: {exc}") from None


def make_temp_dir(ctx: FsContext, prefix: str) -> str:
    """A new 0700 directory under the system temp directory; returns its path."""
    base = ctx.os.tempdir()
    for _ in range(8):
        path = os.path.join(base, f"{prefix}{ctx.random_hex(8)}")
        try:
            ctx.os.mkdir(path, DIR_MODE)
        except FileExistsError:
            continue
        except OSError as exc:
            raise translate(exc, "create", path) from None
        return path
    raise UsageError("could not create a temporary directory")


def remove_dir(path: str, ctx: FsContext) -> None:
    """Delete a directory tree we created, without following symlinks inside it."""
    holder, name = open_parent(path, ctx)
    with holder:
        remove_entry(holder, name)
