from __future__ import annotations

import base64
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import securestore
from securestore import SecureStore, init_store

MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "store"
    init_store(path)
    return path


@pytest.fixture
def store(root: Path) -> Iterator[SecureStore]:
    with SecureStore(root, master_key=MASTER_KEY, environ={}) as handle:
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
    return root / "sessions" / securestore.policy.encode_name(key)


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SECURESTORE_")}
    full_env["PYTHONPATH"] = str(REPO) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "securestore", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True, text=True, env=full_env, timeout=120, check=False,
    )
