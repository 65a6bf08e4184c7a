"""Forward integrity, checkpoints, proofs and anchors: the pieces, each against its failure."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.keys import KEYS, MASTER_KEY, SIGNING, SIGNING_KEY
from tests.support.stores import (
    WRITER_CHILD,
    all_bytes,
    make_store,
    session_dir,
    run_cli_here,
    seed_of,
    seed_path,
)
from tests.support.raw_tree import raw_tree, session_path
from securestore.core.policy import encode_name
from securestore import AuditPolicy, KeyMaterialError, SecureStore, StoreConfig, init_store, verify_store
from securestore.audit.merkle import (
    RangeHasher,
    leaf_hash,
    ranges_for_consistency,
    ranges_for_inclusion,
    root_of,
    verify_consistency,
    verify_inclusion,
)
from securestore.api.verify import VerifyOptions
from securestore.audit.checkpoint import peek_note
from securestore.fs.osapi import REAL_OS, instrumented

pytestmark = pytest.mark.both_backends

CT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
SMALL_EPOCHS = StoreConfig(audit=AuditPolicy(epoch_records=4))


def _proof(ranges: list[tuple[int, int]], leaves: list[bytes]) -> list[bytes]:
    hasher = RangeHasher(ranges)
    for leaf in leaves:
        hasher.add(leaf)
    return hasher.result()


def test_merkle_matches_the_rfc_6962_reference_vectors() -> None:
    leaves = [leaf_hash(bytes.fromhex(h)) for h in CT_LEAVES]
    assert [root_of(leaves[:n]).hex() for n in range(9)] == CT_ROOTS
    assert [p.hex()[:8] for p in _proof(ranges_for_inclusion(0, 8), leaves)] == ["96a296d2", "5f083f0a", "6b47aaf2"]
    assert [p.hex()[:8] for p in _proof(ranges_for_inclusion(5, 8), leaves)] == ["bc1a0643", "ca854ea1", "d37ee418"]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 70), data=st.data())
def test_every_proof_verifies_and_a_changed_one_does_not(size: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(size)]
    root = root_of(leaves)
    index = data.draw(st.integers(0, size - 1))
    path = _proof(ranges_for_inclusion(index, size), leaves)
    assert verify_inclusion(index, size, leaves[index], path, root)
    assert not verify_inclusion(index, size, leaf_hash(b"other"), path, root)
    old = data.draw(st.integers(1, size))
    consistency = _proof(ranges_for_consistency(old, size), leaves)
    assert verify_consistency(old, size, root_of(leaves[:old]), root, consistency)
    if old < size:
        assert not verify_consistency(old, size, root_of(leaves[1 : old + 1]), root, consistency)
    if path:
        bad = [bytes(32)] + path[1:]
        assert not verify_inclusion(index, size, leaves[index], bad, root)


def _fill(root: Path | str, config: StoreConfig = SMALL_EPOCHS, count: int = 12) -> None:
    with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as store:
        for i in range(count):
            store.put("sess", "slot", {"i": i})


def _full_verify(root: Path | str, **options: object):  # noqa: ANN202
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        return verify_store(store, options=VerifyOptions(seed=seed_of(root), public_key=SIGNING.verifier,
                                                         **options))  # type: ignore[arg-type]


def test_the_seed_is_exported_once_and_never_kept_in_the_store(make_root, tmp_path: Path,  # noqa: ANN001
                                                                backend: str) -> None:
    root = make_root("store", SMALL_EPOCHS)
    _fill(root)
    seed = seed_of(root)
    assert oct(seed_path(root).stat().st_mode & 0o777) == "0o600"
    stored = all_bytes(root)
    assert seed.hex().encode() not in stored and seed not in stored
    assert _full_verify(root).exit_code == 0
    if backend == "fs":  # only a directory can hold the seed file itself
        with pytest.raises(KeyMaterialError, match="outside the store root"):
            init_store(tmp_path / "other", seed_out=str(tmp_path / "other" / "seed"), signing_key=SIGNING_KEY)


def test_a_ratchet_leaves_no_trace_of_the_previous_key(make_root) -> None:  # noqa: ANN001
    root = make_root("store", SMALL_EPOCHS)
    _fill(root, count=1)
    key_file = f"{session_path('sess')}/audit/epoch.key"
    before = orjson.loads(raw_tree(root).read(key_file))
    _fill(root, count=6)
    assert orjson.loads(raw_tree(root).read(key_file))["epoch"] > before["epoch"]
    assert before["chain"].encode() not in all_bytes(root)


@pytest.mark.fs_only  # a handle on the old inode sees the wipe: disk only (a row is replaced whole)
def test_a_ratchet_wipes_the_previous_key_even_through_an_open_handle(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store", SMALL_EPOCHS)
    _fill(root, count=1)
    key_file = session_dir(root, "sess") / "audit" / "epoch.key"
    before = orjson.loads(key_file.read_bytes())
    with open(key_file, "rb") as old_inode:  # noqa: PTH123 - a handle the rename does not invalidate
        _fill(root, count=6)
        after = orjson.loads(key_file.read_bytes())
        assert after["epoch"] > before["epoch"]
        assert old_inode.read() == b"\0" * len(orjson.dumps(before)) + b"\0"  # overwritten in place
    assert before["chain"].encode() not in all_bytes(root)


def test_the_wrong_seed_fails_the_mac_check(make_root) -> None:  # noqa: ANN001
    root = make_root("store", SMALL_EPOCHS)
    _fill(root)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store, options=VerifyOptions(seed=bytes(32)))
    assert report.exit_code == 1 and report.failures[0].check == "mac" and report.failures[0].seq == 0


def test_writes_without_the_signing_key_are_refused_before_anything_is_written(root: Path) -> None:
    before = all_bytes(root)
    with SecureStore(root, master_key=MASTER_KEY, environ={}) as store, pytest.raises(KeyMaterialError):
        store.put("sess", "slot", 1)
    assert all_bytes(root) == before


def test_every_epoch_boundary_is_signed_and_a_missing_checkpoint_is_located(make_root) -> None:  # noqa: ANN001
    root = make_root("store", SMALL_EPOCHS)
    _fill(root)
    report = _full_verify(root)
    session_log = next(log for log in report.logs if log.label.startswith("sessions/"))
    assert report.exit_code == 0 and session_log.epochs >= 5 and session_log.unsealed == 0
    raw, checkpoints = raw_tree(root), f"{session_path('sess')}/audit/checkpoints.jsonl"
    lines = raw.lines(checkpoints)
    sizes = [int(orjson.loads(line)["note"].split("\n")[1]) for line in lines]
    boundary = sizes.index(4)  # epochs of 4 records: epoch 1 starts at seq 4, sealed at size 4
    raw.write(checkpoints, b"".join(lines[:boundary] + lines[boundary + 1 :]))
    failure = _full_verify(root).failures[0]
    assert (failure.check, failure.seq, failure.line) == ("checkpoint", 4, 5)
    assert failure.log == f"{session_path('sess')}/audit/log.jsonl"


def test_a_dangling_intent_exits_6_and_a_cut_tail_against_an_anchor_exits_5(make_root) -> None:  # noqa: ANN001
    root = make_root("store")
    _fill(root, StoreConfig(), count=3)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        from securestore.api.verify import make_anchor

        anchor = make_anchor(store)  # seals: the store log also commits the session's head
        with store.open_session("sess") as session:  # one more write after the anchor
            session.append_items([{"after": "anchor"}])
    raw, audit = raw_tree(root), f"{session_path('sess')}/audit"
    log = f"{audit}/log.jsonl"
    lines = raw.lines(log)
    # A crash between the last intent and its outcome: the intent dangles, nothing sealed after it.
    raw.write(log, b"".join(lines[:-1]))
    raw.drop_checkpoints_past(audit, len(lines) - 1)
    report = _full_verify(root)
    assert report.exit_code == 6 and report.incomplete[0].check == "dangling-intent"
    assert _full_verify(root, anchor=anchor).exit_code == 6  # it still extends the anchored checkpoint
    # Cut back before the anchored checkpoint: a truncation, against the anchor.
    raw.write(log, b"".join(lines[:3]))
    raw.drop_checkpoints_past(audit, 3)
    report = _full_verify(root, anchor=anchor)
    assert report.exit_code == 5 and report.failures[0].category == "truncated"


def _durability_events(store: SecureStore, events: list[tuple[str, str, bytes]]) -> None:
    """Record each write, fsync and replace as (call, file name, bytes written)."""

    def hook(name: str, args: tuple[object, ...]) -> None:
        if name in ("write", "fsync") and isinstance(args[0], int):
            path = os.readlink(f"/proc/self/fd/{args[0]}")
            data = args[1] if name == "write" else b""
            events.append((name, path.rsplit("/", 1)[-1], bytes(data)))  # type: ignore[arg-type]
        elif name == "replace":
            events.append((name, str(args[1]), b""))

    store.ctx.os = instrumented(REAL_OS, hook)


@pytest.mark.fs_only  # the order of write, fsync and replace OS calls
def test_a_checkpoint_covers_fsynced_records_and_only_closing_ones_are_fsynced(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store", SMALL_EPOCHS)
    events: list[tuple[str, str, bytes]] = []
    with SecureStore(root, SMALL_EPOCHS, master_key=MASTER_KEY, environ=KEYS) as store:
        store.create_session("sess").close()
        _durability_events(store, events)
        for i in range(6):  # epochs of 4 records: a ratchet, and a closing checkpoint, on the way
            store.put("sess", "slot", {"i": i})
        store.ctx.os = REAL_OS
    ordinary = closing = 0
    for at, (call, name, data) in enumerate(events):
        if call != "write" or name != "checkpoints.jsonl":
            continue
        before = [(c, n) for c, n, _ in events[:at] if n == "log.jsonl"]
        # everything the log holds is durable before a checkpoint over it is written
        assert before and before[-1] == ("fsync", "log.jsonl"), f"checkpoint written at event {at} over unsynced records"
        after = [(c, n) for c, n, _ in events[at + 1 :]]
        if peek_note(orjson.loads(data)["note"]).closes:
            closing += 1
            # fsynced before the ending epoch's key is replaced (destroyed)
            key_replaced = after.index(("replace", "epoch.key"))
            assert ("fsync", "checkpoints.jsonl") in after[:key_replaced]
        else:
            ordinary += 1
            # not fsynced by itself: the next fsync of the file, if any, comes with a later checkpoint
            next_write = after.index(("write", "checkpoints.jsonl")) if ("write", "checkpoints.jsonl") in after \
                else len(after)
            assert ("fsync", "checkpoints.jsonl") not in after[:next_write]
    assert ordinary >= 4 and closing >= 2
    assert _full_verify(root).exit_code == 0


def test_unsealed_tail_beyond_policy_exits_6(make_root) -> None:  # noqa: ANN001
    root = make_root("store")
    _fill(root, StoreConfig(), count=3)
    raw_tree(root).drop_checkpoints_past(f"{session_path('sess')}/audit", 1)  # as if the writer died unsealed
    assert _full_verify(root).exit_code == 0  # within one epoch (1024 records) of unsealed records
    report = _full_verify(root, max_unsealed=2)
    assert report.exit_code == 6 and report.incomplete[0].check == "unsealed"
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        sealed = store.seal()  # the idle heartbeat
    assert sealed.sealed == [encode_name("sess")]
    assert _full_verify(root, max_unsealed=0).exit_code == 0


def test_the_heartbeat_skips_a_session_a_live_writer_holds(root: Path | str) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("s", "slot", 1)
    child = subprocess.Popen([sys.executable, WRITER_CHILD, str(root), MASTER_KEY,
                              "hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().startswith("ready")
        raw_tree(root).drop_checkpoints_past(f"{session_path('s')}/audit", 1)
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            report = store.seal()
        assert report.busy == [encode_name("s")] and not report.sealed
    finally:
        child.communicate("")


def test_cli_proofs_check_without_the_store_and_fail_when_altered(make_root, tmp_path: Path) -> None:  # noqa: ANN001
    root = make_root("store", init=False)
    env = {"SECURESTORE_ROOT": str(root), "SECURESTORE_MASTER_KEY": MASTER_KEY}
    assert run_cli_here("init", "--seed-out", str(tmp_path / "seed"), env=env).returncode == 0
    for i in range(5):
        assert run_cli_here("session", "append", "chat", json.dumps({"n": i}), env=env).returncode == 0
    public = tmp_path / "audit.pub"
    public.write_text(run_cli_here("audit", "public-key", env=env).stdout)
    anchor = tmp_path / "anchor.json"
    assert run_cli_here("audit", "anchor", "--out", str(anchor), env=env).returncode == 0
    assert run_cli_here("session", "append", "chat", '{"n": 9}', env=env).returncode == 0
    proof = tmp_path / "inclusion.json"
    assert run_cli_here("audit", "prove", "chat", "3", "--out", str(proof), env=env).returncode == 0
    elsewhere = {"SECURESTORE_ROOT": str(tmp_path / "absent")}
    ok = run_cli_here("audit", "check-proof", str(proof), "--public-key", str(public), env=elsewhere)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: record seq 3")
    forged = json.loads(proof.read_text())
    forged["record"] = forged["record"].replace('"epoch":0', '"epoch":0 ')
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps(forged))
    assert run_cli_here("audit", "check-proof", str(tampered), "--public-key", str(public), env=elsewhere).returncode == 1
    anchored_size = json.loads(anchor.read_text())["logs"][1]["note"].split("\n")[1]
    consistency = tmp_path / "consistency.json"
    assert run_cli_here("audit", "consistency", "chat", anchored_size, "--out", str(consistency), env=env).returncode == 0
    assert run_cli_here("audit", "check-proof", str(consistency), "--anchor", str(anchor), env=elsewhere).returncode == 0
    seed = ["--seed", str(tmp_path / "seed"), "--public-key", str(public), "--anchor", str(anchor)]
    verified = run_cli_here("audit", "verify", "--json", *seed, env=env)
    body = json.loads(verified.stdout)
    assert verified.returncode == 0 and body["exit_code"] == 0 and all(log["mac_checked"] for log in body["logs"])
    raw, audit = raw_tree(root), f"{session_path('chat')}/audit"
    raw.write(f"{audit}/log.jsonl", b"".join(raw.lines(f"{audit}/log.jsonl")[:3]))
    raw.write(f"{audit}/checkpoints.jsonl", b"".join(raw.lines(f"{audit}/checkpoints.jsonl")[:1]))
    cut = run_cli_here("audit", "verify", *seed, env=env)
    assert cut.returncode in {1, 5} and "TRUNCATED" in cut.stdout or "TAMPERED" in cut.stdout
    assert run_cli_here("audit", "prove", "chat", "99", env=env).returncode == 2


@pytest.mark.fs_only  # tests/support/attacks.py builds its scenarios as directories (copies of a store tree)
def test_the_corpus_module_generates_valid_stores(tmp_path: Path) -> None:
    from tests.support.attacks import build_scenario, verify

    scenario = build_scenario(tmp_path, random.Random(5))
    code, first = verify(scenario.root, scenario)
    assert code == 0, first
    assert os.path.isdir(scenario.older)


def test_an_anchor_of_a_deleted_session_does_not_blame_its_successor(make_root) -> None:  # noqa: ANN001
    from securestore.api.verify import make_anchor

    root = make_root("store")
    _fill(root, StoreConfig(), count=2)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        anchor = make_anchor(store)
        store.delete_session("sess")
    _fill(root, StoreConfig(), count=1)  # the same key again: a new session, a new log
    report = _full_verify(root, anchor=anchor)
    assert report.exit_code == 0, report.failures
    assert any("was deleted at store log seq" in line for line in report.anchors)
