"""Where the audit keys come from and go to. Both live OUTSIDE the store root:

- the signing key (Ed25519, Go note format) signs checkpoints; every writer needs it. From an
  explicit path, $SECURESTORE_AUDIT_SIGNING_KEY (the key text) or
  $SECURESTORE_AUDIT_SIGNING_KEY_FILE (a 0600 file).
- the verification seed is created by `init`, handed out once (a new 0600 file, or a callback
  such as printing it), and never stored by the writer. Only an auditor keeps it.
- the master key (32 bytes) wraps each session's vault key. From an explicit value, a file,
  $SECURESTORE_MASTER_KEY or $SECURESTORE_MASTER_KEY_FILE; without it secrets are dropped and
  only fingerprinted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..audit.errors import RecordError
from ..backends.roots import disk_root
from ..audit.keys import SignerKey, new_signer_key, parse_seed, parse_signer_key, parse_verifier_key, VerifierKey
from ..core.secrets.vault import encode_master_key, parse_master_key
from ..errors import KeyMaterialError
from ..fs import REAL_OS, FsContext, OsApi, read_key_file, write_key_file

SIGNING_KEY_ENV = "SECURESTORE_AUDIT_SIGNING_KEY"
SIGNING_KEY_FILE_ENV = "SECURESTORE_AUDIT_SIGNING_KEY_FILE"
DEFAULT_KEY_NAME = "securestore.audit"
MASTER_KEY_ENV = "SECURESTORE_MASTER_KEY"
MASTER_KEY_FILE_ENV = "SECURESTORE_MASTER_KEY_FILE"

SeedOut = str | Callable[[bytes], None]


def _signer_from_text(text: str, where: str) -> SignerKey:
    try:
        return parse_signer_key(text.strip())
    except RecordError as exc:
        raise KeyMaterialError(f"{where}: {exc.detail}") from None


def load_signing_key(
    ctx: FsContext, root_path: str | None, *, key: SignerKey | str | None, key_file: str | None,
    environ: Mapping[str, str],
) -> SignerKey | None:
    """Explicit key, else key file, else $SECURESTORE_AUDIT_SIGNING_KEY, else ..._FILE."""
    if isinstance(key, SignerKey):
        return key
    if key is not None:
        return _signer_from_text(key, "the audit signing key")
    if key_file is None and environ.get(SIGNING_KEY_ENV):
        return _signer_from_text(environ[SIGNING_KEY_ENV], f"${SIGNING_KEY_ENV}")
    path = key_file or environ.get(SIGNING_KEY_FILE_ENV) or None
    if path is None:
        return None
    data = read_key_file(path, ctx, root_path=root_path)
    return _signer_from_text(data.decode("ascii", errors="replace"), "the audit signing key file")


def generate_signing_key(ctx: FsContext, path: str, *, root_path: str | None, name: str = DEFAULT_KEY_NAME) -> SignerKey:
    """A new Ed25519 signing key in a new 0600 file outside the root."""
    try:
        key = new_signer_key(name, ctx.os.urandom(32))
    except ValueError as exc:
        raise KeyMaterialError(str(exc)) from None
    write_key_file(path, (key.text() + "\n").encode(), ctx, root_path=root_path)
    return key


def export_seed(ctx: FsContext, seed_text: bytes, out: SeedOut, *, root_path: str | None) -> None:
    if callable(out):
        out(seed_text)
    else:
        write_key_file(out, seed_text, ctx, root_path=root_path)


def load_seed(ctx: FsContext, path: str, *, root_path: str | None) -> tuple[str, bytes]:
    try:
        return parse_seed(read_key_file(path, ctx, root_path=root_path))
    except ValueError as exc:
        raise KeyMaterialError(f"{path}: {exc}") from None


def load_public_key(ctx: FsContext, path: str) -> VerifierKey:
    """A public key file (name+id+base64), or a signing key file (its public half)."""
    text = read_key_file(path, ctx, root_path=None, secret=False).decode("ascii", errors="replace").strip()
    try:
        if text.startswith("PRIVATE+KEY+"):
            return parse_signer_key(text).verifier
        return parse_verifier_key(text)
    except RecordError as exc:
        raise KeyMaterialError(f"{path}: {exc.detail}") from None


def load_master_key(
    ctx: FsContext, root_path: str | None, *, key: bytes | str | None, key_file: str | None, environ: Mapping[str, str]
) -> bytes | None:
    """Explicit key, else key file, else $SECURESTORE_MASTER_KEY, else $SECURESTORE_MASTER_KEY_FILE."""
    if key is not None:
        return parse_master_key(key)
    path = key_file or None
    if path is None and environ.get(MASTER_KEY_ENV):
        return parse_master_key(environ[MASTER_KEY_ENV])
    path = path or environ.get(MASTER_KEY_FILE_ENV) or None
    if path is None:
        return None
    return parse_master_key(read_key_file(path, ctx, root_path=root_path))


def generate_master_key(path: str, *, root_path: str | None = None, os_api: OsApi = REAL_OS) -> None:
    """Write a new random master key to a 0600 file outside the store root."""
    ctx = FsContext(os_api)
    write_key_file(path, (encode_master_key(os_api.urandom(32)) + "\n").encode(), ctx,
                   root_path=disk_root(root_path))
