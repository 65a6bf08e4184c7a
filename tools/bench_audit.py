"""Audit trail benchmark: verify throughput on a long log, the write-side cost of MACs and
checkpoints, and proof sizes.

    python3 tools/bench_audit.py [--records 1000000] [--dir PATH]

1. Writes a store-scope log of N records through AuditLog (realistic intent/outcome pairs,
   the default 1024-record epochs, a signed checkpoint at every boundary). Appends are not
   fsynced here: this part measures the log, not the disk.
2. Verifies it with the seed and the trusted key in a fresh process (MAC, epoch, chain,
   Merkle and checkpoint checks), on one core; reports records/s and peak RSS. Runs the same
   on a 10x shorter prefix copy to show memory does not grow with the log.
3. Write side: the cost per record of building a MACed record vs an unMACed one, and of one
   checkpoint (flush + Ed25519 sign + durable append), amortized over an epoch.
4. Proof sizes at the full length: inclusion and consistency proofs, bytes and time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from securestore.audit.chain import Actor, ChainHead, build_record, encode_record  # noqa: E402
from securestore.audit.checkpoint import CHECKPOINTS_FILE  # noqa: E402
from securestore.audit.keys import EpochRule, RecordMac, mac_key, new_signer_key, store_log_key  # noqa: E402
from securestore.backends.local.auditlog import LOG_FILE, AuditLog
from securestore.audit.merkle import Frontier, RangeHasher, leaf_hash, ranges_for_consistency, ranges_for_inclusion  # noqa: E402
from securestore.audit.verify import LogVerifier  # noqa: E402
from securestore.fs import FsContext, iter_lines, open_root  # noqa: E402

STORE_ID = "5" * 32
LOG_ID = "6" * 32
SEED = bytes(range(32))
SIGNER = new_signer_key("bench.audit", bytes(range(64, 96)))


def _records(count: int):  # noqa: ANN202
    """Realistic store-log traffic: intent/outcome pairs over 1000 session targets, created, then
    deleted, then created again (a lifecycle the verifier accepts)."""
    for i in range(count):
        pair = i // 2
        target = f"sessions/k-{pair % 1000:08d}"
        creating = pair // 1000 % 2 == 0
        if i % 2 == 0:
            if creating:
                yield {"kind": "intent", "op": "session.create", "target": target, "sha256": f"{i:064x}",
                       "size": 400, "also": []}
            else:
                yield {"kind": "intent", "op": "session.delete", "target": target, "sha256": None, "size": None,
                       "also": []}
        else:
            yield {"kind": "outcome", "txn": i, "result": "committed", "sha256": f"{i - 1:064x}" if creating else None}


def write_log(directory: str, count: int) -> int:
    """Returns how many records the log holds: the genesis plus whole intent/outcome pairs."""
    ctx = FsContext()
    clock = {"now": 1_700_000_000_000}

    def tick() -> int:
        clock["now"] += 1  # 1 ms per record: epochs end by count (1024), not by time
        return clock["now"]

    with open_root(directory, ctx, create=True) as audit:
        log = AuditLog(audit, clock=tick, actor=Actor(uid=1000, pid=4242, principal="agent-7"), max_line=64 * 1024,
                       signer=SIGNER)
        log.create(LOG_ID, {"store": STORE_ID, "scope": "store", "session": None}, store_id=STORE_ID,
                   chain=store_log_key(SEED, STORE_ID, LOG_ID), rule=EpochRule(1024, 3600))
        pairs = (count - 1) // 2 * 2  # whole pairs: no intent left open
        for fields in _records(pairs):
            log.append(fields, durable=False)
        log.seal()
    return 1 + pairs


def verify_log(directory: str) -> dict[str, float]:
    ctx = FsContext()
    with open_root(directory, ctx, create=False) as audit:
        verifier = LogVerifier(
            "bench", scope="store", store_id=STORE_ID, chain_for=lambda log: store_log_key(SEED, STORE_ID, log),
            trusted=SIGNER.verifier, checkpoints=iter_lines(audit, CHECKPOINTS_FILE, 64 * 1024),
        )
        started = time.perf_counter()
        for offset, line in iter_lines(audit, LOG_FILE, 64 * 1024 + 1):
            verifier.feed(offset, line)
        report = verifier.finish()
        elapsed = time.perf_counter() - started
    assert report.ok and not report.incomplete, report.failure
    return {"records": report.records, "seconds": elapsed, "rate": report.records / elapsed,
            "checkpoints": report.checkpoints, "epochs": report.epochs,
            "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _verify_in_child(directory: str) -> dict[str, float]:
    out = subprocess.run([sys.executable, __file__, "--verify-only", directory], capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def write_side(count: int = 20_000) -> dict[str, float]:
    head, actor = ChainHead(LOG_ID, 1, "0" * 64), Actor(uid=1000, pid=4242, principal="agent-7")
    mac = RecordMac(mac_key(bytes(32)))
    fields = list(_records(count))
    started = time.perf_counter()
    for item in fields:
        build_record(head, 1, actor, item, epoch=0, mac=mac)
    with_mac = (time.perf_counter() - started) / count
    from securestore.audit.chain import _RECORD

    started = time.perf_counter()
    for item in fields:  # the same record without a MAC: validate, encode, hash
        record = _RECORD.validate_python({"v": 2, "log": LOG_ID, "seq": 1, "ts": 1, "prev": "0" * 64, "actor": actor,
                                          "epoch": 0, "mac": "0" * 64, **item})
        leaf_hash(encode_record(record))
    without_mac = (time.perf_counter() - started) / count
    with tempfile.TemporaryDirectory() as tmp:
        directory = os.path.join(tmp, "log")
        write_log(directory, 2048)
        ctx = FsContext()
        with open_root(directory, ctx, create=False) as audit:
            log = AuditLog(audit, clock=lambda: 1_800_000_000_000, actor=actor, max_line=64 * 1024, signer=SIGNER)
            log.load()
            seals = []
            for _ in range(50):
                log.append({"kind": "rejected", "op": "slot.put", "target": None, "reason": "bench"}, durable=False)
                started = time.perf_counter()
                log.seal()
                seals.append(time.perf_counter() - started)
    seals.sort()
    return {"record_with_mac_us": with_mac * 1e6, "record_without_mac_us": without_mac * 1e6,
            "checkpoint_median_ms": seals[len(seals) // 2] * 1e3,
            "checkpoint_per_record_us_at_1024": seals[len(seals) // 2] / 1024 * 1e6}


def proofs(directory: str, size: int) -> dict[str, float]:

    ctx = FsContext()
    out: dict[str, float] = {}
    for kind, ranges in (("inclusion", ranges_for_inclusion(size // 3, size)),
                         ("consistency", ranges_for_consistency(size // 2, size))):
        started = time.perf_counter()
        hasher = RangeHasher(ranges)
        old = Frontier()
        with open_root(directory, ctx, create=False) as audit:
            for index, (_, line) in enumerate(iter_lines(audit, LOG_FILE, 64 * 1024 + 1)):
                if index == size:
                    break
                leaf = leaf_hash(line[:-1])
                hasher.add(leaf)
                if index < size // 2:
                    old.add(leaf)
        path = hasher.result()
        out[f"{kind}_nodes"] = len(path)
        out[f"{kind}_path_bytes"] = 32 * len(path)
        out[f"{kind}_seconds"] = time.perf_counter() - started
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", default=None)
    parser.add_argument("--verify-only", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.verify_only:
        print(json.dumps(verify_log(args.verify_only)))
        return
    base = Path(args.dir or tempfile.mkdtemp(prefix="ss-bench-audit-"))
    long_log, short_log = str(base / "long"), str(base / "short")
    started = time.perf_counter()
    records = write_log(long_log, args.records)
    written = time.perf_counter() - started
    size = os.path.getsize(os.path.join(long_log, LOG_FILE))
    print(f"wrote {records} records ({size / 1e6:.0f} MB) in {written:.1f} s "
          f"({records / written:,.0f} records/s, appends not fsynced)")
    write_log(short_log, args.records // 10)
    for label, directory in (("full", long_log), ("1/10", short_log)):
        result = _verify_in_child(directory)
        print(f"verify {label}: {result['records']:,.0f} records in {result['seconds']:.2f} s = "
              f"{result['rate']:,.0f} records/s; {result['epochs']:.0f} epochs, {result['checkpoints']:.0f} "
              f"checkpoints checked; peak RSS {result['max_rss_mb']:.0f} MB")
    side = write_side()
    print(f"write side: building a record {side['record_with_mac_us']:.1f} us with its MAC vs "
          f"{side['record_without_mac_us']:.1f} us without; one checkpoint (flush + sign + durable append) "
          f"{side['checkpoint_median_ms']:.2f} ms median = {side['checkpoint_per_record_us_at_1024']:.2f} us per "
          f"record over a 1024-record epoch")
    sizes = proofs(long_log, records)
    print(f"proofs at size {records:,}: inclusion {sizes['inclusion_nodes']:.0f} nodes "
          f"({sizes['inclusion_path_bytes']:.0f} path bytes), built in {sizes['inclusion_seconds']:.2f} s; "
          f"consistency {sizes['consistency_nodes']:.0f} nodes ({sizes['consistency_path_bytes']:.0f} bytes), "
          f"{sizes['consistency_seconds']:.2f} s")


if __name__ == "__main__":
    main()
