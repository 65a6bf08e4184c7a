"""Findings of the outside security review (issue 9) on the write path: crypto-shredding, caps on
every write path, audited rejections through a session handle, init never destroying data, and
configuration checked before anything is locked or written."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest

from tests.support.keys import KEYS, MASTER_KEY
from tests.support.stores import run_cli, seed_of, session_dir, tree_snapshot
from securestore import (
    ForbiddenKeyError,
    IntegrityError,
    InvalidValueError,
    KeyMaterialError,
    Limits,
    LimitExceededError,
    OperationalError,
    Secret,
    SecureStore,
    StoreConfig,
    init_store,
    verify_store,
)
from securestore.audit.chain import Rejected, parse_record
from securestore.core.secrets.vault import load_vault, parse_master_key, unseal, unwrap_data_key
from securestore.api.verify import VerifyOptions


def _small(root: Path, **limits: int) -> SecureStore:
    return SecureStore(root, StoreConfig(limits=Limits(**limits)), master_key=MASTER_KEY, environ=KEYS)


def _records(log: Path) -> list:  # noqa: ANN401
    return [parse_record(line) for line in log.read_bytes().splitlines()]


# -- crypto-shredding: the data key exists in exactly one file ----------------------------------

def test_the_vault_key_lives_only_in_vault_key_so_deleting_a_session_shreds_every_copy(
        store: SecureStore, root: Path, tmp_path: Path) -> None:
    with store.create_session("s") as session:
        with session.turn():
            session.slot("ext.a").put({"k": Secret("turn-secret-3")})
        # The vault's first entries came through a turn; these stay in the journal (no snapshot yet).
        session.append_items([{"role": "tool", "content": "first", "token": Secret("journal-secret-1")}])
        session.append_items([{"role": "tool", "api_key": "journal-secret-2"}])
    with store.create_session("t") as session:  # a vault created by a plain append, kept in the journal
        session.append_items([{"role": "tool", "token": Secret("journal-secret-4")}])
    shutil.copytree(session_dir(root, "t"), tmp_path / "backup-t")
    (tmp_path / "backup-t" / "vault.key").unlink()
    store.delete_session("t")
    directory = session_dir(root, "s")
    name = directory.name
    key_file = (directory / "vault.key").read_bytes()
    wrapped = orjson.loads(key_file)["wrapped"]
    backup = tmp_path / "backup"  # a backup that leaves out vault.key, as SECURITY.md advises
    shutil.copytree(directory, backup)
    (backup / "vault.key").unlink()
    master = parse_master_key(MASTER_KEY)
    data_key = unwrap_data_key(key_file, master, store.store_id, name)
    # Control: with vault.key the backed-up vault decrypts, so the assertions below can fail.
    vault = load_vault((backup / "vault.json").read_bytes(), data_key, store.store_id, name)
    assert {unseal(vault, data_key, ref) for ref in vault.entries} == {"journal-secret-1", "journal-secret-2",
                                                                        "turn-secret-3"}
    store.delete_session("s")
    copies = {path: path.read_bytes() for folder in (backup, tmp_path / "backup-t")
              for path in folder.rglob("*") if path.is_file()}
    assert (backup / "journal.log").read_bytes() and (tmp_path / "backup-t" / "journal.log").read_bytes()
    for path, data in copies.items():
        assert wrapped.encode() not in data and data_key not in data and data_key.hex().encode() not in data, path
        for line in data.splitlines():  # no other file carries a key that unwraps under the master key
            assert b'"wrapped"' not in line, path


# -- every cap on every write path ---------------------------------------------------------------

def test_the_vault_cap_holds_on_the_journal_path(root: Path) -> None:
    with _small(root, max_vault_bytes=2048) as store, store.create_session("s") as session:
        kept = []
        with pytest.raises(LimitExceededError, match="vault"):
            for index in range(100):
                session.append_items([{"password": f"distinct-secret-{index:04d}"}])
                kept.append(index)
        with pytest.raises(LimitExceededError, match="vault"):
            with session.turn():
                session.append_items([{"password": f"turn-secret-{index:04d}"} for index in range(40)])
        assert (session_dir(root, "s") / "vault.json").stat().st_size <= 2048
        assert len(session.items(resolve=True)) == len(kept)  # every accepted secret still resolves
    with _small(root, max_vault_bytes=2048) as store:
        assert verify_store(store).ok
        assert store.read_items("s", resolve=True)[-1] == {"password": f"distinct-secret-{kept[-1]:04d}"}


def test_the_slot_cap_holds_inside_a_turn(root: Path) -> None:
    with _small(root, max_slots_per_session=3) as store, store.create_session("s") as session:
        session.slot("a").put(1)
        with pytest.raises(LimitExceededError, match="limit 3"):
            with session.turn():
                for name in ("b", "c", "d", "e"):
                    session.slot(name).put(1)
        assert session.slots() == ["a"]  # the turn was discarded whole
        with session.turn():  # a removal in the same turn makes room
            session.slot("a").delete()
            for name in ("b", "c", "d"):
                session.slot(name).put(1)
        assert session.slots() == ["b", "c", "d"]
    with _small(root, max_slots_per_session=3) as store:
        assert verify_store(store).ok


def test_the_manifest_cap_holds_for_metadata_revisions(root: Path) -> None:
    with _small(root, max_manifest_bytes=4096) as store, store.create_session("s") as session:
        with pytest.raises(LimitExceededError, match="manifest"):
            for index in range(100):
                session.update_metadata(title=f"title {index} " + "x" * 200)
    assert (session_dir(root, "s") / "manifest.jsonl").stat().st_size <= 4096
    with _small(root, max_manifest_bytes=4096) as store:
        assert store.describe_session("s").revisions > 1 and verify_store(store).ok


# -- rejections through a session handle are audited ---------------------------------------------

def test_policy_rejections_through_the_session_api_are_audited_once(store: SecureStore, root: Path) -> None:
    with store.create_session("s") as session:
        with pytest.raises(ForbiddenKeyError):
            session.append_items([{"__proto__": {"admin": True}}])
        with pytest.raises(LimitExceededError):
            session.slot("ext.big").put("x" * (2 * 1024 * 1024))
        with pytest.raises(InvalidValueError):
            session.update_metadata(colour="blue")
    rejected = [r for r in _records(session_dir(root, "s") / "audit" / "log.jsonl") if isinstance(r, Rejected)]
    assert [(r.op, r.reason) for r in rejected] == [("session.append", "forbidden-key"),
                                                    ("slot.put", "limit-exceeded"), ("session.meta", "invalid-value")]
    store_log = root / "audit" / "log.jsonl"
    before = len([r for r in _records(store_log) if isinstance(r, Rejected)])
    with pytest.raises(ForbiddenKeyError):
        store.put("s", "slot", {"constructor": 1})  # through the one-call helper: once, in the store log
    after = len([r for r in _records(store_log) if isinstance(r, Rejected)])
    session_rejections = [r for r in _records(session_dir(root, "s") / "audit" / "log.jsonl") if isinstance(r, Rejected)]
    assert (after - before, len(session_rejections)) == (1, 3)
    assert verify_store(store).ok


# -- init never destroys data; a missing store.json is damage ---------------------------------------

def test_init_refuses_a_store_whose_identity_file_is_missing_and_deletes_nothing(root: Path, tmp_path: Path) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("s", "slot", {"keep": "me"})
    (root / "store.json").unlink()
    before = tree_snapshot(root)
    with pytest.raises(IntegrityError, match="store.json is missing"):
        SecureStore(root, master_key=MASTER_KEY, environ=KEYS)
    with pytest.raises(OperationalError, match="not empty") as refused:
        init_store(root, seed_out=str(tmp_path / "again.seed"), signing_key=KEYS["SECURESTORE_AUDIT_SIGNING_KEY"])
    assert refused.value.exit_code == 4 and "never deletes" in str(refused.value)
    assert tree_snapshot(root) == before
    env = {"SECURESTORE_ROOT": str(root)}
    verify = run_cli("audit", "verify", env=env)
    assert verify.returncode == 1 and "store.json is missing" in verify.stderr and "init`" not in verify.stderr.split(";")[0]
    init = run_cli("init", "--seed-out", str(tmp_path / "cli.seed"), env=env)
    assert init.returncode == 4 and "not empty" in init.stderr
    assert tree_snapshot(root) == before


def test_init_on_any_non_empty_directory_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "store"
    target.mkdir(mode=0o700)
    (target / "sessions").mkdir(mode=0o700)
    (target / "sessions" / "notes.txt").write_text("someone's data")
    before = tree_snapshot(target)
    with pytest.raises(OperationalError, match="not empty"):
        init_store(target, seed_out=str(tmp_path / "s.seed"), signing_key=KEYS["SECURESTORE_AUDIT_SIGNING_KEY"])
    assert tree_snapshot(target) == before and not (tmp_path / "s.seed").exists()


# -- configuration is checked before locks or writes ---------------------------------------------

def test_a_missing_signing_key_is_refused_before_anything_is_written(root: Path) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("s", "slot", 1)
    before = tree_snapshot(root)
    with SecureStore(root, master_key=MASTER_KEY, environ={}) as store:
        for write in (lambda: store.put("new", "slot", 1), lambda: store.put("s", "slot", 2),
                      lambda: store.delete_session("s"), lambda: store.open_session("s"), store.seal):
            with pytest.raises(KeyMaterialError, match="--signing-key-file") as info:
                write()
            assert "--signing-key " not in str(info.value)
    assert tree_snapshot(root) == before  # no marker, no lock record, no staging directory


def test_config_validation_errors_never_echo_the_value() -> None:
    secret = "ghp_" + "Z9" * 18
    with pytest.raises(ValueError) as info:
        StoreConfig(principal=secret)
    assert secret not in str(info.value)


# -- verify checks import records and the listing index ------------------------------------------

def test_an_edited_import_record_fails_verify(root: Path, tmp_path: Path) -> None:
    source = tmp_path / "sessions.json"
    source.write_text(json.dumps({"a": {"messages": [{"n": 1}]}, "b": {"messages": []}}))
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.migrate(str(source))
        assert verify_store(store).ok
    record = next((root / "migrations").iterdir())
    data = orjson.loads(record.read_bytes())
    data["sessions"] = data["sessions"][:1]
    record.write_bytes(orjson.dumps(data, option=orjson.OPT_SORT_KEYS))
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store, options=VerifyOptions(seed=seed_of(root)))
    assert report.exit_code == 1 and report.failures[0].check == "data-mismatch"
    assert f"migrations/{record.name}" in report.failures[0].log


def test_an_index_that_hides_a_live_session_is_flagged_and_rebuilt(store: SecureStore, root: Path) -> None:
    for key in ("alpha", "beta", "gamma"):
        store.put(key, "slot", 1)
    store.delete_session("gamma")
    assert verify_store(store).index == []
    alpha, beta = session_dir(root, "alpha").name, session_dir(root, "beta").name
    with (root / "index" / "updates.log").open("ab") as log:  # a planted tombstone hides alpha
        log.write(orjson.dumps({"d": 1, "n": alpha, "u": 1}, option=orjson.OPT_SORT_KEYS) + b"\n")
    (root / "index" / "entries" / f"{beta}.json").unlink()
    assert [s.key for s in store.list_sessions().sessions] == ["beta"]  # its line carries its summary
    report = verify_store(store)
    assert report.exit_code == 0  # derived data: flagged for rebuild, never called tampering
    assert any(alpha in line and "tombstone" in line for line in report.index)
    assert any(beta in line and "entry" in line for line in report.index)
    assert store.rebuild_index() == 2
    repaired = " | ".join(store.index_repaired)
    assert alpha in repaired and beta in repaired and "gamma" not in repaired
    assert verify_store(store).index == []
    assert sorted(s.key for s in store.list_sessions().sessions) == ["alpha", "beta"]
