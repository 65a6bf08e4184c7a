"""Legacy stores: what `migrate inspect` reads, accepts and refuses (it never writes)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, tree_snapshot, KEYS, make_store, STORE_TRAIL, SIGNING, seed_of, FAULT_CONFIG
from corpus import secret_corpus

from securestore import NotFoundError, PolicyError, SecureStore, SecureStoreError, verify_store
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from securestore.verification import VerifyOptions
from securestore.migration.inspect import inspect_source, load_plan
from securestore.migration.legacy import MAX_LEGACY_FILE_BYTES

LONG_KEY = "agent:main:" + "x" * 189  # 200 bytes: a hashed session name


def legacy_map() -> dict[str, object]:
    return {
        "agent:main:telegram:42": {
            "sessionId": "a1", "updatedAt": 1_763_000_000_000, "label": "Support chat", "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": secret_corpus()[0].message["content"]}],
        },
        " agent:main:telegram:42": {"sessionId": "a0", "updatedAt": "2025-01-01T00:00:00Z"},  # same key once trimmed
        LONG_KEY: {"sessionId": "b", "updatedAt": 1_700_000_000, "cwd": "/srv/app"},
        "agent:cli:7": {"sessionId": "c", "transcript": []},
    }


def write(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value))
    return path


def test_sessions_json_is_ready_with_counts_and_duplicates(store: SecureStore, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    before = tree_snapshot(tmp_path)
    result = inspect_source(store, str(source))
    assert result.state == "ready" and result.layout == "sessions.json"
    assert (result.sessions, result.items) == (3, 2)
    assert result.duplicates == [{"key": "agent:main:telegram:42", "kept": 'key "agent:main:telegram:42"',
                                  "dropped": 'key " agent:main:telegram:42"'}]
    assert tree_snapshot(tmp_path) == before  # inspect writes nothing
    _, plan = load_plan(store, str(source))
    main = next(s for s in plan.sessions if s.key == "agent:main:telegram:42")
    assert main.metadata == {"title": "Support chat", "model": "gpt-4o"} and main.extra == {"sessionId": "a1",
                                                                                            "updatedAt": 1_763_000_000_000}
    assert next(s for s in plan.sessions if s.key == LONG_KEY).updated_ms == 1_700_000_000_000


@pytest.mark.parametrize("where", ["top", "deep"])
def test_prototype_keys_are_refused(store: SecureStore, tmp_path: Path, where: str) -> None:
    data = legacy_map()
    if where == "top":
        data["__proto__"] = {"isAdmin": True}
    else:
        data["agent:cli:7"] = {"messages": [{"role": "user", "content": {"constructor": {"prototype": 1}}}]}
    result = inspect_source(store, str(write(tmp_path / "sessions.json", data)))
    assert result.state == "invalid"
    assert any("prototype" in r["why"] or "reserved" in r["why"] for r in result.rejected)


def test_directory_of_session_files(store: SecureStore, tmp_path: Path) -> None:
    legacy = tmp_path / "sessions"
    legacy.mkdir()
    write(legacy / "one.json", {"id": "cli-1", "updatedAt": 5, "messages": [{"role": "user", "content": "x"}]})
    write(legacy / "two.json", {"title": "second", "items": [{"n": 1}, {"n": 2}]})
    (legacy / "notes.txt").write_text("ignored")
    result = inspect_source(store, str(legacy))
    assert (result.state, result.layout, result.sessions, result.items) == ("ready", "directory", 2, 3)


def test_symlinked_sources_are_refused(store: SecureStore, tmp_path: Path) -> None:
    real = write(tmp_path / "real.json", legacy_map())
    (tmp_path / "sessions.json").symlink_to(real)
    result = inspect_source(store, str(tmp_path / "sessions.json"))
    assert result.state == "invalid" and "symbolic link" in (result.reason or "")
    legacy = tmp_path / "dir"
    legacy.mkdir()
    (legacy / "planted.json").symlink_to(real)
    assert "symbolic link" in (inspect_source(store, str(legacy)).reason or "")


def test_oversize_file_is_refused_before_it_is_read(store: SecureStore, tmp_path: Path) -> None:
    big = tmp_path / "sessions.json"
    with open(big, "wb") as handle:
        handle.truncate(MAX_LEGACY_FILE_BYTES + 1)  # sparse: the size check must come first
    result = inspect_source(store, str(big))
    assert result.state == "invalid" and f"exceeds the {MAX_LEGACY_FILE_BYTES}-byte cap" in (result.reason or "")


def test_invalid_json_missing_empty_and_foreign(store: SecureStore, tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"a": ')
    assert inspect_source(store, str(tmp_path / "bad.json")).state == "invalid"
    assert inspect_source(store, str(tmp_path / "nope.json")).state == "missing"
    assert inspect_source(store, str(write(tmp_path / "empty.json", {}))).state == "empty"
    foreign = write(tmp_path / "foreign.json", legacy_map())
    os.chown(foreign, 12345, -1)
    assert "owned by uid 12345" in (inspect_source(store, str(foreign)).reason or "")


def test_already_migrated(store: SecureStore, tmp_path: Path) -> None:
    write(tmp_path / "sessions.json.bak.1763000000000", legacy_map())
    result = inspect_source(store, str(tmp_path / "sessions.json"))
    assert result.state == "already_migrated" and result.backups == ["sessions.json.bak.1763000000000"]
    source = write(tmp_path / "other.json", {"agent:cli:7": {}})
    store.create_session("agent:cli:7").close()
    assert inspect_source(store, str(source)).state == "already_migrated"


def test_cli_inspect(root: Path, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    env = {"SECURESTORE_ROOT": str(root)}
    human = run_cli("migrate", "inspect", str(source), env=env)
    assert human.returncode == 0 and "state: ready" in human.stdout and "3 sessions" in human.stdout
    as_json = json.loads(run_cli("migrate", "inspect", str(source), "--json", env=env).stdout)
    assert as_json["state"] == "ready" and as_json["sessions"] == 3
    assert secret_corpus()[0].secret not in human.stdout + human.stderr


def _run_store(root: Path) -> SecureStore:
    from conftest import MASTER_KEY

    return SecureStore(root, master_key=MASTER_KEY, environ=KEYS)


def test_run_imports_redacts_keeps_a_backup_and_verifies(root: Path, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    secret = secret_corpus()[0].secret
    with _run_store(root) as store:
        report = store.migrate(str(source))
        assert sorted(report.sessions) == sorted(["agent:main:telegram:42", LONG_KEY, "agent:cli:7"])
        assert len(report.duplicates) == 1
        items = store.read_items("agent:main:telegram:42", resolve=True)
        assert items == legacy_map()["agent:main:telegram:42"]["messages"]  # type: ignore[index]
        assert store.describe_session("agent:main:telegram:42").metadata["title"] == "Support chat"
        assert store.get("agent:main:telegram:42", "legacy.entry")["sessionId"] == "a1"
        assert store.describe_session(LONG_KEY).metadata["workspace"] == "/srv/app"
        assert verify_store(store).ok
        # Imported session logs take their first key from the import's store-log intent.
        full = verify_store(store, options=VerifyOptions(seed=seed_of(root), public_key=SIGNING.verifier))
        assert full.exit_code == 0 and all(log.mac_checked for log in full.logs) and len(full.logs) == 4
        assert inspect_source(store, str(source)).state == "already_migrated"
    assert not source.exists() and (tmp_path / report.backup).exists()
    assert secret.encode() not in b"".join(p.read_bytes() for p in root.rglob("*") if p.is_file())


def test_run_refuses_invalid_sources_and_writes_nothing(root: Path, tmp_path: Path) -> None:
    data = legacy_map()
    data["agent:x"] = {"messages": [{"__class__": "pwned"}]}
    source = write(tmp_path / "sessions.json", data)
    with _run_store(root) as store:
        before = {k: v for k, v in tree_snapshot(root).items() if k not in STORE_TRAIL}
        with pytest.raises(PolicyError, match="refused: 1 legacy entries"):
            store.migrate(str(source))
        assert {k: v for k, v in tree_snapshot(root).items() if k not in STORE_TRAIL} == before
    assert source.exists()


def test_rollback_restores_the_source_and_moves_sessions_aside(root: Path, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    original = source.read_bytes()
    with _run_store(root) as store:
        store.migrate(str(source))
        moved = store.rollback_migration(str(source))
        assert len(moved) == 3 and store.scan_sessions()[0] == []
        assert verify_store(store).ok
        assert inspect_source(store, str(source)).state == "ready"
        with pytest.raises(NotFoundError):
            store.rollback_migration(str(source))
    assert source.read_bytes() == original
    assert len(list((root / "migrated-aside").iterdir())) == 1


@pytest.mark.parametrize("mode", ["eio", "crash"])
def test_fault_at_every_os_call_of_a_migration(tmp_path: Path, mode: str) -> None:
    from test_faults import Crash, _die

    base = tmp_path / "base"
    make_store(base, FAULT_CONFIG)
    names: list[str] = []
    clean_src = write(tmp_path / "clean.json", legacy_map())
    shutil.copytree(base, tmp_path / "clean")
    with _run_store(tmp_path / "clean") as store:
        store.ctx.os = instrumented(REAL_OS, lambda n, a: names.append(n))
        store.migrate(str(clean_src))
    keys = {"agent:main:telegram:42", LONG_KEY, "agent:cli:7"}
    for k in range(len(names)):
        root = tmp_path / f"run{k}"
        shutil.copytree(base, root)
        source = write(tmp_path / f"sessions{k}.json", legacy_map())
        state: dict[str, object] = {"n": 0, "dead": False}

        def hook(name: str, args: tuple[object, ...], state: dict[str, object] = state, k: int = k) -> None:
            if state["dead"] and name != "close":
                raise Crash()
            state["n"] = int(state["n"]) + 1  # type: ignore[call-overload]
            if state["n"] == k + 1:
                if mode == "crash":
                    state["dead"] = True
                    raise Crash()
                if name == "close":
                    os.close(int(args[0]))  # type: ignore[call-overload]
                raise OSError(errno.EIO, "injected")

        fds = set(os.listdir("/proc/self/fd"))
        try:
            with _run_store(root) as store:
                store.ctx.os = instrumented(REAL_OS, hook)
                store.migrate(str(source))
        except (SecureStoreError, Crash):
            pass
        if state["dead"]:
            _die(fds)
        with _run_store(root) as store:
            store.put("probe", "x", k)  # a store writer settles the migration
            present = {i.key for i in store.scan_sessions()[0]} - {"probe"}
            migrated = not source.exists()
            assert present == (keys if migrated else set()), f"fault at call {k + 1}: mixed state"
            assert migrated or source.read_bytes() == json.dumps(legacy_map()).encode()
            report = verify_store(store)
            assert report.ok, f"fault at call {k + 1}: {report.failures[0].describe()}"
        assert not [p for p in tree_snapshot(root) if ".staging-" in p]


def test_progress_is_shown_only_on_a_terminal() -> None:
    import io

    from securestore.cli import progress_printer

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert progress_printer(io.StringIO()) is None
    screen = Terminal()
    show = progress_printer(screen)
    assert show is not None
    show(1, 2)
    show(2, 2)
    assert screen.getvalue() == "\rimported 1/2 sessions\rimported 2/2 sessions\n"


def test_cli_run_and_rollback(root: Path, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    env = {"SECURESTORE_ROOT": str(root)}
    done = run_cli("migrate", "run", str(source), env=env)
    assert done.returncode == 0 and "imported 3 sessions" in done.stdout and "duplicate key" in done.stderr
    assert run_cli("migrate", "run", str(source), env=env).returncode == 4  # the source is gone now
    assert run_cli("migrate", "rollback", str(source), env=env).returncode == 0
    assert source.exists() and run_cli("audit", "verify", env=env).returncode == 0
