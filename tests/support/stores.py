"""Building and inspecting test stores: init with the test keys, snapshots of a tree, the CLI
and the writer child as real processes."""

from __future__ import annotations

from collections.abc import Sequence

import atexit
import contextlib
import io
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from securestore import AuditPolicy, SecureStore, StoreConfig, init_store, verify_store
from securestore.api.keys import SIGNING_KEY_ENV
from securestore.api.verify import VerifyOptions
from securestore.cli import main as cli_main
from securestore.audit.checkpoint import peek_note
from securestore.audit.keys import parse_seed
from securestore.core.policy import encode_name
from securestore.core.retention import DAY_MS
from tests.support.keys import KEYS, MASTER_KEY, SIGNING, SIGNING_KEY

REPO = Path(__file__).resolve().parents[2]
WRITER_CHILD = str(Path(__file__).resolve().parent / "writer_child.py")
# For tests that enumerate OS calls: epochs end by count (3 records, so ratchets and their
# checkpoints are among the faulted calls), never by the wall clock (which would make runs differ).
FAULT_CONFIG = StoreConfig(audit=AuditPolicy(epoch_records=3, epoch_seconds=86_400))
# The store-level audit trail: an audited rejection changes these files and nothing else.
STORE_TRAIL = frozenset({"audit/log.jsonl", "audit/checkpoints.jsonl", "audit/epoch.key"})
HISTORY_NOW = 1_800_000_000_000  # "now" for the ages store_with_history gives sessions


_SEEDS: dict[str, Path] = {}  # a PostgreSQL store's URL -> where its seed was exported


def seed_path(root: Path | str) -> Path:
    """Where make_store exported a store's verification seed (outside the root)."""
    if isinstance(root, str) and root in _SEEDS:
        return _SEEDS[root]
    root = Path(root)
    return root.parent / f"{root.name}.seed"


def make_pg_store(url: str, seed_dir: Path, config: StoreConfig | None = None, **kwargs: Any) -> str:
    """A store in the (set up) database at `url`, its seed exported into `seed_dir`."""
    _SEEDS[url] = seed_dir / "store.seed"
    init_store(url, config, seed_out=str(_SEEDS[url]), signing_key=SIGNING_KEY, **kwargs)
    return url


def make_store(root: Path, config: StoreConfig | None = None, **kwargs: Any) -> Path:
    init_store(root, config, seed_out=str(seed_path(root)), signing_key=SIGNING_KEY, **kwargs)
    return root


def seed_of(root: Path) -> bytes:
    return parse_seed(seed_path(root).read_bytes())[1]


def store_with_history(root: Path, ages_days: dict[str, float]) -> None:
    """One session per key, last written `days` before HISTORY_NOW (by the store's clock)."""
    for key, days in ages_days.items():
        moment = HISTORY_NOW - int(days * DAY_MS)
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, clock=lambda m=moment: m) as store:
            with store.create_session(key) as session:
                session.append_items([{"key": key}])


def tree_snapshot(path: Path, *, skip: frozenset[str] = frozenset()) -> dict[str, tuple[int, bytes | None]]:
    """Every entry under `path` but the directories named in `skip` (paths relative to it):
    (mode, content for files). Uses lstat: never follows links."""
    out: dict[str, tuple[int, bytes | None]] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [name for name in dirnames if str((Path(dirpath) / name).relative_to(path)) not in skip]
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            st = full.lstat()
            data = full.read_bytes() if stat.S_ISREG(st.st_mode) else None
            out[str(full.relative_to(path))] = (stat.S_IMODE(st.st_mode), data)
    return out


def all_bytes(path: Path | str) -> bytes:
    """Every byte a store keeps: each file's content (each row's, for a PostgreSQL store)."""
    if isinstance(path, str) and path.startswith("postgresql://"):
        from tests.support.pg_stores import all_stored_bytes
        return all_stored_bytes(path)  # each file whole: a value split across rows is still found
    return b"\n".join(data for _, data in tree_snapshot(Path(path)).values() if data)


def session_dir(root: Path, key: str) -> Path:
    return root / "sessions" / encode_name(key)


_BYTECODE: list[str] = []


def child_env() -> dict[str, str]:
    """The environment of a child interpreter: this one's, without SECURESTORE_ settings, with
    the repository first on the path, and a bytecode cache private to this test process. With
    PYTHONDONTWRITEBYTECODE set, every child would compile the package from source again
    (about 0.2 s of the 0.6 s a CLI call costs, over 200 calls in the fast loop)."""
    if not _BYTECODE:
        _BYTECODE.append(tempfile.mkdtemp(prefix="securestore-test-bytecode-"))  # 0700, unpredictable
        atexit.register(shutil.rmtree, _BYTECODE[0], True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURESTORE_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONPYCACHEPREFIX"] = _BYTECODE[0]
    # A store made without configured keys keeps them in a key directory: never the real home's.
    env["SECURESTORE_KEY_DIR"] = os.path.join(_BYTECODE[0], "keys")
    return env


def run_cli(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    full_env = child_env()
    full_env[SIGNING_KEY_ENV] = SIGNING_KEY
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "securestore", *args],
        input=stdin.decode() if stdin is not None else None,
        capture_output=True, text=True, env=full_env, timeout=120, check=False,
    )


def run_cli_here(*args: str, env: dict[str, str] | None = None,
                 stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """run_cli in this process: the same environment (child_env's, with the signing key), the
    same stdin, stdout and stderr captured, the exit code `main` returns. For tests whose point is
    what a command does, not the process boundary (`python -m securestore` itself, a fresh
    interpreter's first run and escapes on a real stdout keep run_cli)."""
    full_env = child_env()
    full_env[SIGNING_KEY_ENV] = SIGNING_KEY
    full_env.update(env or {})
    return cli_in_process(args, full_env, stdin)


def cli_in_process(args: Sequence[str], environ: dict[str, str],
                   stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`securestore.cli.main(args, environ)` with `stdin` given and its output captured."""
    out, err = io.StringIO(), io.StringIO()
    given = io.TextIOWrapper(io.BytesIO(stdin or b""), encoding="utf-8")
    saved = sys.stdin
    sys.stdin = given
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli_main(list(args), environ)
    finally:
        sys.stdin = saved
    return subprocess.CompletedProcess(["securestore", *args], code, out.getvalue(), err.getvalue())


def spawn_writer(root: Path, mode: str) -> subprocess.Popen[str]:
    """tests/support/writer_child.py on `root` in `mode` (see that file), with pipes."""
    return subprocess.Popen([sys.executable, WRITER_CHILD, str(root), MASTER_KEY, mode], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=child_env())


def drop_checkpoints_past(audit_dir: Path, size: int) -> None:
    """Forget checkpoints over more than `size` records: the state of a log whose writer
    crashed before sealing (a crash test that edits the log after a clean close needs this)."""
    path = audit_dir / "checkpoints.jsonl"
    kept = [line for line in path.read_bytes().splitlines(keepends=True)
            if peek_note(orjson.loads(line)["note"]).size <= size]
    path.write_bytes(b"".join(kept))


def open_with_keys(root: Path | str, **kwargs: Any) -> SecureStore:
    """A handle on a store made by `make_store`/`make_pg_store`: the tests' keys, a 5 s lock timeout."""
    return SecureStore(root, StoreConfig(lock_timeout_seconds=5.0), master_key=MASTER_KEY, environ=KEYS, **kwargs)


def verify_with_seed(root: Path | str) -> tuple[int, list[str]]:
    """`audit verify` with the store's seed and the tests' public key: its exit code, and the
    checks that failed or could not complete."""
    options = VerifyOptions(seed=parse_seed(seed_path(root).read_bytes())[1], public_key=SIGNING.verifier)
    with open_with_keys(root) as auditor:
        report = verify_store(auditor, options=options)
    return report.exit_code, [finding.check for finding in report.failures + report.incomplete]
