"""A new store directory: the store log with its genesis, sessions/, an empty listing index,
and store.json last (its presence means the store is complete)."""

from __future__ import annotations

from collections.abc import Callable

from ... import txn
from ...audit.keys import SignerKey, store_log_key
from ...config import StoreConfig
from ...core.canonical import sha256_hex
from ...core.records import StoreIdentity, encode_model
from ...errors import AlreadyExistsError, OperationalError
from ...fs import FsContext
from ..tree import TreeDir
from .env import LocalEnv, observe_file
from .index import ENTRIES_DIR, INDEX_DIR
from .index_compact import CREATED_LOG, UPDATES_LOG
from .layout import AUDIT_DIR, BACKEND, LAYOUT_VERSION, SESSIONS_DIR, STORE_FILE, STORE_FILE_CAP, STORE_LOCK


def create_store(root: TreeDir, root_path: str, ctx: FsContext, config: StoreConfig, signer: SignerKey,
                 clock: Callable[[], int], export_seed: Callable[[str, bytes], None], *,
                 store_id: str | None = None, backend: str = BACKEND) -> str:
    """Returns the store id (`store_id`, else a new random one: 32 hex digits). `export_seed(store_id,
    seed)` hands the verification seed out exactly once, before the store exists; the store never
    keeps it."""
    with root as root_dir:
        if root_dir.entry(STORE_FILE) is not None:
            raise AlreadyExistsError(f"a store already exists at {root_path}")
        present = root_dir.list()
        if present:
            # init deletes nothing it did not create in this call: a store whose store.json was
            # lost still holds every session and its audit trail.
            shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
            raise OperationalError(
                f"refused to init {root_path}: the directory is not empty ({shown}); init never deletes anything. "
                "If it is a store whose store.json is missing, the store is damaged: run `securestore audit verify`; "
                "if an interrupted init left it, look, then remove it yourself")
        with root_dir.lock(STORE_LOCK, 0.0, clock()):
            identity = StoreIdentity(
                v=1, store_id=store_id or ctx.random_hex(16), layout_version=LAYOUT_VERSION, backend=backend,
                created_ms=clock(), fingerprint_key=ctx.random_hex(32),
            )
            data = encode_model(identity)
            env = LocalEnv.make(ctx, config, identity, master_key=None, signer=signer, clock=clock)
            seed = ctx.os.urandom(32)
            log_id = ctx.random_hex(16)
            with root_dir.make_dir(AUDIT_DIR) as audit_dir:
                log = env.new_log(audit_dir)
                log.create(log_id, {"store": identity.store_id, "scope": "store", "session": None},
                           store_id=identity.store_id, chain=store_log_key(seed, identity.store_id, log_id),
                           rule=env.epoch_rule)
                # Handed out before the store exists (store.json): a store whose seed was lost
                # in a failed export is never completed.
                export_seed(identity.store_id, seed)
                del seed
                root_dir.make_dir(SESSIONS_DIR).close()
                with root_dir.make_dir(INDEX_DIR) as index:  # an empty listing index
                    index.make_dir(ENTRIES_DIR).close()
                    index.write_new(UPDATES_LOG, b"")
                    index.write_new(CREATED_LOG, b"")
                txn.apply(log, txn.Change(
                    "store.init", STORE_FILE, sha256_hex(data), len(data),
                    lambda: root_dir.write_new(STORE_FILE, data),
                    lambda: observe_file(root_dir, STORE_FILE, STORE_FILE_CAP),
                ))
                log.seal()
    return identity.store_id
