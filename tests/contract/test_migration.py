"""Legacy stores: what `migrate inspect` reads, accepts and refuses (it never writes)."""

from __future__ import annotations

import json
import os
import re
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.support.keys import KEYS, MASTER_KEY, SIGNING
from tests.support.raw_tree import raw_tree
from tests.support.stores import STORE_TRAIL, all_bytes, run_cli_here, seed_of, session_dir, tree_snapshot
from tests.support.corpus import secret_corpus
from tests.support.faults import Crash, die
from tests.support.legacy import LONG_KEY, legacy_map, write

from securestore import Limits, NotFoundError, PolicyError, SecureStore, SecureStoreError, StoreConfig, verify_store
from securestore.errors import IntegrityError, VersionConflictError
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from securestore.core.policy import encode_name
from securestore.api.verify import VerifyOptions
from securestore.api.verify import inspect_source
from securestore.backends.local.migrate_inspect import load_plan
from securestore.core.legacy import MAX_LEGACY_FILE_BYTES, map_document, session_in_map

pytestmark = pytest.mark.both_backends

def test_sessions_json_is_ready_with_counts_and_duplicates(store: SecureStore, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    before = tree_snapshot(tmp_path)
    result = inspect_source(store, str(source))
    assert result.state == "ready" and result.layout == "sessions.json"
    assert (result.sessions, result.items) == (3, 2)
    assert result.duplicates == [{"key": "agent:main:telegram:42", "kept": 'key "agent:main:telegram:42"',
                                  "dropped": 'key " agent:main:telegram:42"'}]
    assert tree_snapshot(tmp_path) == before  # inspect writes nothing
    _, plan = load_plan(store.backend, str(source))
    summary = next(s for s in plan.sessions if s.key == "agent:main:telegram:42")
    assert (summary.items, summary.problem) == (2, None)
    # The plan keeps summaries; the content is read again from the file when it is imported.
    main = session_in_map(map_document(source.read_bytes(), store.config.limits), summary, store.config.limits)
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
    human = run_cli_here("migrate", "inspect", str(source), env=env)
    assert human.returncode == 0 and "state: ready" in human.stdout and "3 sessions" in human.stdout
    as_json = json.loads(run_cli_here("migrate", "inspect", str(source), "--json", env=env).stdout)
    assert as_json["state"] == "ready" and as_json["sessions"] == 3
    assert secret_corpus()[0].secret not in human.stdout + human.stderr


def _run_store(root: Path) -> SecureStore:
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
    assert secret.encode() not in all_bytes(root)


def test_run_refuses_invalid_sources_and_writes_nothing(root: Path, tmp_path: Path) -> None:
    data = legacy_map()
    data["agent:x"] = {"messages": [{"__class__": "pwned"}]}
    source = write(tmp_path / "sessions.json", data)
    with _run_store(root) as store:
        before = {k: v for k, v in raw_tree(root).snapshot().items() if k not in STORE_TRAIL}
        with pytest.raises(PolicyError, match="refused: 1 legacy entries"):
            store.migrate(str(source))
        assert {k: v for k, v in raw_tree(root).snapshot().items() if k not in STORE_TRAIL} == before
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
    assert len(raw_tree(root).list("migrated-aside")) == 1


def test_a_rollback_leaves_the_listing_under_the_store_lock(root: Path, tmp_path: Path) -> None:
    """The sessions a rollback moves aside leave the listing inside its store change: a re-create
    of one of their keys (under the store lock too) is always listed after the tombstones."""
    from securestore.errors import LockHeldError

    source = write(tmp_path / "sessions.json", legacy_map())
    with _run_store(root) as store, \
            SecureStore(root, StoreConfig(lock_timeout_seconds=0.2), master_key=MASTER_KEY, environ=KEYS) as other:
        store.migrate(str(source))
        noted, tried = store.catalog.note_gone, []

        def note_gone(name: str, created_ms: int | None = None) -> None:
            try:
                other.create_session(f"meanwhile-{len(tried)}").close()
                tried.append("created meanwhile")
            except LockHeldError:
                tried.append("store lock held")
            noted(name, created_ms)

        store.catalog.note_gone = note_gone  # type: ignore[method-assign]
        moved = store.rollback_migration(str(source))
        assert tried == ["store lock held"] * len(moved) and len(moved) == 3
        assert store.list_sessions().sessions == []
        assert verify_store(store).ok


def test_progress_is_shown_only_on_a_terminal() -> None:
    import io

    from securestore.cli.commands.migrate import progress_printer

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
    done = run_cli_here("migrate", "run", str(source), env=env)
    assert done.returncode == 0 and "imported 3 sessions" in done.stdout and "duplicate key" in done.stderr
    assert run_cli_here("migrate", "run", str(source), env=env).returncode == 4  # the source is gone now
    assert run_cli_here("migrate", "rollback", str(source), env=env).returncode == 0
    assert source.exists() and run_cli_here("audit", "verify", env=env).returncode == 0


# -- what inspect and import report never shows a credential (review finding M3) -----------------
def _planted() -> dict[str, str]:
    return {p.name: p.secret for p in secret_corpus()}


def _leaks(text: str, secrets: list[str]) -> list[str]:
    """Planted secrets of which any 16 consecutive characters appear (a cut secret leaks too)."""
    return [s for s in secrets if any(s[i : i + 16] in text for i in range(len(s) - 15))]


def _reference(store: SecureStore, secret: str) -> str:
    from securestore.core.secrets.vault import fingerprint

    return f"[secret:redacted:{fingerprint(store.backend.env.fingerprint_key, secret)}]"


def _secret_sources(tmp_path: Path) -> tuple[list[Path], list[str], list[str]]:
    """Legacy sources with secrets where reports name things: (sources, secrets, the secrets
    that must show as references)."""
    s = _planted()
    as_map = write(tmp_path / "sessions.json", {
        "agent:" + "x" * 40 + s["gh-ghp"]: {"messages": []},  # a key cut at 60 chars would cut the token
        "agent:nested": {"messages": [{"note-" + s["openai-proj"]: {"__proto__": 1}}]},  # the path names the key
        "agent:precheck": {"messages": [{"role": "user", s["anthropic"]: "x"}]},  # refused by precheck
        "agent:fine": {"messages": [{"role": "user", "content": "hello"}]},
    })
    directory = tmp_path / "dir"
    directory.mkdir()
    (directory / f"{s['stripe-live']}.json").write_text('{"id": ')  # invalid JSON: its name is reported
    write(directory / f"{s['slack-bot']}.json", {"id": "agent:dup", "updatedAt": 2})  # duplicates: both
    write(directory / "b.json", {"id": "agent:dup", "updatedAt": 1})  # names are reported
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / f"{s['google']}.json").symlink_to(as_map)  # the reason names the file
    write(tmp_path / f"{s['openai-svc']}.json.bak.1763000000000", {})  # the path and its backup's name
    shown = [s["gh-ghp"], s["stripe-live"], s["slack-bot"], s["google"], s["openai-svc"]]
    return ([as_map, directory, linked, tmp_path / f"{s['openai-svc']}.json"], [*shown, s["openai-proj"], s["anthropic"]],
            shown)


def test_inspect_never_shows_a_secret_from_keys_file_names_or_paths(store: SecureStore, root: Path,
                                                                     tmp_path: Path) -> None:
    sources, secrets, shown = _secret_sources(tmp_path)
    outputs = []
    for source in sources:
        result = inspect_source(store, str(source))
        assert result.state in {"invalid", "already_migrated"}
        outputs.append(json.dumps(result.to_json()))
        env = {"SECURESTORE_ROOT": str(root)}
        for extra in ((), ("--json",)):
            cli = run_cli_here("migrate", "inspect", str(source), *extra, env=env)
            assert cli.returncode == 0, cli.stderr
            outputs.append(cli.stdout + cli.stderr)
    everything = "\n".join(outputs)
    assert _leaks(everything, secrets) == []
    for secret in shown:  # references, keyed like stored data: equal values stay correlatable
        assert _reference(store, secret) in everything
    nested = json.loads(outputs[0])["rejected"]
    assert any("[?]" in r["why"] and "prototype" in r["why"] for r in nested)  # the path, without the key
    assert any("credential" in r["why"] for r in nested if r["source"] == 'key "agent:precheck"')


def test_import_errors_and_duplicates_never_show_a_secret(root: Path, tmp_path: Path) -> None:
    sources, secrets, _ = _secret_sources(tmp_path)
    s = _planted()
    only_precheck = write(tmp_path / "precheck.json", {"agent:p": {"messages": [{"role": "user", s["anthropic"]: 1}]}})
    env = {"SECURESTORE_ROOT": str(root)}
    texts = []
    with _run_store(root) as store:
        for source in [*sources, only_precheck]:
            with pytest.raises(SecureStoreError) as caught:
                store.migrate(str(source))
            texts.append(str(caught.value))
        assert texts[0].startswith("refused: 2 legacy entries fail policy; first: key ")
        assert _reference(store, s["gh-ghp"]) in texts[0]
        assert "legacy key \"agent:p\": transcript item 0: value rejected at $[?]" in texts[-1]
        reference = _reference(store, s["slack-bot"])
    for source in [*sources, only_precheck]:
        cli = run_cli_here("migrate", "run", str(source), env=env)
        assert cli.returncode != 0
        texts.append(cli.stdout + cli.stderr)
    (tmp_path / "dir" / f"{s['stripe-live']}.json").unlink()  # now it imports, with a duplicate
    done = run_cli_here("migrate", "run", str(tmp_path / "dir"), env=env)
    assert done.returncode == 0, done.stderr
    assert f"kept {reference}.json, dropped b.json" in done.stderr
    texts.append(done.stdout + done.stderr)
    assert _leaks("\n".join(texts), secrets) == []


# -- a directory import holds one file at a time (review finding M9) ----------------------------
def _peak(action: Callable[[], object]) -> int:
    tracemalloc.start()
    try:
        action()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_inspect_of_many_large_files_holds_one_at_a_time(store: SecureStore, tmp_path: Path) -> None:
    """Sparse files of NULs at the per-file cap (no disk cost; invalid JSON). Before the fix the
    peak was (files + 1) x the file size (320 MiB for these 4); now it is 2 x (bytes and text)."""
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for index in range(4):
        with open(legacy / f"s{index}.json", "wb") as handle:
            handle.truncate(MAX_LEGACY_FILE_BYTES)
    result: list[Any] = []
    peak = _peak(lambda: result.append(inspect_source(store, str(legacy))))
    assert result[0].state == "invalid" and len(result[0].rejected) == 4
    assert all("not valid JSON" in r["why"] for r in result[0].rejected)
    assert peak < 3 * MAX_LEGACY_FILE_BYTES, f"peak {peak >> 20} MiB for 4 files of {MAX_LEGACY_FILE_BYTES >> 20} MiB"


def test_import_of_large_valid_files_holds_one_at_a_time(root: Path, tmp_path: Path) -> None:
    """Valid files (one small entry padded with JSON whitespace): inspect and run each hold
    one file at a time (before the fix: 5 x the file size for these 4)."""
    size = 16 * 1024 * 1024
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    for index in range(4):
        entry = json.dumps({"id": f"agent:{index}", "messages": [{"role": "user", "content": "hi"}]}).encode()
        (legacy / f"s{index}.json").write_bytes(entry + b" " * (size - len(entry)))
    with _run_store(root) as store:
        result: list[Any] = []
        inspect_peak = _peak(lambda: result.append(inspect_source(store, str(legacy))))
        assert (result[0].state, result[0].sessions) == ("ready", 4)
        run_peak = _peak(lambda: result.append(store.migrate(str(legacy))))
        assert len(result[1].sessions) == 4 and store.read_items("agent:3") == [{"role": "user", "content": "hi"}]
    for peak in (inspect_peak, run_peak):
        assert peak < 3 * size, f"peak {peak >> 20} MiB for 4 files of {size >> 20} MiB"


def _two_files(tmp_path: Path) -> Path:
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    write(legacy / "a.json", {"id": "agent:a", "messages": []})
    write(legacy / "b.json", {"id": "agent:b", "messages": [{"role": "user", "content": "checked"}]})
    return legacy


def _change(path: Path) -> None:
    """Valid content that was never checked: only the file's stamp can tell."""
    write(path, {"id": path.stem and "agent:" + path.stem, "messages": [{"role": "user", "content": "not checked!"}]})


def test_run_refuses_a_file_changed_between_its_check_and_the_import(root: Path, tmp_path: Path) -> None:
    legacy = _two_files(tmp_path)
    opened: list[str] = []

    def hook(name: str, args: tuple[object, ...]) -> None:
        if name == "open" and args[0] == "a.json":
            opened.append("a.json")
            if len(opened) == 2:  # 1: read while planning, 2: the stamp check before anything is written
                _change(legacy / "a.json")

    outside_audit = lambda: {k: v for k, v in raw_tree(root).snapshot().items() if not k.startswith("audit")}  # noqa: E731
    with _run_store(root) as store:
        before = outside_audit()
        store.ctx.os = instrumented(REAL_OS, hook)
        with pytest.raises(VersionConflictError, match="a.json: it changed since it was checked"):
            store.migrate(str(legacy))
        store.ctx.os = REAL_OS
        assert outside_audit() == before
        assert b"migrate.run" not in raw_tree(root).read("audit/log.jsonl")  # not even attempted


def test_run_refuses_a_file_changed_while_the_import_runs(root: Path, tmp_path: Path) -> None:
    legacy = _two_files(tmp_path)
    with _run_store(root) as store:
        with pytest.raises(VersionConflictError, match="b.json: it changed since it was checked"):
            store.migrate(str(legacy), progress=lambda done, total: _change(legacy / "b.json") if done == 1 else None)
        assert store.scan_sessions()[0] == [] and verify_store(store).ok  # the partial import was undone
    assert (legacy / "b.json").exists() and not [p for p in raw_tree(root).snapshot() if ".staging-" in p]


# -- caps of the ordinary write path apply to an import, before anything is written (finding L) --
@pytest.mark.parametrize("case", ["items", "value", "metadata"])
def test_write_path_caps_refuse_an_import_before_anything_is_written(root: Path, tmp_path: Path, case: str) -> None:
    akia = _planted()["aws-akia"]
    limits, entry, why = {
        "items": (Limits(max_items=3), {"messages": [{"n": n} for n in range(4)]},
                  "4 transcript items exceed the cap of 3 items per session (Limits.max_items)"),
        # ~600 bytes by the policy's first estimate, over 1200 as stored JSON (each quote escaped)
        "value": (Limits(max_value_bytes=1024), {"messages": [{"text": '"' * 600}]},
                  "transcript item 0: 1211 bytes after redaction exceed the 1024-byte value cap"),
        # 4096 characters as written; the reference that replaces the key id makes it longer
        "metadata": (Limits(), {"title": "x" * 4075 + " " + akia}, "metadata field title: String should have at most"),
    }[case]
    source = write(tmp_path / "sessions.json", {"agent:fine": {"messages": []}, "agent:big": entry})
    outside_audit = lambda: {k: v for k, v in raw_tree(root).snapshot().items() if not k.startswith("audit")}  # noqa: E731
    with SecureStore(root, StoreConfig(limits=limits), master_key=MASTER_KEY, environ=KEYS) as store:
        inspection = inspect_source(store, str(source))
        assert inspection.state == "invalid"
        assert [r["source"] for r in inspection.rejected] == ['key "agent:big"']  # inspect says so too
        assert why in inspection.rejected[0]["why"]
        before = outside_audit()
        with pytest.raises(PolicyError, match=f'^legacy key "agent:big": {re.escape(why)}'):
            store.migrate(str(source))
        assert outside_audit() == before and store.scan_sessions()[0] == []
    assert b"migrate.run" not in raw_tree(root).read("audit/log.jsonl")  # refused before the intent
    assert source.exists()


# -- migration records are verified against the store log before they are acted on (finding M7) --
def _record_file(root: Path | str) -> str:
    (record,) = raw_tree(root).list("migrations")
    return f"migrations/{record}"


def _edit_record(root: Path | str, path: str, **changes: object) -> None:
    raw = raw_tree(root)
    record = json.loads(raw.read(path))
    record.update(changes)
    raw.write(path, json.dumps(record, sort_keys=True, separators=(",", ":")).encode())


def _crash_at_rename_of(name: str, root: Path, action: Callable[[SecureStore], object]) -> None:
    """Run `action`, and die (no further OS call reaches the disk) when it renames `name`."""
    state = {"dead": False}

    def hook(call: str, args: tuple[object, ...]) -> None:
        if state["dead"] and call != "close":
            raise Crash()
        if call == "replace" and args[0] == name:
            state["dead"] = True
            raise Crash()

    fds = set(os.listdir("/proc/self/fd"))
    try:
        with _run_store(root) as store:
            store.ctx.os = instrumented(REAL_OS, hook)
            action(store)
    except Crash:
        pass
    assert state["dead"]
    die(fds)


def test_rollback_refuses_an_edited_record_and_changes_nothing(root: Path, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    with _run_store(root) as store:
        store.migrate(str(source))
        store.put("unrelated", "notes", "keep me")
    _edit_record(root, _record_file(root), sessions=[encode_name("unrelated")])  # out of band
    before = {k: v for k, v in raw_tree(root).snapshot().items() if not k.startswith("audit")}
    with _run_store(root) as store:
        with pytest.raises(IntegrityError, match=r"^refused: migration record migrations/[0-9a-f]{16}\.json does not "
                                                 r"match the store audit trail .*; nothing was changed"):
            store.rollback_migration(str(source))
        assert store.get("unrelated", "notes") == "keep me" and len(store.scan_sessions()[0]) == 4
    assert {k: v for k, v in raw_tree(root).snapshot().items() if not k.startswith("audit")} == before
    assert not source.exists()
    refused = run_cli_here("migrate", "rollback", str(source), env={"SECURESTORE_ROOT": str(root)})
    assert refused.returncode == 1 and "does not match the store audit trail" in refused.stderr


@pytest.mark.fs_only  # the crash is injected at an OS rename, which a PostgreSQL store never makes
def test_recovery_of_a_rollback_refuses_an_edited_record(root: Path, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    with _run_store(root) as store:
        store.migrate(str(source))
        store.put("unrelated", "notes", "keep me")
    first = sorted(json.loads(raw_tree(root).read(_record_file(root)))["sessions"])[0]
    _crash_at_rename_of(first, root, lambda store: store.rollback_migration(str(source)))  # a dangling rollback
    _edit_record(root, _record_file(root), sessions=[encode_name("unrelated")])
    with _run_store(root) as store, pytest.raises(IntegrityError, match="does not match the store audit trail"):
        store.put("probe", "x", 1)  # the next writer settles the rollback: not with this record
    assert session_dir(root, "unrelated").is_dir()
    assert not list((root / "migrated-aside").rglob(encode_name("unrelated")))


@pytest.mark.fs_only  # the crash is injected at an OS rename, which a PostgreSQL store never makes
def test_recovery_of_an_import_refuses_an_edited_record(root: Path, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    victim = write(tmp_path / "victim.json", {"mine": True})
    _crash_at_rename_of(encode_name("agent:cli:7"), root, lambda store: store.migrate(str(source)))  # mid-publish
    # Edited so that undoing the import would "restore" an unrelated file under another name.
    _edit_record(root, _record_file(root), source=str(tmp_path / "elsewhere.json"), backup="victim.json")
    with _run_store(root) as store, pytest.raises(IntegrityError, match="does not match the store audit trail"):
        store.put("probe", "x", 1)
    assert victim.exists() and not (tmp_path / "elsewhere.json").exists() and source.exists()


@pytest.mark.fs_only  # the crash is injected at an OS rename, which a PostgreSQL store never makes
def test_an_import_undone_by_recovery_leaves_a_void_record_that_rollback_skips(root: Path, tmp_path: Path) -> None:
    source = write(tmp_path / "sessions.json", legacy_map())
    _crash_at_rename_of(encode_name("agent:cli:7"), root, lambda store: store.migrate(str(source)))
    with _run_store(root) as store:
        store.put("probe", "x", 1)  # undoes the partial import; its record stays behind, never committed
        assert {s.key for s in store.scan_sessions()[0]} == {"probe"}
        with pytest.raises(NotFoundError):
            store.rollback_migration(str(source))  # nothing was imported: nothing to roll back
        store.migrate(str(source))
        assert len(store.rollback_migration(str(source))) == 3
        assert verify_store(store).ok
    assert source.exists() and len(raw_tree(root).list("migrations")) == 2
