"""Anchors and Merkle proofs read off a store (streaming, read-only apart from sealing)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from ...audit.anchor import AnchoredLog, Anchor
from ...audit.chain import Genesis, parse_record
from ...audit.checkpoint import StoredCheckpoint
from .auditlog import LOG_FILE
from ...audit.merkle import Frontier, RangeHasher, leaf_hash, ranges_for_consistency, ranges_for_inclusion
from ...audit.proof import ConsistencyProof, InclusionProof
from ...errors import IntegrityError, NotFoundError, UsageError
from ..tree import TreeDir
from .layout import AUDIT_DIR, SESSIONS_DIR
from ...core.policy import session_name
from ...core.policy import describe_key, is_session_name
from .store_dir import StoreDir
from .store_seal import seal_store


def _label(name: str | None) -> str:
    return f"{AUDIT_DIR}/{LOG_FILE}" if name is None else f"{SESSIONS_DIR}/{name}/{AUDIT_DIR}/{LOG_FILE}"


def _name(store: StoreDir, key: str) -> str:
    return session_name(key, store.config.limits.max_key_bytes)[1]


@contextmanager
def _audit_dir(store: StoreDir, name: str | None, key: str | None = None) -> Iterator[TreeDir]:
    if name is None:
        with store.root.open_dir(AUDIT_DIR) as audit:
            yield audit
        return
    try:
        directory = store.sessions.open_dir(name)
    except NotFoundError:
        raise NotFoundError(f"no session {describe_key(key, name)}") from None
    with directory, directory.open_dir(AUDIT_DIR) as audit:
        yield audit


def _latest(store: StoreDir, audit: TreeDir, name: str | None) -> StoredCheckpoint:
    stored = store.env.new_log(audit).last_checkpoint(repair=False)
    if stored is None:
        raise IntegrityError(f"{_label(name)} has no signed checkpoint")
    return stored


def make_anchor(store: StoreDir, key: str | None = None) -> Anchor:
    """The latest signed checkpoint of the store log and of each session (or of one). Seals
    first when this handle can sign, so the anchor covers everything written so far."""
    if store.env.signer is not None:
        seal_store(store)
    names: list[str | None] = [None]
    if key is not None:
        names.append(_name(store, key))
    else:
        names += sorted(n for n in store.sessions.list(sort=False) if is_session_name(n))
    logs = []
    signer = None
    for name in names:
        with _audit_dir(store, name, key if name is not None and key is not None else None) as audit:
            stored = _latest(store, audit, name)
            if signer is None:
                signer = _genesis_signer(audit, store)
        logs.append(AnchoredLog(log=_label(name), session=name, note=stored.note))
    return Anchor(v=1, kind="securestore-anchor", store=store.store_id, signer=signer or "",
                  created=store.env.clock(), logs=logs)


def _genesis_signer(audit: TreeDir, store: StoreDir) -> str:
    """The signer the store log's genesis names (the anchor's own copy of the public key)."""
    for _, line in audit.iter_lines(LOG_FILE, store.config.limits.max_audit_line_bytes + 1):
        record = parse_record(line.rstrip(b"\n"))
        if isinstance(record, Genesis):
            return record.signer
        break
    raise IntegrityError("the store log does not start with a genesis record")


def _stream(audit: TreeDir, store: StoreDir, size: int) -> Iterator[tuple[int, bytes]]:
    """(index, line without newline) for the first `size` records."""
    index = 0
    for _, line in audit.iter_lines(LOG_FILE, store.config.limits.max_audit_line_bytes + 1):
        if index == size:
            return
        if not line.endswith(b"\n"):
            break
        yield index, line[:-1]
        index += 1
    if index < size:
        raise IntegrityError(f"the log ends at {index} records, before its checkpoint's {size}")


def prove_inclusion(store: StoreDir, key: str | None, seq: int) -> InclusionProof:
    name = _name(store, key) if key is not None else None
    with _audit_dir(store, name, key) as audit:
        stored = _latest(store, audit, name)
        size = stored.frontier.size
        if not 0 <= seq < size:
            raise UsageError(f"record {seq} is not sealed: the last checkpoint covers seq 0..{size - 1} "
                             "(run `securestore audit seal`)")
        hasher = RangeHasher(ranges_for_inclusion(seq, size))
        record = b""
        for index, line in _stream(audit, store, size):
            hasher.add(leaf_hash(line))
            if index == seq:
                record = line
    return InclusionProof(v=1, kind="inclusion", log=_label(name), index=seq, size=size,
                          record=record.decode(), path=[h.hex() for h in hasher.result()], checkpoint=stored.note)


def prove_consistency(store: StoreDir, key: str | None, old_size: int) -> ConsistencyProof:
    name = _name(store, key) if key is not None else None
    with _audit_dir(store, name, key) as audit:
        stored = _latest(store, audit, name)
        size = stored.frontier.size
        if not 1 <= old_size <= size:
            raise UsageError(f"OLD_SIZE must be between 1 and the signed size {size}")
        hasher = RangeHasher(ranges_for_consistency(old_size, size))
        old = Frontier()
        for index, line in _stream(audit, store, size):
            leaf = leaf_hash(line)
            hasher.add(leaf)
            if index < old_size:
                old.add(leaf)
    return ConsistencyProof(v=1, kind="consistency", log=_label(name), old_size=old_size,
                            old_root=old.root().hex(), size=size, path=[h.hex() for h in hasher.result()],
                            checkpoint=stored.note)
