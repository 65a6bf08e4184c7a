"""The audit trail: tampering is caught and located; torn tails are repaired, not blamed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.keys import KEYS, MASTER_KEY, SIGNING
from tests.support.raw_tree import raw_tree, session_path
from securestore import (
    IntegrityError,
    LimitExceededError,
    RejectionAuditPolicy,
    SecureStore,
    StoreConfig,
    LockHeldError,
    verify_store,
)
from securestore.api import AuditTrailDrill
from securestore.audit.chain import GENESIS_PREV, Actor, ChainHead, build_record, parse_record
from securestore.audit.keys import RecordMac
from securestore.audit.verify import LogVerifier
from securestore.backends.local.layout import slot_file
from securestore.core.policy import encode_name

pytestmark = pytest.mark.both_backends


def session_log(key: str = "sess") -> str:
    return f"{session_path(key)}/audit/log.jsonl"


@pytest.fixture
def populated(store: SecureStore, root: Path | str) -> str:
    for i in range(4):
        store.put("sess", f"slot{i}", {"i": i, "text": "hello"})
    store.put("sess", "slot0", {"i": 10})
    assert verify_store(store).ok
    return session_log()


def first_failure(root: Path | str):  # noqa: ANN201
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store)
    assert not report.ok
    return report.failures[0]


def test_byte_flip_is_located(populated: str, root: Path | str) -> None:
    raw = raw_tree(root)
    data = bytearray(raw.read(populated))
    third = sum(len(line) for line in raw.lines(populated)[:3])
    data[third + 40] ^= 0x01  # inside record seq 3
    raw.write(populated, bytes(data))
    failure = first_failure(root)
    assert failure.line == 4 and failure.offset == third
    assert failure.check in {"parse", "schema", "canonical", "prev"}


def test_edit_that_stays_valid_json_breaks_the_next_link(populated: str, root: Path | str) -> None:
    """Changing one hex digit of an intent's hash keeps the record well-formed; only the next
    record's prev link (recomputed, never trusted) exposes it."""
    raw = raw_tree(root)
    recs = raw.lines(populated)
    marker = recs[3].index(b'"sha256":"') + len(b'"sha256":"')
    digit = recs[3][marker : marker + 1]
    recs[3] = recs[3][:marker] + (b"0" if digit != b"0" else b"1") + recs[3][marker + 1 :]
    raw.write(populated, b"".join(recs))
    failure = first_failure(root)
    assert (failure.seq, failure.check, failure.line) == (4, "prev", 5)


def test_deleted_line_is_a_seq_gap(populated: str, root: Path | str) -> None:
    raw = raw_tree(root)
    recs = raw.lines(populated)
    raw.write(populated, b"".join(recs[:2] + recs[3:]))
    failure = first_failure(root)
    assert failure.check == "seq-gap" and failure.expected == "2" and failure.actual == "3"
    assert failure.line == 3


def test_swapped_lines_are_caught(populated: str, root: Path | str) -> None:
    raw = raw_tree(root)
    recs = raw.lines(populated)
    recs[2], recs[3] = recs[3], recs[2]
    raw.write(populated, b"".join(recs))
    failure = first_failure(root)
    assert failure.check == "seq-gap" and failure.line == 3


def test_rechained_forgery_is_caught_by_the_data_check(populated: str, root: Path | str) -> None:
    """Someone who recomputes the chain can rewrite history, but not without the data noticing:
    a slot edited out of band no longer matches its last committed hash."""
    raw = raw_tree(root)
    slot = f"{session_path('sess')}/state/{slot_file(encode_name('slot2'))}"
    raw.write(slot, raw.read(slot).replace(b"hello", b"HELLO"))
    failure = first_failure(root)
    assert failure.check == "data-mismatch"
    assert "slot" in failure.log or "state/" in failure.log
    assert failure.seq is not None  # names the record the data should match


def test_out_of_band_new_slot_file_is_caught(populated: str, root: Path | str) -> None:
    state = f"{session_path('sess')}/state"
    raw_tree(root).copy(f"{state}/{slot_file(encode_name('slot1'))}", f"{state}/{slot_file(encode_name('planted'))}")
    assert first_failure(root).check == "data-mismatch"


def test_deleted_slot_file_is_caught(populated: str, root: Path | str) -> None:
    raw_tree(root).delete(f"{session_path('sess')}/state/{slot_file(encode_name('slot3'))}")
    failure = first_failure(root)
    assert failure.check == "data-mismatch" and failure.actual == "absent"


def test_deleted_session_directory_is_caught(populated: str, root: Path | str) -> None:
    raw_tree(root).delete(session_path("sess"))
    failure = first_failure(root)
    assert failure.check == "data-mismatch" and failure.log.startswith("audit/log.jsonl#sessions/")


def test_planted_session_directory_is_caught(store: SecureStore, root: Path | str) -> None:
    store.put("real", "s", 1)
    raw_tree(root).copy(session_path("real"), session_path("planted"))
    failure = first_failure(root)
    assert failure.check in {"data-mismatch", "name-mismatch"}


def test_log_spliced_from_another_session_is_caught(store: SecureStore, root: Path | str) -> None:
    store.put("alice", "s", 1)
    store.put("bob", "s", 1)
    raw_tree(root).copy(session_log("alice"), session_log("bob"))
    failure = first_failure(root)
    assert failure.check in {"genesis", "log-id"} and failure.seq == 0


def test_store_log_tamper_is_caught(populated: str, root: Path | str) -> None:
    raw = raw_tree(root)
    store_log = "audit/log.jsonl"
    recs = raw.lines(store_log)
    raw.write(store_log, b"".join(recs[:-1]))  # drop the last outcome
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store)
    # The store operation sealed the log: its own signed checkpoint shows the cut.
    assert report.exit_code == 5
    assert report.failures[0].check == "consistency" and report.failures[0].category == "truncated"
    raw.write(store_log, b"".join(recs[:2]))
    assert first_failure(root).check == "consistency"


def test_torn_tail_is_reported_as_torn_and_repaired_on_open(populated: str, root: Path | str, backend: str) -> None:
    raw = raw_tree(root)
    recs = raw.lines(populated)
    good = b"".join(recs)
    raw.write(populated, good + recs[-1][:37])  # a crash mid-append (on disk; planted in PostgreSQL)
    if backend == "postgres":  # every append is one transaction: no crash leaves a partial row
        _torn_tail_is_tampering_in_postgres(root, populated, good + recs[-1][:37])
        return
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store)
        assert report.ok
        assert any("torn final record (37 bytes)" in w for w in report.warnings)
        store.put("sess", "after", 1)  # the next writer repairs it
        assert store.recovered and "torn tail" in store.recovered[0]
        report = verify_store(store)
        assert report.ok and not report.warnings
    kinds = [parse_record(line.rstrip(b"\n")).kind for line in raw.lines(populated)]  # type: ignore[attr-defined]
    assert "recovery" in kinds
    assert raw.read(populated).startswith(good)


def _torn_tail_is_tampering_in_postgres(root: Path | str, log: str, planted: bytes) -> None:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store)
        assert report.exit_code == 1 and not report.warnings
        assert [(f.log, f.check) for f in report.failures] == [(log, "torn-record")]
        with pytest.raises(IntegrityError, match=r"ends with a partial record, which no crash leaves in PostgreSQL"):
            store.put("sess", "after", 1)  # nothing is written after it, nothing is cut
    assert raw_tree(root).read(log) == planted


def test_garbage_line_mid_log_is_tampering_not_torn(populated: str, root: Path | str) -> None:
    raw = raw_tree(root)
    recs = raw.lines(populated)
    raw.write(populated, b"".join(recs[:3] + [b'{"half": \n'] + recs[3:]))
    failure = first_failure(root)
    assert failure.check == "parse" and failure.line == 4


GENESIS = {"kind": "genesis", "store": "b" * 32, "scope": "store", "signer": SIGNING.verifier.text(),
           "epoch_records": 1000, "epoch_seconds": 3600}
MAC = RecordMac(b"k" * 32)


def _chain(n: int) -> list[bytes]:
    head = ChainHead("a" * 32, 0, GENESIS_PREV)
    actor = Actor(uid=1, pid=2, principal=None)
    out = []
    _, line, head = build_record(head, 1, actor, GENESIS, epoch=0, mac=MAC)
    out.append(line)
    for i in range(n):
        _, line, head = build_record(head, 2 + 2 * i, actor, {"kind": "intent", "op": "slot.put", "target": f"state/{i}",
                                                              "sha256": "c" * 64, "size": 1}, epoch=0, mac=MAC)
        out.append(line)
        _, line, head = build_record(head, 3 + 2 * i, actor, {"kind": "outcome", "txn": head.next_seq - 1,
                                                      "result": "committed", "sha256": "c" * 64}, epoch=0, mac=MAC)
        out.append(line)
    return out


def _verify(records: list[bytes]):  # noqa: ANN202
    verifier = LogVerifier("log", scope="store")
    offset = 0
    for line in records:
        verifier.feed(offset, line)
        offset += len(line)
    return verifier.finish()


def test_verifier_is_pure_and_checks_pairing() -> None:
    good = _chain(3)
    assert _verify(good).ok and _verify(good).records == 7
    assert _verify(good[:1]).ok
    # An outcome whose txn names a different intent, re-chained so only pairing can catch it.
    head = ChainHead("a" * 32, 0, GENESIS_PREV)
    actor = Actor(uid=1, pid=2, principal=None)
    forged = []
    for fields in (
        GENESIS,
        {"kind": "intent", "op": "slot.put", "target": "t", "sha256": "c" * 64, "size": 1},
        {"kind": "outcome", "txn": 0, "result": "committed", "sha256": "c" * 64},
    ):
        _, line, head = build_record(head, 1, actor, fields, epoch=0, mac=MAC)
        forged.append(line)
    report = _verify(forged)
    assert report.failure is not None and report.failure.check == "pairing" and report.failure.seq == 2
    assert _verify([]).failure is not None


def test_rejections_are_audited_within_a_rate_bound(root: Path | str) -> None:
    config = StoreConfig(rejection_audit=RejectionAuditPolicy(records_per_window=3, window_seconds=3600))
    raw = raw_tree(root)
    store_log = "audit/log.jsonl"
    with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as store:
        store.put("sess", "s", 1)
        size_before = raw.size(store_log)
        for _ in range(50):
            with pytest.raises(LimitExceededError):
                store.put("sess", "s", {"n": 2**70})
        added = raw.lines(store_log)[-4:]
        kinds = [parse_record(line.rstrip(b"\n")).kind for line in added]  # type: ignore[attr-defined]
        assert kinds == ["rejected", "rejected", "rejected", "suppressed"]
        assert raw.size(store_log) - size_before == sum(len(line) for line in added)
        assert verify_store(store).ok


@pytest.mark.fs_only  # the drill rewrites audit files in place: on PostgreSQL the store's role cannot (append-only rows)
def test_the_audit_trail_drill_never_runs_beside_a_writer_and_restores_the_trail(store: SecureStore,
                                                                                root: Path | str) -> None:
    with store.create_session("s") as session:
        session.append_items([{"n": 1}])
        with pytest.raises(LockHeldError):  # a record written mid-drill would be lost by its restore
            AuditTrailDrill(store, "s").__enter__()
    raw, log = raw_tree(root), session_log("s")
    before = raw.read(log)
    with AuditTrailDrill(store, "s") as drill:
        drill.edit_record(1)
        assert raw.read(log) != before and not verify_store(store).ok
        with SecureStore(root, StoreConfig(lock_timeout_seconds=0.0), master_key=MASTER_KEY, environ=KEYS) as other, \
                pytest.raises(LockHeldError):
            other.open_session("s")
    assert raw.read(log) == before and verify_store(store).ok
