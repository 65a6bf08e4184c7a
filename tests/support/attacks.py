"""The attack corpus: realistic stores, attacked the ways a verifier must catch (imported by
tests/security/test_attacks.py, and by tools/attack_corpus.py for many more rounds).

The attacker has write access to the whole store at time T, and reads every current epoch key
(`epoch.key`). The attacker does not have the verification seed, the signing key, or the anchor
exported before T. Each attack returns what verify must report: the category (tampered,
truncated) and, for attacks that do not sit at the tail, the exact log line of the first
failure.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from tests.support.keys import KEYS, MASTER_KEY, SIGNING
from tests.support.stores import drop_checkpoints_past, make_store, seed_of
from securestore import AuditPolicy, SecureStore, StoreConfig, verify_store
from securestore.audit.anchor import Anchor
from securestore.audit.chain import GENESIS_PREV, record_hash
from securestore.audit.checkpoint import Checkpoint, StoredCheckpoint, sign_note
from securestore.audit.keys import RecordMac, mac_key, new_signer_key
from securestore.audit.merkle import Frontier, leaf_hash
from securestore.core.canonical import canonical_bytes
from securestore.api.verify import make_anchor
from securestore.api.verify import VerifyOptions

LOG, CHECKPOINTS, KEY = "log.jsonl", "checkpoints.jsonl", "epoch.key"


@dataclass(frozen=True)
class Scenario:
    root: Path
    older: Path  # a copy of the same store taken earlier: a valid older state
    seed: bytes
    anchor: Anchor
    sessions: list[str]  # encoded names of live sessions


@dataclass(frozen=True)
class Expect:
    category: str  # tampered | truncated
    log: str | None = None  # the log (label) the first failure must name, when located exactly
    line: int | None = None  # its 1-based line
    where: str | None = None  # for attacks on files rather than records: the failure must name this


@dataclass(frozen=True)
class Result:
    kind: str
    detected: bool
    located: bool | None  # None: a tail attack, no exact location is claimed
    exit_code: int
    first: str


def _work(store: SecureStore, rng: random.Random, names: list[str], steps: int) -> None:
    for _ in range(steps):
        key = rng.choice(names)
        with store.open_session(key, create=True) as session:
            what = rng.random()
            if what < 0.4:
                session.append_items([{"role": "user", "content": f"message {rng.random()}"}])
            elif what < 0.6:
                with session.turn():
                    session.append_items([{"role": "assistant", "content": "ok"}, {"role": "tool", "content": "x"}])
                    session.slot("ext.state").put({"n": rng.randint(0, 99)})
            elif what < 0.8:
                session.slot(rng.choice(["ext.a", "ext.b"])).put({"v": rng.randint(0, 9)})
            else:
                session.update_metadata(title=f"title {rng.randint(0, 99)}")


def build_scenario(base: Path, rng: random.Random) -> Scenario:
    root = base / "store"
    config = StoreConfig(audit=AuditPolicy(epoch_records=rng.randint(3, 6)))
    make_store(root, config)
    names = ["alpha", "beta", "gamma"]
    with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as store:
        _work(store, rng, names, rng.randint(8, 14))
        older = base / "older"
        shutil.copytree(root, older, symlinks=True)
        _work(store, rng, names, rng.randint(8, 14))
        store.delete_session("gamma")
        _work(store, rng, names[:2], rng.randint(4, 8))
        anchor = make_anchor(store)
        sessions = sorted(p.name for p in (root / "sessions").iterdir())
    return Scenario(root, older, seed_of(root), anchor, sessions)


def verify(root: Path, scenario: Scenario) -> tuple[int, object]:
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store, options=VerifyOptions(
            seed=scenario.seed, public_key=SIGNING.verifier, anchor=scenario.anchor))
    first = report.failures[0] if report.failures else (report.incomplete[0] if report.incomplete else None)
    return report.exit_code, first


# -- helpers the attacker uses ---------------------------------------------------------------

def _pick_log(root: Path, rng: random.Random, sessions: list[str]) -> tuple[Path, str]:
    if rng.random() < 0.3:
        return root / "audit", "audit/log.jsonl"
    name = rng.choice(sessions)
    return root / "sessions" / name / "audit", f"sessions/{name}/audit/log.jsonl"


def _lines(audit: Path) -> list[bytes]:
    return (audit / LOG).read_bytes().splitlines(keepends=True)


def _current_key(audit: Path) -> tuple[int, bytes, int]:
    """What the attacker reads from epoch.key: epoch, chain key, first seq of the epoch."""
    raw = orjson.loads((audit / KEY).read_bytes())
    return raw["epoch"], bytes.fromhex(raw["chain"]), raw["first_seq"]


def _past(audit: Path, rng: random.Random) -> int:
    """A record index MACed under a key the attacker no longer has."""
    _, _, first_seq = _current_key(audit)
    return rng.randint(0, max(0, first_seq - 1))


def _forge(raw: dict[str, object], chain: bytes) -> bytes:
    """A canonical line MACed with the stolen current key."""
    raw = {**raw, "mac": "0" * 64}
    blank = canonical_bytes(raw)
    mac = RecordMac(mac_key(chain)).of_blank(blank)
    return canonical_bytes({**raw, "mac": mac}) + b"\n"


def _rechain(lines: list[bytes], start: int, chain: bytes, epoch: int) -> list[bytes]:
    """Renumber and re-link lines[start:] (and MAC them with the current key)."""
    out = list(lines[:start])
    prev = record_hash(out[-1][:-1]) if out else GENESIS_PREV
    for index, line in enumerate(lines[start:], start=start):
        raw = orjson.loads(line)
        raw.update(seq=index, prev=prev, epoch=epoch)
        forged = _forge(raw, chain)
        out.append(forged)
        prev = record_hash(forged[:-1])
    return out


def _flip_field(field: str) -> Callable[[Path, random.Random, Scenario], Expect]:
    def attack(root: Path, rng: random.Random, scenario: Scenario) -> Expect:
        audit, label = _pick_log(root, rng, scenario.sessions)
        lines = _lines(audit)
        index = _past(audit, rng)
        line = bytearray(lines[index])
        at = line.find(f'"{field}":'.encode())
        if at < 0:
            index, line = 0, bytearray(lines[0])
            at = line.find(f'"{field}":'.encode())
        start = at + len(field) + 3
        candidates = [i for i in range(start, min(len(line) - 1, start + 70))
                      if chr(line[i]).isalnum()]
        pos = rng.choice(candidates[:64] or [start])
        old = chr(line[pos])
        pool = "0123456789" if old.isdigit() else ("abcdef" if old in "abcdef" else "ghijklmnopqrstuvwxyz")
        line[pos] = ord(rng.choice([c for c in pool if c != old]))
        lines[index] = bytes(line)
        (audit / LOG).write_bytes(b"".join(lines))
        return Expect("tampered", label, index + 1)

    return attack


def delete_record(root: Path, rng: random.Random, s: Scenario) -> Expect:
    audit, label = _pick_log(root, rng, s.sessions)
    lines = _lines(audit)
    index = rng.randint(1, max(1, _past(audit, rng)))
    del lines[index]
    (audit / LOG).write_bytes(b"".join(lines))
    return Expect("tampered", label, index + 1)


def insert_forged(root: Path, rng: random.Random, s: Scenario) -> Expect:
    """A forged record in the past, and everything after it re-chained with the current key."""
    audit, label = _pick_log(root, rng, s.sessions)
    lines = _lines(audit)
    epoch, chain, _ = _current_key(audit)
    index = rng.randint(1, max(1, _past(audit, rng)))
    fake = orjson.loads(lines[index])
    fake.update(kind="rejected", op="slot.put", target=None, reason="forged")
    for drop in ("also", "sha256", "size", "txn", "result", "window", "window_seconds", "event", "detail"):
        fake.pop(drop, None)
    lines.insert(index, orjson.dumps(fake) + b"\n")
    (audit / LOG).write_bytes(b"".join(_rechain(lines, index, chain, epoch)))
    return Expect("tampered", label, index + 1)


def reorder(root: Path, rng: random.Random, s: Scenario) -> Expect:
    audit, label = _pick_log(root, rng, s.sessions)
    lines = _lines(audit)
    index = rng.randint(1, max(1, min(_past(audit, rng), len(lines) - 2)))
    lines[index], lines[index + 1] = lines[index + 1], lines[index]
    (audit / LOG).write_bytes(b"".join(lines))
    return Expect("tampered", label, index + 1)


def duplicate(root: Path, rng: random.Random, s: Scenario) -> Expect:
    audit, label = _pick_log(root, rng, s.sessions)
    lines = _lines(audit)
    index = rng.randint(0, max(0, _past(audit, rng)))
    lines.insert(index + 1, lines[index])
    (audit / LOG).write_bytes(b"".join(lines))
    return Expect("tampered", label, index + 2)


def _cut_tail(root: Path, rng: random.Random, s: Scenario) -> tuple[Path, list[bytes]]:
    """Cut a log's last records and every checkpoint that covered them; (its dir, kept lines)."""
    audit, _ = _pick_log(root, rng, s.sessions)
    lines = _lines(audit)
    keep = rng.randint(1, len(lines) - 1)
    (audit / LOG).write_bytes(b"".join(lines[:keep]))
    drop_checkpoints_past(audit, keep)
    return audit, lines[:keep]


def truncate_tail(root: Path, rng: random.Random, s: Scenario) -> Expect:
    _cut_tail(root, rng, s)
    return Expect("truncated")


def truncate_and_reappend(root: Path, rng: random.Random, s: Scenario) -> Expect:
    """CVE-2023-31438 style: cut, then append records MACed with the current key. In a past
    epoch the epoch/MAC check locates it; in the current epoch only the checkpoints can."""
    audit, label = _pick_log(root, rng, s.sessions)
    lines = _lines(audit)
    epoch, chain, first_seq = _current_key(audit)
    cut = rng.randint(1, len(lines) - 1)
    forged = [orjson.dumps({**orjson.loads(line), "ts": orjson.loads(line)["ts"] + 1}) + b"\n"
              for line in lines[cut:]]
    (audit / LOG).write_bytes(b"".join(_rechain(lines[:cut] + forged, cut, chain, epoch)))
    drop_checkpoints_past(audit, cut)
    if cut < first_seq:
        return Expect("tampered", label, cut + 1)
    return Expect("truncated")


def rollback_to_prefix(root: Path, rng: random.Random, s: Scenario) -> Expect:
    """Restore the whole store from an earlier copy: every file is a valid older state."""
    shutil.rmtree(root)
    shutil.copytree(s.older, root, symlinks=True)
    return Expect("truncated")


def rollback_one_session(root: Path, rng: random.Random, s: Scenario) -> Expect:
    name = rng.choice([n for n in s.sessions if (s.older / "sessions" / n).exists()])
    shutil.rmtree(root / "sessions" / name)
    shutil.copytree(s.older / "sessions" / name, root / "sessions" / name, symlinks=True)
    return Expect("truncated")


def splice_other_session(root: Path, rng: random.Random, s: Scenario) -> Expect:
    a, b = rng.sample(s.sessions, 2)
    audit_a, audit_b = root / "sessions" / a / "audit", root / "sessions" / b / "audit"
    la, lb = _lines(audit_a), _lines(audit_b)
    index = rng.randint(0, min(_past(audit_a, rng), len(lb) - 1))
    la[index] = lb[index]
    (audit_a / LOG).write_bytes(b"".join(la))
    return Expect("tampered", f"sessions/{a}/audit/log.jsonl", index + 1)


def rechain_fresh_log_id(root: Path, rng: random.Random, s: Scenario) -> Expect:
    """Rewrite a whole log consistently under a new log id, MACed with the current key."""
    name = rng.choice(s.sessions)
    audit = root / "sessions" / name / "audit"
    epoch, chain, _ = _current_key(audit)
    lines = [orjson.dumps({**orjson.loads(line), "log": "f" * 32}) + b"\n" for line in _lines(audit)]
    (audit / LOG).write_bytes(b"".join(_rechain(lines, 0, chain, 0)))
    (audit / CHECKPOINTS).write_bytes(b"")
    return Expect("tampered", f"sessions/{name}/audit/log.jsonl", 1)


def remac_earlier_epoch(root: Path, rng: random.Random, s: Scenario) -> Expect:
    """CVE-2023-31439 style: edit a past record and re-MAC it with the current key."""
    audit, label = _pick_log(root, rng, s.sessions)
    lines = _lines(audit)
    epoch, chain, _ = _current_key(audit)
    index = _past(audit, rng)
    raw = orjson.loads(lines[index])
    raw["ts"] += 1000
    if rng.random() < 0.5:
        raw["epoch"] = epoch  # also claim the current epoch
    lines = _rechain(lines[:index] + [orjson.dumps(raw) + b"\n"] + lines[index + 1 :], index, chain,
                     raw["epoch"])[: index + 1] + lines[index + 1 :]
    (audit / LOG).write_bytes(b"".join(lines))
    return Expect("tampered", label, index + 1)


def forge_checkpoint(root: Path, rng: random.Random, s: Scenario) -> Expect:
    """Cut the tail, then sign a matching checkpoint with the attacker's own key."""
    audit, kept = _cut_tail(root, rng, s)
    frontier = Frontier()
    for line in kept:
        frontier.add(leaf_hash(line[:-1]))
    last = orjson.loads(kept[-1])
    mallory = new_signer_key(SIGNING.name, bytes(32))  # same name, different key
    note = sign_note(Checkpoint(s.anchor.store, last["log"], len(kept), frontier.root(), record_hash(kept[-1][:-1]),
                                last["epoch"], 1), mallory)
    with (audit / CHECKPOINTS).open("ab") as out:
        out.write(StoredCheckpoint(note, frontier, sum(map(len, kept))).line())
    label = str(audit.relative_to(root) / CHECKPOINTS)
    return Expect("tampered", label, None)


def delete_checkpoints(root: Path, rng: random.Random, s: Scenario) -> Expect:
    audit, _ = _pick_log(root, rng, s.sessions)
    (audit / CHECKPOINTS).write_bytes(b"")
    # Missing evidence: found at the log's first epoch boundary, or at the file itself.
    return Expect("tampered", where=str(audit.relative_to(root)))


def delete_session(root: Path, rng: random.Random, s: Scenario) -> Expect:
    name = rng.choice(s.sessions)
    shutil.rmtree(root / "sessions" / name)
    return Expect("tampered", where=f"sessions/{name}")


def edit_data_file(root: Path, rng: random.Random, s: Scenario) -> Expect:
    name = rng.choice(s.sessions)
    directory = root / "sessions" / name
    files = [p for p in (directory / "state").iterdir()] + [directory / "manifest.jsonl"]
    target = rng.choice(files)
    data = bytearray(target.read_bytes())
    pos = data.find(b'"', rng.randint(0, max(0, len(data) // 2)))
    data[pos + 1] = ord("Z") if data[pos + 1] != ord("Z") else ord("Y")
    target.write_bytes(bytes(data))
    return Expect("tampered", where=f"sessions/{name}")


ATTACKS: dict[str, Callable[[Path, random.Random, Scenario], Expect]] = {
    **{f"flip-{f}": _flip_field(f) for f in ("seq", "ts", "prev", "log", "epoch", "mac", "actor", "kind")},
    "delete-record": delete_record,
    "insert-forged": insert_forged,
    "reorder": reorder,
    "duplicate": duplicate,
    "truncate-tail": truncate_tail,
    "truncate-and-reappend": truncate_and_reappend,
    "rollback-to-prefix": rollback_to_prefix,
    "rollback-one-session": rollback_one_session,
    "splice-other-session": splice_other_session,
    "rechain-fresh-log-id": rechain_fresh_log_id,
    "remac-earlier-epoch": remac_earlier_epoch,
    "forge-checkpoint": forge_checkpoint,
    "delete-checkpoints": delete_checkpoints,
    "delete-session": delete_session,
    "edit-data-file": edit_data_file,
}

EXIT_FOR = {"tampered": {1}, "truncated": {1, 5}}


def run_attack(kind: str, scenario: Scenario, work: Path, rng: random.Random) -> Result:
    root = work / "attacked"
    if root.exists():
        shutil.rmtree(root)
    shutil.copytree(scenario.root, root, symlinks=True)
    expect = ATTACKS[kind](root, rng, scenario)
    code, first = verify(root, scenario)
    detected = code in EXIT_FOR[expect.category]
    located: bool | None = None
    if expect.log is not None and first is not None:
        located = getattr(first, "log", None) == expect.log and (expect.line is None or first.line == expect.line)
    elif expect.where is not None and first is not None:
        located = expect.where in getattr(first, "log", "")
    elif expect.log is not None or expect.where is not None:
        located = False
    describe = first.describe() if first is not None else "nothing found"  # type: ignore[attr-defined]
    shutil.rmtree(root)
    return Result(kind, detected, located, code, describe)


def false_positive_checks(scenario: Scenario, work: Path, rng: random.Random) -> list[tuple[str, int]]:
    """(case, exit code) for a clean copy and for a crash-torn tail: both must exit 0."""
    out = [("clean", verify(scenario.root, scenario)[0])]
    root = work / "torn"
    shutil.copytree(scenario.root, root, symlinks=True)
    audit, _ = _pick_log(root, rng, scenario.sessions)
    line = _lines(audit)[-1]
    with (audit / LOG).open("ab") as out_file:
        out_file.write(line[: rng.randint(1, len(line) - 2)])  # a crash mid-append
    out.append(("torn-tail", verify(root, scenario)[0]))
    shutil.rmtree(root)
    return out
