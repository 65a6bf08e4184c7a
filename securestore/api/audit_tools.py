"""What an auditor and an operator do with the audit trail from outside the store: gather the
verify options from their files, export anchors and proofs, check a proof file without the
store, and drill an attack on a throwaway store to watch verify catch it."""

from __future__ import annotations

from types import TracebackType

import orjson

from ..audit.anchor import Anchor, encode_anchor, parse_anchor
from ..audit.checkpoint import CHECKPOINTS_FILE, Checkpoint, open_note, peek_note
from ..audit.errors import RecordError
from ..audit.keys import VerifierKey, parse_verifier_key
from ..audit.proof import ConsistencyProof, InclusionProof, ProofResult, check_proof, encode_proof, parse_proof
from ..backends.local.auditlog import LOG_FILE
from ..backends.roots import backend_of, disk_root
from ..backends.local.layout import AUDIT_DIR, SESSION_LOCK, SESSIONS_DIR
from ..core.policy import encode_name
from ..errors import UsageError
from ..fs import Dir, FileLock, FsContext, lock, open_root, read_key_file
from .keyring import find_keyring
from .keys import load_public_key, load_seed
from .store import SecureStore
from .verify import VerifyOptions, make_anchor, prove_consistency, prove_inclusion

__all__ = [
    "AuditTrailDrill",
    "check_proof_file",
    "export_anchor",
    "export_consistency_proof",
    "export_inclusion_proof",
    "read_anchor",
    "verify_options",
]

_PROOF_CAP = 4 * 1024 * 1024
_ANCHOR_CAP = 64 * 1024 * 1024
_AUDIT_FILE_CAP = 1 << 24


def verify_options(store: SecureStore, *, seed_file: str | None = None, public_key_file: str | None = None,
                   anchor_file: str | None = None, max_unsealed: int | None = None) -> VerifyOptions:
    """What the auditor brings, read from their files: the seed from `init` (it must be this
    store's), the trusted signer's public key, an anchor kept outside the store."""
    ctx = FsContext()
    seed = None
    if seed_file:
        store_id, seed = load_seed(ctx, seed_file, root_path=disk_root(store.root_path))
        if store_id != store.store_id:
            raise UsageError(f"the seed is for store {store_id}, not {store.store_id}")
    public_key, public_key_from = (load_public_key(ctx, public_key_file), "public-key") if public_key_file else (None, "")
    if public_key is None and seed is None and anchor_file is None:
        # A plain verify checks signatures with the public key `init` kept beside the store's keys.
        ring = find_keyring(ctx, store.environ, store.store_id)
        if ring is not None and ring.public_key is not None:
            public_key, public_key_from = load_public_key(ctx, ring.public_key), "keyring"
    return VerifyOptions(seed=seed, public_key=public_key, public_key_from=public_key_from or "public-key",
                         anchor=read_anchor(anchor_file) if anchor_file else None, max_unsealed=max_unsealed)


def read_anchor(path: str) -> Anchor:
    """An anchor file from `export_anchor` (kept outside the store); a malformed one is refused."""
    try:
        return parse_anchor(read_key_file(path, FsContext(), root_path=None, cap=_ANCHOR_CAP, secret=False))
    except RecordError as exc:
        raise UsageError(f"{path}: {exc.detail}") from None


def export_anchor(store: SecureStore, session: str | None = None) -> bytes:
    """The latest signed checkpoints (the store log's, and `session`'s or every session's), sealed first."""
    return encode_anchor(make_anchor(store, session))


def export_inclusion_proof(store: SecureStore, session: str | None, seq: int) -> bytes:
    """Proof that record `seq` of `session`'s log (None: the store log) is in its latest checkpoint."""
    return encode_proof(prove_inclusion(store, session, seq))


def export_consistency_proof(store: SecureStore, session: str | None, old_size: int) -> bytes:
    """Proof that `session`'s log (None: the store log) at its latest checkpoint extends size `old_size`."""
    return encode_proof(prove_consistency(store, session, old_size))


def check_proof_file(path: str, *, public_key_file: str | None = None, anchor_file: str | None = None) -> ProofResult:
    """What the proof in `path` proves, checked without the store against the trusted signer (a
    public key file, else the anchor's signer). With an anchor, a consistency proof must start
    at the anchored checkpoint. A proof that fails raises RecordError naming the failed check."""
    if not public_key_file and not anchor_file:
        raise UsageError("checking a proof needs the trusted signer: a public key file or an anchor file")
    ctx = FsContext()
    anchor = read_anchor(anchor_file) if anchor_file else None
    proof = parse_proof(read_key_file(path, ctx, root_path=None, cap=_PROOF_CAP, secret=False))
    trusted = (load_public_key(ctx, public_key_file) if public_key_file
               else parse_verifier_key(anchor.signer if anchor else ""))
    return check_proof(proof, trusted, _anchored_checkpoint(proof, anchor, trusted))


def _anchored_checkpoint(proof: InclusionProof | ConsistencyProof, anchor: Anchor | None,
                         trusted: VerifierKey) -> Checkpoint | None:
    """The anchor's checkpoint of the proof's log, where a consistency proof must start."""
    if anchor is None or not isinstance(proof, ConsistencyProof):
        return None
    log_id = peek_note(proof.checkpoint).log_id
    anchored = None
    for entry in anchor.logs:
        candidate = open_note(entry.note, trusted)
        if candidate.log_id == log_id:
            anchored = candidate
    if anchored is None:
        raise RecordError("consistency", "the anchor holds no checkpoint of this log")
    return anchored


class AuditTrailDrill:
    """What someone with write access to the files could do to one session's audit trail, for a
    demo or an exercise on a THROWAWAY store: each attack rewrites the files, verify should
    catch it, and leaving the `with` block (or `restore`) puts the original bytes back. The
    drill holds the session's writer lock throughout (LockHeldError while a writer has it), so
    no record can land between an attack and the restore and be lost by it."""

    def __init__(self, store: SecureStore, session: str) -> None:
        self._store = store
        self._session = session
        self._dirs: list[Dir] = []
        self._lock: FileLock | None = None
        self._log = b""
        self._checkpoints = b""

    def __enter__(self) -> AuditTrailDrill:
        if backend_of(self._store.root_path) != "fs":
            raise UsageError("refused: the audit trail drill rewrites a directory store's audit files, and a PostgreSQL "
                             "store's audit rows only ever grow; run the drill on a throwaway directory store")
        ctx = FsContext()
        root = open_root(self._store.root_path, ctx, create=False)
        self._dirs.append(root)
        try:
            for name in (SESSIONS_DIR, encode_name(self._session)):
                self._dirs.append(self._dirs[-1].open_dir(name))
            self._lock = lock(self._dirs[-1], SESSION_LOCK, 0.0, ctx.os.now_ns() // 1_000_000)
            self._dirs.append(self._dirs[-1].open_dir(AUDIT_DIR))
            self._log = self._audit.read(LOG_FILE, _AUDIT_FILE_CAP)
            self._checkpoints = self._audit.read(CHECKPOINTS_FILE, _AUDIT_FILE_CAP)
        except BaseException:
            self._close()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        try:
            self.restore()
        finally:
            self._close()

    @property
    def _audit(self) -> Dir:
        return self._dirs[-1]

    def edit_record(self, index: int) -> None:
        """Change one digit of the writer's pid in record `index`: still valid JSON, so only
        the record's MAC (and the checkpoints over it) can tell."""
        lines = self._log.splitlines(keepends=True)
        edited = bytearray(lines[index])
        at = edited.index(b'"pid":') + 6
        edited[at] = ord("1") if edited[at] != ord("1") else ord("2")
        self._audit.write_atomic(LOG_FILE, b"".join(lines[:index]) + bytes(edited) + b"".join(lines[index + 1:]))

    def cut_tail(self, count: int) -> None:
        """Drop the last `count` records and every checkpoint that covered them: only an anchor
        kept outside the store can tell."""
        lines = self._log.splitlines(keepends=True)
        kept = [line for line in self._checkpoints.splitlines(keepends=True)
                if peek_note(orjson.loads(line)["note"]).size <= len(lines) - count]
        self._audit.write_atomic(LOG_FILE, b"".join(lines[:-count]))
        self._audit.write_atomic(CHECKPOINTS_FILE, b"".join(kept))

    def restore(self) -> None:
        """Put the audit log and its checkpoints back as they were when the drill began."""
        self._audit.write_atomic(LOG_FILE, self._log)
        self._audit.write_atomic(CHECKPOINTS_FILE, self._checkpoints)

    def _close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        while self._dirs:
            self._dirs.pop().close()
