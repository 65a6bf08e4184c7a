"""Opening the store root, and key files that must live outside it."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import (
    AlreadyExistsError,
    KeyMaterialError,
    NotFoundError,
    StorageError,
    UnsafeFileError,
    UsageError,
    VersionConflictError,
)
from .safe import _DIR_FLAGS, _READ_FLAGS, DIR_MODE, Dir, FsContext, _translate


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
        raise _translate(exc, "open", parent) from None
    return Dir(ctx, fd, parent), name


def open_root(path: str, ctx: FsContext, *, create: bool) -> Dir:
    """Open (or create) the store root as a directory handle.

    The root itself is opened with O_NOFOLLOW and must be a directory owned by us with mode 0700.
    Its parents are resolved normally (a symlinked /home or /var is common and legitimate);
    documented in SECURITY.md. `create` may tighten the mode of an empty directory we own.
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
                raise _translate(exc, "create", path) from None
        try:
            fd = ctx.os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
        except OSError as exc:
            error = _translate(exc, "open store root", path)
            if isinstance(error, NotFoundError):
                raise NotFoundError(f"no store at {path} (run `securestore init`)") from None
            raise error from None
        root = Dir(ctx, fd, "")
        try:
            st = ctx.os.fstat(fd)
            if st.st_uid != ctx.euid:
                raise UnsafeFileError(f"refused store root {path}: owned by uid {st.st_uid}, not {ctx.euid}")
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o022:
                raise UnsafeFileError(f"refused store root {path}: mode {mode:04o} is group/world-writable")
            if mode != DIR_MODE:
                if not (create and (created or not root.list())):
                    raise UnsafeFileError(f"refused store root {path}: mode {mode:04o}, expected 0700")
                ctx.os.fchmod(fd, DIR_MODE)
            if created:
                holder.sync()
        except OSError as exc:
            root.close()
            raise _translate(exc, "open store root", path) from None
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
            raise _translate(exc, "stat", current) from None
    for directory in reversed(missing):
        try:
            ctx.os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            pass
        except OSError as exc:
            raise _translate(exc, "create", directory) from None


def _outside_root(key_path: str, root_path: str | None, ctx: FsContext) -> None:
    if root_path is None:
        return
    real_key = ctx.os.realpath(key_path)
    real_root = ctx.os.realpath(root_path)
    if os.path.commonpath([real_key, real_root]) == real_root:
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
            fd = ctx.os.open(name, _READ_FLAGS, dir_fd=holder.fd)
            try:
                st = ctx.os.fstat(fd)
                _check_key_file(path, st, ctx, cap=cap, secret=secret)
                return _read_all(ctx, fd, cap)
            finally:
                ctx.close_quietly(fd)
    except OSError as exc:
        raise KeyMaterialError(f"cannot read key file: {_translate(exc, 'read', path)}") from None
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


def _read_upto(ctx: FsContext, fd: int, most: int) -> bytes:
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


def _read_all(ctx: FsContext, fd: int, cap: int) -> bytes:
    data = _read_upto(ctx, fd, cap)
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
            raise _translate(exc, "create", path) from None
        return path
    raise UsageError("could not create a temporary directory")


def remove_dir(path: str, ctx: FsContext) -> None:
    """Delete a directory tree we created, without following symlinks inside it."""
    holder, name = open_parent(path, ctx)
    with holder:
        holder._remove_entry(name, 0)


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
        fd, st = directory._open_checked(name, _READ_FLAGS, "file", "open", ours=False)
        label = directory.child_label(name)
        try:
            if st.st_size > self._cap:
                raise StorageError(f"refused {label}: {st.st_size} bytes exceeds the {self._cap}-byte cap")
            data = _read_exactly(directory.ctx, fd, st.st_size, label)
            if _stamp(directory.ctx.os.fstat(fd)) != _stamp(st):
                raise VersionConflictError(f"refused {label}: it changed while it was read; run the command again")
            return LegacyFile(name, data, _stamp(st))
        except OSError as exc:
            raise _translate(exc, "read", label) from None
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
        fd, st = self._directory._open_checked(name, _READ_FLAGS, "file", "open", ours=False)
        self._directory.ctx.close_quietly(fd)
        if _stamp(st) != stamp:
            raise VersionConflictError(self._changed(name))

    def _changed(self, name: str) -> str:
        return (f"refused {self._directory.child_label(name)}: it changed since it was checked (size, mtime, ctime "
                "or inode differ); nothing was imported: inspect it and run the import again")


def _read_exactly(ctx: FsContext, fd: int, size: int, label: str) -> bytes:
    """The `size` bytes fstat reported; any other count means the file changed while read."""
    data = _read_upto(ctx, fd, size)
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
        fd, _ = holder._open_checked(name, _DIR_FLAGS, "dir", "open", ours=False)
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
