"""A power-cut simulator for the OS-call table (in the spirit of SQLite's crash VFS and LevelDB's
fault_injection_test), working on a real directory tree.

It records what each fsync made durable: a file's content (by inode) when the file is fsynced,
a directory's entries (name -> inode) when the directory is fsynced. At the cut, every process
"dies" and the tree is rolled back to exactly that durable state: unsynced bytes vanish,
unsynced creates, renames and unlinks are undone, a file never fsynced is empty. This is the
pessimistic model: a real disk may keep more, never less.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securestore.fs.osapi import REAL_OS, OsApi, io_call_names

Entry = tuple[int, str]  # (inode, "dir" | "file")


class PowerCut(BaseException):
    """The power went out: no later call reaches the disk."""


class Disk:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[int, bytes] = {}
        self.dirs: dict[int, dict[str, Entry]] = {}
        self.calls = 0
        self.cut_at: int | None = None
        self.dead = False
        self._made: set[int] = set()  # directories the restore made (their inode numbers)
        for directory, _, names in os.walk(root):
            self._sync_dir_path(Path(directory))
            for name in names:
                path = Path(directory) / name
                self.files[path.lstat().st_ino] = path.read_bytes()

    # -- recording ---------------------------------------------------------------------------------
    def _entries(self, fd_or_path: int | Path) -> dict[str, Entry]:
        entries = {}
        with os.scandir(fd_or_path) as it:  # type: ignore[type-var]
            for entry in it:
                st = entry.stat(follow_symlinks=False)
                entries[entry.name] = (st.st_ino, "dir" if stat.S_ISDIR(st.st_mode) else "file")
        return entries

    def _sync_dir_path(self, path: Path) -> None:
        self.dirs[path.lstat().st_ino] = self._entries(path)

    def _fsynced(self, fd: int) -> None:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            self.dirs[st.st_ino] = self._entries(os.dup(fd))  # scandir closes the fd it is given
        elif stat.S_ISREG(st.st_mode):
            # The fd may be write-only: read the same inode through /proc instead.
            with open(f"/proc/self/fd/{fd}", "rb") as handle:
                self.files[st.st_ino] = handle.read()

    def api(self, base: OsApi = REAL_OS) -> OsApi:
        def wrap(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
            def call(*args: Any, **kwargs: Any) -> Any:
                if self.dead and name != "close":
                    raise PowerCut()
                self.calls += 1
                if self.cut_at is not None and self.calls > self.cut_at:
                    self.dead = True
                    raise PowerCut()
                result = fn(*args, **kwargs)
                if name == "fsync":
                    self._fsynced(args[0])
                return result
            return call

        return dataclasses.replace(base, **{n: wrap(n, getattr(base, n)) for n in io_call_names()})

    # -- the cut ---------------------------------------------------------------------------------
    def _find_dir(self, inode: int) -> Path | None:
        """Where the durable directory `inode` is now. A directory this restore made itself is
        never it, even if the kernel gave it that inode number again (the durable one was
        removed before the cut, and its number freed)."""
        for directory, _, _ in os.walk(self.root):
            number = Path(directory).lstat().st_ino
            if number == inode and number not in self._made:
                return Path(directory)
        return None

    @staticmethod
    def _remove(path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()

    def restore(self) -> None:
        """Roll the tree back to what was durable (call after the processes died)."""
        self._made = set()
        self._restore_dir(self.root)

    def _restore_dir(self, path: Path) -> None:
        desired = self.dirs.get(path.lstat().st_ino, {})
        live = self._entries(path)
        for name, (inode, kind) in desired.items():  # durable entries that moved or vanished
            if live.get(name, (None, ""))[0] == inode:
                continue
            if kind == "dir":
                source = self._find_dir(inode)
                if name in live and (source is None or source != path / name):
                    self._remove(path / name)
                if source is not None:
                    source.rename(path / name)
                else:
                    (path / name).mkdir(mode=0o700)
                    self._made.add((path / name).lstat().st_ino)
            else:
                if name in live:
                    self._remove(path / name)
                (path / name).write_bytes(self.files.get(inode, b""))
                (path / name).chmod(0o600)
        for name in self._entries(path):  # entries no fsync made durable
            if name not in desired:
                self._remove(path / name)
        for name, (inode, kind) in desired.items():
            target = path / name
            if kind == "dir":
                self._restore_dir(target)
            elif target.read_bytes() != self.files.get(inode, b""):
                target.write_bytes(self.files.get(inode, b""))  # unsynced bytes are lost
