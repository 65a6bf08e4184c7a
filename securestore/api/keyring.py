"""The per-user key directory: where `init` keeps a store's keys when none is configured, and
where every later command (and `open_store`) finds them again by store id.

    $SECURESTORE_KEY_DIR, else $XDG_CONFIG_HOME/securestore/keys, else ~/.config/securestore/keys
        <store id>/            0700, ours
            audit-signing.key  0600  the Ed25519 checkpoint signer (every writer needs it)
            audit-signing.pub  0600  its public half: a plain `audit verify` checks signatures with it
            master.key         0600  wraps each session's vault key (vaulted secrets need it)

It is never inside the store root: a copy or backup of the store must not carry its keys.
Explicit arguments and the key environment variables always take precedence over it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..audit.keys import SignerKey
from ..core.secrets.vault import encode_master_key
from ..errors import KeyMaterialError, NotFoundError, SecureStoreError
from ..fs import FsContext, inside_root, join_path, open_root, remove_dir, unsafe_ancestor, user_config_dir

KEY_DIR_ENV = "SECURESTORE_KEY_DIR"
SIGNING_KEY_NAME = "audit-signing.key"
PUBLIC_KEY_NAME = "audit-signing.pub"
MASTER_KEY_NAME = "master.key"


def key_home(environ: Mapping[str, str]) -> str:
    """The directory holding one key directory per store."""
    if environ.get(KEY_DIR_ENV):
        return environ[KEY_DIR_ENV]
    return join_path(user_config_dir(environ), "securestore", "keys")


@dataclass(frozen=True)
class KeyRing:
    """A store's key directory and which of its key files exist (paths, or None)."""

    path: str
    signing_key: str | None
    public_key: str | None
    master_key: str | None


def key_dir(environ: Mapping[str, str], store_id: str) -> str:
    return join_path(key_home(environ), store_id)


def find_keyring(ctx: FsContext, environ: Mapping[str, str], store_id: str) -> KeyRing | None:
    """The store's key directory, if there is one; each key file is checked when it is read."""
    path = key_dir(environ, store_id)
    try:
        # open_root: not a symlink, ours, 0700, or refused (someone else's directory of keys).
        with open_root(path, ctx, create=False, what="key directory") as holder:
            present = set(holder.list())
    except NotFoundError:
        return None  # nothing is read from a path that holds nothing, however unsafe its parents
    except SecureStoreError as exc:
        raise KeyMaterialError(f"{exc}; repair it (owner, mode 0700) or set ${KEY_DIR_ENV}") from None
    _check_ancestry(ctx, path)  # before any key in it is trusted

    def file(name: str) -> str | None:
        return join_path(path, name) if name in present else None

    return KeyRing(path, file(SIGNING_KEY_NAME), file(PUBLIC_KEY_NAME), file(MASTER_KEY_NAME))


def keyring_of(store_id: str, environ: Mapping[str, str]) -> KeyRing | None:
    """The key directory `init` made for `store_id`, if any (None when its keys were configured)."""
    return find_keyring(FsContext(), environ, store_id)


def create_keyring(ctx: FsContext, environ: Mapping[str, str], store_id: str, root_path: str | None, *,
                   signer: SignerKey, master_key: bytes | None) -> KeyRing:
    """A new key directory for `store_id` holding `signer` (and its public half) and, if given,
    `master_key`. Refused inside the store root, or if the directory already holds anything."""
    path = key_dir(environ, store_id)
    _check_ancestry(ctx, path)
    if root_path is not None and inside_root(path, root_path, ctx):
        raise KeyMaterialError(f"refused the key directory {path}: it is inside the store root; set ${KEY_DIR_ENV} "
                               "to a directory outside it")
    with open_root(path, ctx, create=True, what="key directory") as holder:
        if holder.list():
            raise KeyMaterialError(f"refused the key directory {path}: it is not empty; move it away or set "
                                   f"${KEY_DIR_ENV}")
        try:
            holder.write_new(SIGNING_KEY_NAME, (signer.text() + "\n").encode())
            holder.write_new(PUBLIC_KEY_NAME, (signer.verifier.text() + "\n").encode())
            if master_key is not None:
                holder.write_new(MASTER_KEY_NAME, (encode_master_key(master_key) + "\n").encode())
        except BaseException:
            discard_keyring(ctx, path)
            raise
    return KeyRing(path, join_path(path, SIGNING_KEY_NAME), join_path(path, PUBLIC_KEY_NAME),
                   join_path(path, MASTER_KEY_NAME) if master_key is not None else None)


def _check_ancestry(ctx: FsContext, path: str) -> None:
    # Whoever can write a directory on the way can rename ours away (hiding the keys, which
    # loses every vaulted secret) or put one of theirs in its place.
    problem = unsafe_ancestor(path, ctx)
    if problem is not None:
        raise KeyMaterialError(f"refused the key directory {path}: {problem}, so another user could replace or hide "
                               f"it; set ${KEY_DIR_ENV} to a directory only you (or root) can change")


def discard_keyring(ctx: FsContext, path: str) -> None:
    """Remove a key directory made for a store that was never completed (its keys sign nothing)."""
    try:
        remove_dir(path, ctx)
    except (OSError, SecureStoreError):  # best effort: `doctor` reports a key directory without a store
        pass
