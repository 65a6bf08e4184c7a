"""Files a command line or tool handles outside the store, and the environment it runs in: the
process environment (read once, then passed down), the default store root, a scratch
directory, key and seed files, a user's input file, new output files, and a read-only listing
of a store's raw files. Every call goes through securestore.fs; nothing here calls the OS."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..audit.keys import SignerKey, VerifierKey
from ..errors import UnsafeFileError
from ..fs import (
    Dir,
    FsContext,
    environment,
    join_path,
    make_temp_dir,
    open_parent,
    open_root,
    remove_dir,
    user_data_dir,
    walk,
    write_output_file,
)
from ..backends.roots import disk_root
from .keys import DEFAULT_KEY_NAME, generate_signing_key, load_public_key, load_seed, load_signing_key

ROOT_ENV = "SECURESTORE_ROOT"

__all__ = [
    "ROOT_ENV",
    "RawFile",
    "ScratchDir",
    "configured_signing_key",
    "default_root",
    "environment",
    "make_scratch_dir",
    "new_signing_key_file",
    "raw_store_files",
    "read_input_file",
    "read_public_key",
    "read_seed",
    "write_new_file",
]


def default_root(environ: Mapping[str, str]) -> str:
    """$SECURESTORE_ROOT, else `securestore` in the per-user data directory."""
    if environ.get(ROOT_ENV):
        return environ[ROOT_ENV]
    return join_path(user_data_dir(environ), "securestore")


@dataclass(frozen=True)
class ScratchDir:
    """A new 0700 directory under the system temp directory, ours to fill and to remove."""

    path: str

    def file(self, name: str) -> str:
        """The path of `name` in this directory."""
        return join_path(self.path, name)

    def remove(self) -> None:
        """Delete the directory and everything in it (symlinks inside are removed, never followed)."""
        remove_dir(self.path, FsContext())


def make_scratch_dir(prefix: str) -> ScratchDir:
    return ScratchDir(make_temp_dir(FsContext(), prefix))


def read_input_file(path: str, cap: int) -> bytes:
    """A regular file the user handed in, of at most `cap` bytes. Never a symlink, FIFO or
    device, nor another user's file (which could be swapped or fed while we read it)."""
    holder, name = open_parent(path, FsContext())
    with holder:
        entry = holder.entry(name)
        if entry is not None and entry.kind not in ("file", "symlink"):
            found = "a directory" if entry.kind == "dir" else "a FIFO, socket or device"
            raise UnsafeFileError(f"it is {found}, not a regular file")
        return holder.read(name, cap, ours=False)  # O_NOFOLLOW, fstat: the checks that count


def write_new_file(path: str, data: bytes) -> None:
    """An export (anchor, proof): a new 0600 file; never overwrites or follows a link."""
    write_output_file(path, data, FsContext())


def read_seed(path: str, *, root_path: str | None) -> tuple[str, bytes]:
    """The audit verification seed file from `init`: (store id, seed). Refused inside `root_path`."""
    return load_seed(FsContext(), path, root_path=disk_root(root_path))


def read_public_key(path: str) -> VerifierKey:
    """A trusted checkpoint signer: a public key file (name+id+key), or a signing key file's public half."""
    return load_public_key(FsContext(), path)


def new_signing_key_file(path: str, *, root_path: str | None, name: str = DEFAULT_KEY_NAME) -> SignerKey:
    """A new Ed25519 audit signing key in a new 0600 file outside the store root."""
    return generate_signing_key(FsContext(), path, root_path=disk_root(root_path), name=name)


def configured_signing_key(root_path: str, key_file: str | None, environ: Mapping[str, str]) -> SignerKey | None:
    """The signing key the store would use: `key_file`, else the signing-key environment variables."""
    return load_signing_key(FsContext(), disk_root(root_path), key=None, key_file=key_file, environ=environ)


@dataclass(frozen=True)
class RawFile:
    """One entry of a store's tree as it lies on disk: directories end in `/` and have no data."""

    path: str
    mode: int
    data: bytes | None


def raw_store_files(root_path: str, *, cap: int = 64 * 1024 * 1024) -> list[RawFile]:
    """Every file and directory under the store root with its mode, and each file's bytes; reads only."""
    with open_root(root_path, FsContext(), create=False) as root:
        found = []
        for rel, info in walk(root):
            data = _read_below(root, rel, cap) if info.kind == "file" else None
            found.append(RawFile(rel + ("/" if info.kind == "dir" else ""), info.mode, data))
        return found


def _read_below(root: Dir, rel: str, cap: int) -> bytes:
    parts = rel.split("/")
    opened: list[Dir] = []
    holder = root
    try:
        for part in parts[:-1]:
            holder = holder.open_dir(part)
            opened.append(holder)
        return holder.read(parts[-1], cap)
    finally:
        for handle in reversed(opened):
            handle.close()
