"""Audit records, the hash chain, record MACs, and LogVerifier fed lines directly (audit/), sans
IO: a log built record by record with the writer's own functions verifies; each kind of damage
is reported by the check that must catch it, at the exact line."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterator, Mapping

import pytest

from securestore.audit.chain import GENESIS_PREV, Actor, ChainHead, build_record, encode_record, parse_record, record_hash
from securestore.audit.checkpoint import Checkpoint, StoredCheckpoint, sign_note
from securestore.audit.errors import RecordError
from securestore.audit.keys import RecordMac, SignerKey, mac_key, new_signer_key, store_log_key
from securestore.audit.merkle import Frontier, leaf_hash
from securestore.audit.verify import INCOMPLETE, TAMPERED, LogReport, LogVerifier
from tests.support.keys import SIGNING

STORE = "5" * 32
LOG = "a" * 32
SESSION = "k-me"
SEED = bytes(range(32))
CHAIN = store_log_key(SEED, STORE, LOG)  # any chain key: this log's first
ACTOR: Actor = {"uid": 1000, "pid": 42, "principal": None}
TARGET = f"sessions/{SESSION}/state/slots/k-me.json"
SHA = hashlib.sha256(b"new content").hexdigest()


def genesis(epoch_records: int = 1000) -> dict[str, object]:
    return {"kind": "genesis", "store": STORE, "scope": "session", "session": SESSION,
            "signer": SIGNING.verifier.text(), "epoch_records": epoch_records, "epoch_seconds": 86_400}


def intent(op: str = "slot.put") -> dict[str, object]:
    return {"kind": "intent", "op": op, "target": TARGET, "sha256": SHA, "size": 11, "also": []}


def outcome(txn: int, sha256: str | None = SHA) -> dict[str, object]:
    return {"kind": "outcome", "txn": txn, "result": "committed", "sha256": sha256}


REJECTED = {"kind": "rejected", "op": "slot.put", "target": None, "reason": "over-limit"}


def build(*fields: Mapping[str, object], ts: int = 1_000) -> list[bytes]:
    """Lines (with newlines) of a log holding these records, MACed as the writer does."""
    head, mac, lines = ChainHead(LOG, 0, GENESIS_PREV), RecordMac(mac_key(CHAIN)), []
    for n, field in enumerate(fields):
        _, line, head = build_record(head, ts + n, ACTOR, dict(field), epoch=0, mac=mac)
        lines.append(line)
    return lines


def verify(lines: list[bytes], *, seed: bool = True, checkpoints: list[bytes] | None = None,
           session: str = SESSION) -> LogReport:
    feed: Iterator[tuple[int, bytes]] | None = None
    if checkpoints is not None:
        feed = iter([(sum(map(len, checkpoints[:n])), line) for n, line in enumerate(checkpoints)])
    verifier = LogVerifier("log", scope="session", store_id=STORE, session=session,
                           chain_for=(lambda log: CHAIN) if seed else None, checkpoints=feed)
    offset = 0
    for line in lines:
        verifier.feed(offset, line)
        offset += len(line)
    return verifier.finish()


def failure_at(report: LogReport) -> tuple[str, int, int | None]:
    assert report.failure is not None, "verification passed"
    return report.failure.check, report.failure.line, report.failure.seq


LOG_LINES = build(genesis(), intent(), outcome(1), REJECTED, intent(), outcome(4))


def test_record_hash_is_the_rfc6962_leaf_hash() -> None:
    assert record_hash(b"") == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert record_hash(b"line") == leaf_hash(b"line").hex()


def test_record_mac_is_hmac_sha256_over_the_line_with_a_zeroed_mac() -> None:
    line = LOG_LINES[1][:-1]
    at = line.index(b'"mac":"') + len(b'"mac":"')
    blank = line[:at] + b"0" * 64 + line[at + 64:]
    expected = hmac.new(mac_key(CHAIN), b"securestore/audit/record\x00" + blank, "sha256").hexdigest()
    assert line[at:at + 64].decode() == expected
    assert RecordMac(mac_key(CHAIN)).check(line)
    assert not RecordMac(mac_key(CHAIN + b"x")).check(line)


def test_each_record_links_to_the_hash_of_the_one_before() -> None:
    records = [parse_record(line[:-1]) for line in LOG_LINES]
    assert records[0].prev == GENESIS_PREV and [r.seq for r in records] == list(range(6))
    for before, after, record in zip(LOG_LINES, LOG_LINES[1:], records[1:]):
        assert record.prev == record_hash(before[:-1])


@pytest.mark.parametrize(("edit", "check"), [
    (lambda line: line.replace(b'"seq":1,', b'"seq":1, '), "canonical"),  # valid JSON, not canonical
    (lambda line: line.replace(b'"size":11,', b""), "canonical"),  # a field left to its default
    (lambda line: line.replace(b'"op":"slot.put"', b'"op":"SLOT"'), "schema"),  # outside the op pattern
    (lambda line: line.replace(b'"op":"slot.put"', b'"op":"slot.put","x":1'), "canonical"),  # not sorted
    (lambda line: line[:-3] + b"\n", "parse"),  # not JSON
])
def test_parse_record_refuses_anything_but_the_canonical_encoding(edit: Callable[[bytes], bytes],
                                                                  check: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_record(edit(LOG_LINES[1])[:-1])
    assert info.value.check == check


def test_a_log_built_by_the_writer_functions_verifies() -> None:
    report = verify(LOG_LINES)
    assert report.ok and report.incomplete == [] and report.records == 6
    assert report.mac_checked and report.rejected == 1 and report.log_id == LOG
    assert report.committed[TARGET].sha256 == SHA and report.committed[TARGET].seq == 4


def test_an_edited_record_fails_its_mac_with_the_seed_and_the_next_link_without() -> None:
    edited = list(LOG_LINES)
    edited[2] = edited[2].replace(b'"ts":1002', b'"ts":1003')
    assert failure_at(verify(edited)) == ("mac", 3, 2)
    assert failure_at(verify(edited, seed=False)) == ("prev", 4, 3)
    assert verify(edited).failure.category == TAMPERED  # type: ignore[union-attr]


def test_a_deleted_record_is_a_seq_gap_at_the_line_after_it() -> None:
    assert failure_at(verify(LOG_LINES[:3] + LOG_LINES[4:])) == ("seq-gap", 4, 4)


def test_swapped_records_are_caught_at_the_first_one_out_of_place() -> None:
    swapped = LOG_LINES[:1] + [LOG_LINES[2], LOG_LINES[1]] + LOG_LINES[3:]
    assert failure_at(verify(swapped)) == ("seq-gap", 2, 2)


def test_a_torn_final_line_is_torn_not_tampering_and_the_same_fragment_mid_log_is_not() -> None:
    torn = LOG_LINES[:5] + [LOG_LINES[5][:40]]
    report = verify(torn)
    assert report.failure is None and report.torn_bytes == 40 and report.records == 5
    assert [f.check for f in report.incomplete] == ["dangling-intent"]  # the outcome was the torn line
    assert report.incomplete[0].category == INCOMPLETE
    assert failure_at(verify(LOG_LINES[:2] + [LOG_LINES[2][:40]] + LOG_LINES[3:])) == ("parse", 4, None)


def test_outcomes_must_answer_the_one_open_intent_with_its_content() -> None:
    assert failure_at(verify(build(genesis(), intent(), outcome(0)))) == ("pairing", 3, 2)
    assert failure_at(verify(build(genesis(), outcome(0)))) == ("pairing", 2, 1)
    assert failure_at(verify(build(genesis(), intent(), intent()))) == ("pairing", 3, 2)
    assert failure_at(verify(build(genesis(), intent(), outcome(1, sha256="0" * 64)))) == ("pairing", 3, 2)


def test_the_genesis_must_name_this_session_and_come_first() -> None:
    assert failure_at(verify(LOG_LINES, session="k-other")) == ("genesis", 1, 0)
    assert failure_at(verify(build(intent()))) == ("genesis", 1, 0)
    empty = verify([])
    assert failure_at(empty) == ("genesis", 0, None)
    assert empty.failure is not None and empty.failure.actual == "an empty log"


def test_an_epoch_that_outlives_its_record_count_fails_the_ratchet_rule() -> None:
    lines = build(genesis(epoch_records=2), intent(), outcome(1))  # the third record must open epoch 1
    assert failure_at(verify(lines)) == ("epoch", 3, 2)
    assert verify(lines[:2]).ok


def _checkpoint(lines: list[bytes], size: int, signer: SignerKey = SIGNING, root: bytes | None = None) -> bytes:
    frontier = Frontier()
    for line in lines[:size]:
        frontier.add(leaf_hash(line[:-1]))
    checkpoint = Checkpoint(STORE, LOG, size, root or frontier.root(), record_hash(lines[size - 1][:-1]), 0, 7)
    offset = sum(map(len, lines[:size]))
    return StoredCheckpoint(sign_note(checkpoint, signer), frontier, offset).line()


def test_signed_checkpoints_are_matched_against_the_recomputed_tree() -> None:
    good = [_checkpoint(LOG_LINES, 1), _checkpoint(LOG_LINES, 4)]
    report = verify(LOG_LINES, checkpoints=good)
    assert report.ok and report.checkpoints == 2 and report.sealed_size == 4 and report.signer_trust == "seed"
    wrong_root = [_checkpoint(LOG_LINES, 1), _checkpoint(LOG_LINES, 4, root=b"\x07" * 32)]
    assert failure_at(verify(LOG_LINES, checkpoints=wrong_root))[0] == "consistency"
    forger = new_signer_key(SIGNING.name, bytes(32))
    forged = [_checkpoint(LOG_LINES, 1), _checkpoint(LOG_LINES, 4, signer=forger)]
    assert failure_at(verify(LOG_LINES, checkpoints=forged)) == ("checkpoint-signature", 2, None)
    beyond = [_checkpoint(LOG_LINES, 1), _checkpoint(LOG_LINES, 6)]
    report = verify(LOG_LINES[:5], checkpoints=beyond)  # a signed size-6 checkpoint, a 5-record log
    assert report.failure is not None and report.failure.category == "truncated"
    assert failure_at(verify(LOG_LINES, checkpoints=[]))[0] == "checkpoint"  # the checkpoints were deleted


def test_a_remembered_signature_vouches_only_for_its_exact_bytes() -> None:
    signer = new_signer_key("remembering", bytes(range(32)))
    verifier = signer.verifier
    signature = signer.sign(b"checkpoint body")  # made here: remembered, valid
    assert verifier.verify(signature, b"checkpoint body")
    assert not verifier.verify(signature, b"checkpoint bodY")  # same signature, other message
    assert not verifier.verify(signature[:-1] + bytes([signature[-1] ^ 1]), b"checkpoint body")
    stranger = new_signer_key("remembering", bytes(32))  # same name, another key
    assert not verifier.verify(stranger.sign(b"checkpoint body"), b"checkpoint body")
    for i in range(200):  # the memory is bounded, and what fell out of it is checked again
        signer.sign(b"body %d" % i)
    assert verifier.verify(signature, b"checkpoint body")
    assert len(verifier._known) <= 64


@pytest.mark.parametrize("fields", [
    genesis(), intent(), {**intent(), "also": [{"target": "vault.json", "sha256": SHA, "size": 3}]},
    outcome(1), outcome(1, None), REJECTED,
    {"kind": "intent", "op": "slot.put", "target": TARGET},  # defaults left out: encoded from the model
    {"kind": "recovery", "event": "torn-tail", "target": "journal.log", "size": 3, "sha256": None, "detail": None},
])
def test_a_record_is_encoded_exactly_as_its_model_dumps(fields: dict[str, object]) -> None:
    """build_record encodes what it was given when every field is spelled out (strict models
    convert nothing): the same bytes as the model's dump, which the verifier re-encodes."""
    record, line, _ = build_record(ChainHead(LOG, 0, GENESIS_PREV), 1_000, ACTOR, dict(fields), epoch=0,
                                   mac=RecordMac(mac_key(CHAIN)))
    assert parse_record(line[:-1]) == record
    assert line == encode_record(record)
