from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import orjson
import pytest

import securestore
from securestore import AuditPolicy, SecureStore, StoreConfig, init_store
from securestore.audit.checkpoint import peek_note
from securestore.audit.keys import new_signer_key, parse_seed
from securestore.api.keys import SIGNING_KEY_ENV
from securestore.core.policy import encode_name

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
SIGNING = new_signer_key("test.audit", bytes(range(100, 132)))
SIGNING_KEY = SIGNING.text()
KEYS = {SIGNING_KEY_ENV: SIGNING_KEY}  # an environment holding only the audit signing key
REPO = Path(__file__).resolve().parent.parent
# For tests that enumerate OS calls: epochs end by count (3 records, so ratchets and their
# checkpoints are among the faulted calls), never by the wall clock (which would make runs differ).
FAULT_CONFIG = StoreConfig(audit=AuditPolicy(epoch_records=3, epoch_seconds=86_400))
# The store-level audit trail: an audited rejection changes these files and nothing else.
STORE_TRAIL = frozenset({"audit/log.jsonl", "audit/checkpoints.jsonl", "audit/epoch.key"})


def seed_path(root: Path) -> Path:
    """Where make_store exported a store's verification seed (outside the root)."""
    return root.parent / f"{root.name}.seed"


def make_store(root: Path, config: StoreConfig | None = None, **kwargs: Any) -> Path:
    init_store(root, config, seed_out=str(seed_path(root)), signing_key=SIGNING_KEY, **kwargs)
    return root


def seed_of(root: Path) -> bytes:
    return parse_seed(seed_path(root).read_bytes())[1]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_store(tmp_path / "store")


@pytest.fixture
def store(root: Path) -> Iterator[SecureStore]:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as handle:
        yield handle


def tree_snapshot(path: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under `path`: (mode, content for files). Uses lstat: never follows links."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            data = full.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[str(full.relative_to(path))] = (stat.S_IMODE(st.st_mode), data)
    return out


def all_bytes(path: Path) -> bytes:
    return b"\n".join(data for _, data in tree_snapshot(path).values() if data)


def session_dir(root: Path, key: str) -> Path:
    return root / "sessions" / encode_name(key)


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SECURESTORE_")}
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env[SIGNING_KEY_ENV] = SIGNING_KEY
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "securestore", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True, text=True, env=full_env, timeout=120, check=False,
    )


def drop_checkpoints_past(audit_dir: Path, size: int) -> None:
    """Forget checkpoints over more than `size` records: the state of a log whose writer
    crashed before sealing (a crash test that edits the log after a clean close needs this)."""
    path = audit_dir / "checkpoints.jsonl"
    kept = [line for line in path.read_bytes().splitlines(keepends=True)
            if peek_note(orjson.loads(line)["note"]).size <= size]
    path.write_bytes(b"".join(kept))
