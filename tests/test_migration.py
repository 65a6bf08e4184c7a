"""Legacy stores: what `migrate inspect` reads, accepts and refuses (it never writes)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import run_cli, tree_snapshot
from corpus import secret_corpus

from securestore import SecureStore
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
