"""Shared by the tools: a fresh store with its audit keys beside it (outside the root)."""

from __future__ import annotations

import os
from pathlib import Path

from securestore import StoreConfig, init_store
from securestore.audit.keys import new_signer_key
from securestore.audit_keys import SIGNING_KEY_ENV


def new_store(root: Path, config: StoreConfig | None = None) -> dict[str, str]:
    """init a store at `root`; returns the environment a SecureStore needs to write to it."""
    signer = new_signer_key("bench.audit", os.urandom(32))
    init_store(root, config, seed_out=str(root.parent / f"{root.name}.seed"), signing_key=signer.text())
    return {SIGNING_KEY_ENV: signer.text()}
