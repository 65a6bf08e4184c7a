"""Creating a store: the keys checked first, then the directory built by the backend."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..audit.keys import SignerKey, encode_seed
from ..backends.local.env import wall_clock_ms
from ..backends.local.store_init import create_store
from ..config import StoreConfig
from ..errors import KeyMaterialError
from ..fs import REAL_OS, FsContext, OsApi, PathArg, path_text, environment
from .keys import SIGNING_KEY_FILE_ENV, SeedOut, export_seed, load_signing_key


def init_store(
    root: PathArg,
    config: StoreConfig | None = None,
    *,
    seed_out: SeedOut,
    signing_key: SignerKey | str | None = None,
    signing_key_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    os_api: OsApi = REAL_OS,
    clock: Callable[[], int] | None = None,
) -> str:
    """Create a new store at `root` (an absent or empty directory). Returns the store id.

    The audit verification seed is created here and handed to `seed_out` (a new file outside
    the root, or a callback) exactly once; the store never keeps it. The signing key (argument,
    file or environment) must exist: every log is sealed from its first record."""
    ctx = FsContext(os_api)
    root_path = path_text(root)
    signer = load_signing_key(ctx, root_path, key=signing_key, key_file=signing_key_file,
                              environ=environment() if environ is None else environ)
    if signer is None:
        raise KeyMaterialError("init needs an audit signing key: pass --generate-signing-key PATH or --signing-key-file "
                               f"FILE, or set ${SIGNING_KEY_FILE_ENV}")

    def hand_out(store_id: str, seed: bytes) -> None:
        export_seed(ctx, encode_seed(store_id, seed), seed_out, root_path=root_path)

    return create_store(root_path, ctx, config or StoreConfig(), signer, clock or wall_clock_ms(ctx), hand_out)
