"""The auditor's recipes on an open store: verify the trail against the data, anchor it,
prove inclusion and consistency, and inspect a legacy store before importing it."""

from __future__ import annotations

from ..audit.anchor import Anchor
from ..audit.proof import ConsistencyProof, InclusionProof
from ..backends.local import migrate_inspect, proofs
from ..backends.local import verify as local_verify
from ..backends.local.migrate_inspect import Inspection
from ..audit.store_report import VerifyOptions, VerifyReport
from .store import SecureStore

__all__ = ["Inspection", "VerifyOptions", "VerifyReport", "inspect_source", "make_anchor", "prove_consistency",
           "prove_inclusion", "verify_store"]


def verify_store(store: SecureStore, session: str | None = None, options: VerifyOptions | None = None) -> VerifyReport:
    """Verify without locking anything (see `backends.local.verify` for what is checked)."""
    return local_verify.verify_store(store.backend, session, options)


def make_anchor(store: SecureStore, key: str | None = None) -> Anchor:
    """The latest signed checkpoint of the store log and of each session (or of one)."""
    return proofs.make_anchor(store.backend, key)


def prove_inclusion(store: SecureStore, key: str | None, seq: int) -> InclusionProof:
    return proofs.prove_inclusion(store.backend, key, seq)


def prove_consistency(store: SecureStore, key: str | None, old_size: int) -> ConsistencyProof:
    return proofs.prove_consistency(store.backend, key, old_size)


def inspect_source(store: SecureStore, path: str) -> Inspection:
    """What importing the legacy store at `path` would do; reads only."""
    return migrate_inspect.inspect_source(store.backend, path)
