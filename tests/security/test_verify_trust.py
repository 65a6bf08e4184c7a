"""What `audit verify` trusts: a session log's first key comes only from the store-log intent
that created it, its signer is the store's, the store log commits to session heads (a
single-session rollback is caught without an anchor), and with no trust root there is no OK.

The attacker here holds the store log's CURRENT epoch key (read from audit/epoch.key at time T)
and a signing key of their own; not the seed, not the store's signing key."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import orjson

from tests.support.attacks import _current_key, _forge
import pytest

from tests.support.keys import KEYS, MASTER_KEY, SIGNING
from tests.support.stores import drop_checkpoints_past, make_store, run_cli, seed_of, session_dir
from securestore import AuditPolicy, IntegrityError, SecureStore, StoreConfig, verify_store
from securestore.audit.chain import GENESIS_PREV, record_hash
from securestore.audit.checkpoint import Checkpoint, StoredCheckpoint, sign_note
from securestore.audit.keys import new_signer_key, session_log_key
from securestore.audit.merkle import Frontier, leaf_hash
from securestore.api.verify import VerifyOptions

MALLORY = new_signer_key(SIGNING.name, bytes(range(7, 39)))  # the attacker's own key, same name
# Epochs end by time only; the test clock decides when.
CONFIG = StoreConfig(audit=AuditPolicy(epoch_records=1000, epoch_seconds=60))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000_000

    def __call__(self) -> int:
        return self.now


def _store(root: Path, clock: Clock) -> SecureStore:
    return SecureStore(root, CONFIG, master_key=MASTER_KEY, environ=KEYS, clock=clock)


def _built(tmp_path: Path) -> tuple[Path, Clock]:
    """Session "victim" created and written in epoch 0 of the store log; the store log then
    moves to epoch 1 (the attacker's stolen key is epoch 1's)."""
    clock = Clock()
    root = make_store(tmp_path / "store", CONFIG, clock=clock)
    with _store(root, clock) as store:
        with store.create_session("victim") as session:
            session.append_items([{"role": "user", "content": "written before T"}])
            session.slot("ext.a").put({"n": 1})
        clock.now += 120_000
        store.create_session("later").close()  # a store record past 60 s: the store log ratchets
    return root, clock


def _verify(root: Path, clock: Clock, **options: object):  # noqa: ANN202
    with _store(root, clock) as store:
        return verify_store(store, options=VerifyOptions(seed=seed_of(root), **options))  # type: ignore[arg-type]


def _append_store_records(root: Path, records: list[dict[str, object]]) -> int:
    """Append records to the store log, chained and MACed with the stolen current key; returns
    the seq of the first."""
    audit = root / "audit"
    lines = (audit / "log.jsonl").read_bytes().splitlines(keepends=True)
    epoch, chain, _ = _current_key(audit)
    last = orjson.loads(lines[-1])
    first = last["seq"] + 1
    prev = record_hash(lines[-1][:-1])
    for index, fields in enumerate(records):
        raw = {"v": 2, "log": last["log"], "seq": first + index, "ts": last["ts"], "prev": prev,
               "actor": last["actor"], "epoch": epoch, **fields}
        line = _forge(raw, chain)
        lines.append(line)
        prev = record_hash(line[:-1])
    (audit / "log.jsonl").write_bytes(b"".join(lines))
    return first


def _rewrite_session_from_genesis(root: Path, name: str, chain: bytes, store_id: str, *,
                                  signer: str = MALLORY.verifier.text(), signed: bool = True) -> None:
    """The session's whole history replaced: a fresh log (same log id), MACed with `chain`,
    naming `signer` and signed by the attacker (or, `signed=False`, with no checkpoint at all:
    for an honest writer to sign); the data reduced to an empty session that matches it."""
    directory = root / "sessions" / name
    manifest = (directory / "manifest.jsonl").read_bytes().splitlines(keepends=True)
    log_id = orjson.loads(manifest[0])["audit_log_id"]
    genesis = {"v": 2, "log": log_id, "seq": 0, "ts": 1_800_000_000_000, "prev": GENESIS_PREV,
               "actor": {"uid": 0, "pid": 1, "principal": None}, "epoch": 0, "kind": "genesis", "store": store_id,
               "scope": "session", "session": name, "signer": signer, "epoch_records": 1000,
               "epoch_seconds": 60}
    from securestore.audit.keys import mac_key, RecordMac  # noqa: PLC0415

    blank = orjson.dumps({**genesis, "mac": "0" * 64}, option=orjson.OPT_SORT_KEYS)
    line = orjson.dumps({**genesis, "mac": RecordMac(mac_key(chain)).of_blank(blank)}, option=orjson.OPT_SORT_KEYS)
    frontier = Frontier()
    frontier.add(leaf_hash(line))
    note = sign_note(Checkpoint(store_id, log_id, 1, frontier.root(), record_hash(line), 0, 1), MALLORY)
    (directory / "audit" / "log.jsonl").write_bytes(line + b"\n")
    stored = StoredCheckpoint(note, frontier, len(line) + 1).line() if signed else b""
    (directory / "audit" / "checkpoints.jsonl").write_bytes(stored)
    (directory / "manifest.jsonl").write_bytes(manifest[0])
    (directory / "journal.log").write_bytes(b"")
    for leftover in ("snapshot.json", "vault.json", "vault.key"):
        (directory / leftover).unlink(missing_ok=True)
    shutil.rmtree(directory / "state")
    (directory / "state").mkdir(mode=0o700)


def test_a_forged_create_of_a_live_session_is_caught_where_it_is(tmp_path: Path) -> None:
    """The review's critical finding: a forged store-log intent naming an existing session used
    to hand the verifier a key the attacker knows, and the session's own genesis its signer."""
    root, clock = _built(tmp_path)
    name = session_dir(root, "victim").name
    first_line = (root / "sessions" / name / "manifest.jsonl").read_bytes().splitlines(keepends=True)[0]
    digest = hashlib.sha256(first_line).hexdigest()
    seq = _append_store_records(root, [
        {"kind": "intent", "op": "session.create", "target": f"sessions/{name}", "sha256": digest,
         "size": len(first_line), "also": []},
        {"kind": "outcome", "txn": 0, "result": "committed", "sha256": digest},
    ])
    _fix_outcome_txn(root, seq)
    _, chain, _ = _current_key(root / "audit")
    store_id = orjson.loads((root / "store.json").read_bytes())["store_id"]
    _rewrite_session_from_genesis(root, name, session_log_key(chain, name, seq), store_id)
    for options in ({}, {"public_key": SIGNING.verifier}):
        report = _verify(root, clock, **options)
        assert report.exit_code == 1, report.to_json()
        first = report.failures[0]
        assert (first.log, first.check, first.seq) == ("audit/log.jsonl", "lifecycle", seq)


def _fix_outcome_txn(root: Path, intent_seq: int) -> None:
    """Re-forge the appended outcome so that it answers the forged intent."""
    audit = root / "audit"
    lines = (audit / "log.jsonl").read_bytes().splitlines(keepends=True)
    _, chain, _ = _current_key(audit)
    raw = orjson.loads(lines[-1])
    raw["txn"] = intent_seq
    lines[-1] = _forge(raw, chain)
    (audit / "log.jsonl").write_bytes(b"".join(lines))


def test_a_session_log_signed_by_another_key_fails_even_after_a_forged_delete_and_create(tmp_path: Path) -> None:
    """Delete-and-recreate passes the lifecycle rule (the records are forged after T, which the
    stolen current key allows), but the new log must be signed by the store's signer."""
    root, clock = _built(tmp_path)
    name, _, created_seq, chain, store_id = _forge_delete_and_create(root)
    _rewrite_session_from_genesis(root, name, session_log_key(chain, name, created_seq), store_id)
    report = _verify(root, clock)
    assert report.exit_code == 1, report.to_json()
    first = report.failures[0]
    assert (first.log, first.check, first.seq) == (f"sessions/{name}/audit/log.jsonl", "genesis", 0)
    assert "the store's" in first.expected and MALLORY.verifier.text() in first.actual


def _forge_delete_and_create(root: Path) -> tuple[str, str, int, bytes, str]:
    """Forged store-log records (stolen current key): session "victim" deleted and created again.
    Returns its name, target, the forged create's seq, the stolen chain key and the store id."""
    name = session_dir(root, "victim").name
    first_line = (root / "sessions" / name / "manifest.jsonl").read_bytes().splitlines(keepends=True)[0]
    digest = hashlib.sha256(first_line).hexdigest()
    target = f"sessions/{name}"
    seq = _append_store_records(root, [
        {"kind": "intent", "op": "session.delete", "target": target, "sha256": None, "size": None, "also": []},
        {"kind": "outcome", "txn": 0, "result": "committed", "sha256": None},
        {"kind": "intent", "op": "session.create", "target": target, "sha256": digest, "size": len(first_line),
         "also": []},
        {"kind": "outcome", "txn": 0, "result": "committed", "sha256": digest},
    ])
    _fix_txns(root, {seq + 1: seq, seq + 3: seq + 2})
    _, chain, _ = _current_key(root / "audit")
    return name, target, seq + 2, chain, orjson.loads((root / "store.json").read_bytes())["store_id"]


def _fix_txns(root: Path, answers: dict[int, int]) -> None:
    """Re-forge outcomes (seq -> the intent seq it answers) and re-chain after them."""
    audit = root / "audit"
    lines = (audit / "log.jsonl").read_bytes().splitlines(keepends=True)
    _, chain, _ = _current_key(audit)
    start = min(answers)
    for index in range(start, len(lines)):
        raw = orjson.loads(lines[index])
        if index in answers:
            raw["txn"] = answers[index]
        raw["prev"] = record_hash(lines[index - 1][:-1])
        lines[index] = _forge(raw, chain)
    (audit / "log.jsonl").write_bytes(b"".join(lines))


def _rolled_back(tmp_path: Path, then: Callable[[SecureStore, Path], object]) -> tuple[Path, Clock]:
    """Session "victim" written twice, `then` run, and the session rolled back to its copy
    from between the two writes."""
    clock = Clock()
    root = make_store(tmp_path / "store", CONFIG, clock=clock)
    older = tmp_path / "older"
    with _store(root, clock) as store:
        with store.create_session("victim") as session:
            session.append_items([{"n": 1}])
        shutil.copytree(session_dir(root, "victim"), older)
        with store.open_session("victim") as session:
            session.append_items([{"n": 2}])  # its close marks the new head
        then(store, root)
    shutil.rmtree(session_dir(root, "victim"))
    shutil.copytree(older, session_dir(root, "victim"))
    return root, clock


def test_one_session_rolled_back_to_an_older_copy_is_caught_without_an_anchor(tmp_path: Path) -> None:
    # A store operation: the store log commits the marked head as it ends.
    root, clock = _rolled_back(tmp_path, lambda store, _: store.create_session("other").close())
    report = _verify(root, clock, public_key=SIGNING.verifier)
    assert report.exit_code == 5, report.to_json()
    first = report.failures[0]
    assert first.check == "consistency" and "committed to the store log" in first.expected
    assert first.log == f"sessions/{session_dir(root, 'victim').name}/audit/log.jsonl"


def test_audit_seal_commits_heads_that_no_store_operation_did(tmp_path: Path) -> None:
    def lose_the_marker_then_seal(store: SecureStore, root: Path) -> None:
        (root / "audit" / "heads" / session_dir(root, "victim").name).unlink()  # a marker lost in a crash
        store.seal()  # the heartbeat: commits every head that changed since the previous seal

    root, clock = _rolled_back(tmp_path, lose_the_marker_then_seal)
    assert _verify(root, clock, public_key=SIGNING.verifier).exit_code == 5


def _sealed_victim(tmp_path: Path) -> tuple[Path, Clock]:
    """Session "victim" with one item, its head committed by an `audit seal`."""
    clock = Clock()
    root = make_store(tmp_path / "store", CONFIG, clock=clock)
    with _store(root, clock) as store:
        with store.create_session("victim") as session:
            session.append_items([{"n": 1}])
        store.seal()
    return root, clock


def test_an_uncommitted_tail_is_the_documented_window(tmp_path: Path) -> None:
    """Writes after the last store operation or seal are not yet committed by the store log:
    rolling them back needs an anchor to be caught (README: the exact window)."""
    root, clock = _sealed_victim(tmp_path)
    with _store(root, clock) as store:
        older = tmp_path / "older"
        shutil.copytree(session_dir(root, "victim"), older)
        with store.open_session("victim") as session:
            session.append_items([{"n": 2}])
    shutil.rmtree(session_dir(root, "victim"))
    shutil.copytree(older, session_dir(root, "victim"))
    assert _verify(root, clock, public_key=SIGNING.verifier).exit_code == 0


def test_no_trust_root_is_never_a_bare_ok(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("s", "slot", {"n": 1})
    with SecureStore(root, master_key=MASTER_KEY, environ={}) as reader:  # no signing key configured
        report = verify_store(reader)
        assert report.exit_code == 6 and not report.failures
        assert [f.check for f in report.incomplete] == ["trust-root"]
        assert verify_store(reader, options=VerifyOptions(public_key=SIGNING.verifier)).exit_code == 0
        assert verify_store(reader, options=VerifyOptions(seed=seed_of(root))).exit_code == 0
    env = {"SECURESTORE_ROOT": str(root), "SECURESTORE_AUDIT_SIGNING_KEY": ""}
    result = run_cli("audit", "verify", env=env)
    assert result.returncode == 6 and "trust-root" in result.stdout and "result: OK" not in result.stdout
    assert "INCOMPLETE" in result.stdout


def test_committed_heads_do_not_break_a_crash_state(tmp_path: Path) -> None:
    """A crash before the store log committed a head is not a rollback: the store log only ever
    commits checkpoints, which cover fsynced records."""
    root, clock = _sealed_victim(tmp_path)
    with _store(root, clock) as store:
        with store.open_session("victim") as session:
            session.append_items([{"n": 2}])
    log = session_dir(root, "victim") / "audit" / "log.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join(lines[:-1]))  # the last outcome lost in a crash, before close sealed
    drop_checkpoints_past(log.parent, len(lines) - 1)
    report = _verify(root, clock, public_key=SIGNING.verifier)
    assert report.exit_code == 6 and [f.check for f in report.incomplete] == ["dangling-intent"]


def test_an_epoch_boundary_cannot_be_moved_back_by_rewriting_a_timestamp(tmp_path: Path) -> None:
    """The reviewer's second critical finding: pick a signed checkpoint inside the previous
    epoch, give a record there a timestamp past the epoch's time limit, relabel everything after
    it as the current epoch and re-MAC it with the stolen key. Only a signed closing checkpoint
    may end an epoch, so the rewritten boundary is caught where it is."""
    root, clock = _built(tmp_path)
    audit = root / "audit"
    lines = (audit / "log.jsonl").read_bytes().splitlines(keepends=True)
    epoch, chain, first_seq = _current_key(audit)
    sizes = [int(orjson.loads(line)["note"].split("\n")[1]) for line in (audit / "checkpoints.jsonl").read_bytes().splitlines()]
    cut = max(size for size in sizes if 1 < size < first_seq)
    late = orjson.loads(lines[first_seq])["ts"]
    out = lines[:cut]
    for index in range(cut, len(lines)):
        raw = orjson.loads(lines[index])
        raw.update(prev=record_hash(out[-1][:-1]), epoch=epoch, ts=late)
        out.append(_forge(raw, chain))
    (audit / "log.jsonl").write_bytes(b"".join(out))
    drop_checkpoints_past(audit, cut)
    for options in ({}, {"public_key": SIGNING.verifier}):
        report = _verify(root, clock, **options)
        assert report.exit_code == 1, report.to_json()
        first = report.failures[0]
        assert (first.log, first.check, first.seq) == ("audit/log.jsonl", "checkpoint", cut)


def test_no_writer_signs_a_log_it_did_not_create(tmp_path: Path) -> None:
    """A forged delete and create, then a planted log that names the store's signer but has no
    checkpoint: an honest `audit seal` or write must not sign it (no signing oracle)."""
    root, clock = _built(tmp_path)
    name, target, created_seq, chain, store_id = _forge_delete_and_create(root)
    store_signer = orjson.loads((root / "audit" / "log.jsonl").read_bytes().splitlines()[0])["signer"]
    _rewrite_session_from_genesis(root, name, session_log_key(chain, name, created_seq), store_id,
                                  signer=store_signer, signed=False)
    with _store(root, clock) as store:
        sealed = store.seal()
        assert name not in sealed.sealed and any("refusing to sign" in line and name in line for line in sealed.skipped)
        with pytest.raises(IntegrityError, match="no signed checkpoint"):
            store.put("victim", "ext.b", {"honest": "write after T"})
    assert (root / "sessions" / name / "audit" / "checkpoints.jsonl").read_bytes() == b""
    report = _verify(root, clock, public_key=SIGNING.verifier)
    assert report.exit_code == 1 and report.failures[0].check == "checkpoint"
    deletions = " | ".join(report.deletions)
    assert target in deletions and "current epoch" in deletions  # every deletion is listed for the auditor


def _verify_racing_a_writer(root: Path, clock: Clock, every_run: bool) -> object:
    """verify with an honest write landing at its first directory listing (once, or on every run)."""
    from securestore.fs import instrumented  # noqa: PLC0415
    from securestore.fs.osapi import REAL_OS  # noqa: PLC0415

    writes = {"n": 0, "listdirs": 0}

    def hook(name: str, args: tuple[object, ...]) -> None:
        if name != "listdir":
            return
        writes["listdirs"] += 1
        # listing 1 is verify's look at which logs move; listing 2 is inside the verification
        if writes["listdirs"] == 2 or (every_run and writes["n"] < 20):  # once, or at every listing
            writes["n"] += 1
            with _store(root, clock) as writer:  # an ordinary write from another handle
                writer.create_session(f"new-{every_run}-{writes['n']}").close()

    with SecureStore(root, CONFIG, master_key=MASTER_KEY, environ=KEYS, clock=clock,
                     os_api=instrumented(REAL_OS, hook)) as auditor:
        return verify_store(auditor, options=VerifyOptions(seed=seed_of(root), public_key=SIGNING.verifier))


def test_a_write_during_verify_is_not_tampering(tmp_path: Path) -> None:
    clock = Clock()
    root = make_store(tmp_path / "store", CONFIG, clock=clock)
    with _store(root, clock) as store:
        store.put("s", "ext.a", {"n": 1})
    report = _verify_racing_a_writer(root, clock, every_run=False)
    assert report.exit_code == 0, report.to_json()  # type: ignore[attr-defined]
    busy = _verify_racing_a_writer(root, clock, every_run=True)
    assert busy.exit_code == 6 and not busy.failures  # type: ignore[attr-defined]
    assert busy.incomplete[-1].check == "changed-during-verify"  # type: ignore[attr-defined]


def test_a_planted_entry_among_the_head_markers_stops_nothing(tmp_path: Path) -> None:
    root, clock = _sealed_victim(tmp_path)
    (root / "audit" / "heads" / session_dir(root, "victim").name).mkdir(mode=0o700)  # not a marker we made
    with _store(root, clock) as store:
        store.create_session("other").close()  # a store operation ends normally
        assert store.seal().skipped == []
    assert _verify(root, clock, public_key=SIGNING.verifier).exit_code == 0
