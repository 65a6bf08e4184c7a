"""Creating a store: the keys checked (or made) first, then the directory (or the database's
tree) built by the backend; and `pg_setup`, which prepares a PostgreSQL database for stores."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from ..audit.keys import SignerKey, encode_seed, new_signer_key
from ..backends.local.env import wall_clock_ms
from ..backends.local.store_init import create_store
from ..backends.roots import backend_of, disk_root, open_store_root, root_label, set_up_database
from ..config import StoreConfig
from ..fs import REAL_OS, FsContext, OsApi, PathArg, path_text, environment
from .keyring import create_keyring, discard_keyring
from .keys import DEFAULT_KEY_NAME, SeedOut, export_seed, load_master_key, load_signing_key

if TYPE_CHECKING:
    from ..backends.roots import SetupReport


def init_store(
    root: PathArg,
    config: StoreConfig | None = None,
    *,
    seed_out: SeedOut,
    signing_key: SignerKey | str | None = None,
    signing_key_file: str | None = None,
    master_key_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    os_api: OsApi = REAL_OS,
    clock: Callable[[], int] | None = None,
) -> str:
    """Create a new store at `root` (an absent or empty directory). Returns the store id.

    The audit verification seed is created here and handed to `seed_out` (a new file outside
    the root, or a callback) exactly once; the store never keeps it. The signing key comes from
    the arguments or the environment; when none is configured, a new one (and a master key,
    unless one is configured) is kept in the per-user key directory (see `keyring`), where
    `open_store` finds it again."""
    ctx = FsContext(os_api)
    env = environment() if environ is None else environ
    root_path = path_text(root)
    key_root = disk_root(root_path)
    signer = load_signing_key(ctx, key_root, key=signing_key, key_file=signing_key_file, environ=env)
    store_id = ctx.random_hex(16)
    keyring = None
    if signer is None:  # nothing configured: the store's own keys, kept outside the root
        signer = new_signer_key(DEFAULT_KEY_NAME, ctx.os.urandom(32))
        configured = load_master_key(ctx, key_root, key=None, key_file=master_key_file, environ=env)
        keyring = create_keyring(ctx, env, store_id, key_root, signer=signer,
                                 master_key=None if configured is not None else ctx.os.urandom(32))

    def hand_out(store_id: str, seed: bytes) -> None:
        export_seed(ctx, encode_seed(store_id, seed), seed_out, root_path=key_root)

    try:
        tree = open_store_root(root_path, ctx, env, create=True)
        create_store(tree, root_label(root_path, env), ctx, config or StoreConfig(), signer,
                     clock or wall_clock_ms(ctx), hand_out, store_id=store_id, backend=backend_of(root_path))
    except BaseException:
        if keyring is not None:  # keys of a store that does not exist sign nothing
            discard_keyring(ctx, keyring.path)
        raise
    return store_id


def pg_setup(url: str, *, owner_role: str | None = None, writer_role: str | None = None,
             grant_writer_to: Sequence[str] = (), environ: Mapping[str, str] | None = None) -> SetupReport:
    """Create (or bring up to date) the schema a `postgresql://` store lives in, and its two roles:
    the owner (owns the tables; NOLOGIN) and the writer (what stores connect as: may insert audit
    rows, never change or delete them), granting the writer to each login role named. Idempotent,
    one transaction; each run is recorded in the schema's append-only `setup_history`."""
    return set_up_database(url, environment() if environ is None else environ, owner=owner_role,
                           writer=writer_role, grant_writer_to=tuple(grant_writer_to))


def store_label(root: PathArg, environ: Mapping[str, str] | None = None) -> str:
    """How to name a store's root in messages: its path, or its URL without the password."""
    return root_label(path_text(root), environment() if environ is None else environ)
