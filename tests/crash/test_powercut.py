"""Power cuts: at every OS call of every write, and right after a write was acknowledged.
Unsynced bytes and directory entries are dropped (see tests/support/powercut.py). Afterwards the state is
the one before or after the write, never a mix; an acknowledged write is always there; and
verification passes once a writer has reconciled."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from securestore import Limits, SecureStore, SecureStoreError, StoreConfig, verify_store
from tests.support.faults import OPERATIONS, die, intermediate_states, run_clean, state_of, verify_before_any_writer
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.powercut import Disk, PowerCut
from tests.support.stores import make_store, seed_of

pytestmark = pytest.mark.crash  # a sweep over every OS call: outside the fast loop


@pytest.mark.parametrize("op_name", sorted(OPERATIONS))
def test_power_cut_at_every_call_and_after_acknowledgement(baseline: Path, tmp_path: Path, op_name: str) -> None:
    operation, session = OPERATIONS[op_name]
    before, after, names = run_clean(baseline, tmp_path, operation, session)
    allowed = [before, *intermediate_states(baseline, tmp_path, op_name, session), after]
    for k in range(len(names) + 1):  # k == len(names): the cut comes right after the call returned
        root = tmp_path / f"cut{k}"
        shutil.copytree(baseline, root)
        disk = Disk(root)
        fds_before = set(os.listdir("/proc/self/fd"))
        acknowledged = False
        try:
            with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=disk.api()) as store:
                disk.cut_at = disk.calls + k
                operation(store)
                acknowledged = True
                disk.dead = True  # the power goes out as soon as the caller was told "done"
        except (SecureStoreError, PowerCut):
            pass
        if k == len(names):
            assert acknowledged, "the write did not complete without a cut: the harness is broken"
        die(fds_before)
        disk.restore()
        verify_before_any_writer(root, seed_of(baseline), f"cut at call {k + 1}")
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            store.put("other", "probe", k)
            if session in {info.key for info in store.scan_sessions()[0]}:
                with store.open_session(session):
                    pass
            seen = state_of(store, session)
            if acknowledged:
                assert seen == after, f"cut after call {k}: an acknowledged write was lost"
            else:
                assert seen in allowed, f"cut at call {k + 1}: mixed state {seen!r}"
            report = verify_store(store)
            assert report.ok, f"cut at call {k + 1}: {report.failures[0].describe()}"


def test_a_power_cut_while_a_write_compacts_the_listing_index_hides_no_session(tmp_path: Path) -> None:
    config = StoreConfig(limits=Limits(index_compact_bytes=2048))
    baseline = make_store(tmp_path / "baseline", config)
    with SecureStore(baseline, config, master_key=MASTER_KEY, environ=KEYS) as store:
        for i in range(12):
            store.put(f"s{i}", "slot", i)
        updates = baseline / "index" / "updates.log"
        size = updates.stat().st_size
        while True:  # write until a compaction: then it is due again at twice that size
            store.put("s0", "slot", "grow")
            if updates.stat().st_size < size:
                break
            size = updates.stat().st_size
        due_at = max(2048, 2 * updates.stat().st_size)
        line = len(updates.read_bytes().splitlines()[-1]) + 1
        while updates.stat().st_size + 2 * line <= due_at:  # one of the next four writes compacts it
            store.put("s0", "slot", "grow")
        live = {s.key for s in store.list_sessions(page_size=100).sessions}

    def operation(store: SecureStore) -> None:
        for _ in range(4):
            store.put("s0", "slot", "compacting")

    clean = tmp_path / "clean"
    shutil.copytree(baseline, clean)
    names: list[str] = []
    with SecureStore(clean, config, master_key=MASTER_KEY, environ=KEYS,
                     os_api=instrumented(REAL_OS, lambda name, args: names.append(name))) as store:
        names.clear()
        operation(store)
    assert (clean / "index" / "updates.log").stat().st_size < updates.stat().st_size  # it compacted
    for k in range(len(names) + 1):
        root = tmp_path / f"cut{k}"
        shutil.copytree(baseline, root)
        disk = Disk(root)
        fds_before = set(os.listdir("/proc/self/fd"))
        try:
            with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS, os_api=disk.api()) as store:
                disk.cut_at = disk.calls + k
                operation(store)
        except (SecureStoreError, PowerCut):
            pass
        die(fds_before)
        disk.restore()
        with SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS) as store:
            page = store.list_sessions(page_size=100)
            assert {s.key for s in page.sessions} == live, f"cut at call {k + 1}: {page.skipped}"
            with store.open_session("s0"):  # a writer reconciles the write the cut interrupted
                pass
            report = verify_store(store)
            assert report.ok, f"cut at call {k + 1}: {report.failures[0].describe()}"
