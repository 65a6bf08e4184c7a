"""Shared by the tools: a fresh store in DIR (or a new temp dir) with its keys beside it,
outside the root: an audit signing key and a random master key."""

from __future__ import annotations

import base64
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from securestore import SecureStore, StoreConfig, init_store
from securestore.audit.keys import new_signer_key
from securestore.api.keys import SIGNING_KEY_ENV


@dataclass(frozen=True)
class BenchStore:
    base: Path
    root: Path
    environ: dict[str, str]  # holds the signing key
    master_key: str

    def open(self, config: StoreConfig | None = None, **kwargs: Any) -> SecureStore:
        return SecureStore(self.root, config, master_key=self.master_key, environ=self.environ, **kwargs)


def new_store(directory: str | None) -> BenchStore:
    base = Path(directory or tempfile.mkdtemp(prefix="ss-bench-"))
    root = base / "store"
    signer = new_signer_key("bench.audit", os.urandom(32))
    init_store(root, seed_out=str(base / "store.seed"), signing_key=signer.text())
    return BenchStore(base, root, {SIGNING_KEY_ENV: signer.text()}, base64.b64encode(os.urandom(32)).decode())
