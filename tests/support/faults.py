"""The machinery the crash sweeps share (tests/crash/): the operations, a simulated process
death, the states a fault may leave, the read-only check an auditor makes right after a crash,
and rounds of real SIGKILLs against the writer child."""

from __future__ import annotations

import os
import random
import shutil
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from securestore import SecureStore, verify_store
from securestore.api.verify import VerifyOptions
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from tests.support.keys import KEYS, MASTER_KEY, SIGNING
from tests.support.stores import spawn_writer
from tests.support.syscall_trace import OPERATIONS as ALL_OPERATIONS
from tests.support.syscall_trace import allowed_states, state_of

__all__ = ["OPERATIONS", "Crash", "die", "intermediate_states", "kill_rounds", "run_clean", "state_of",
           "verify_before_any_writer"]


class Crash(BaseException):
    """The process died: no further OS call reaches the disk."""


def die(fds_before: set[str]) -> None:
    """What the kernel does when a process dies: close its descriptors (releasing its flocks)."""
    for fd in set(os.listdir("/proc/self/fd")) - fds_before:
        try:
            os.close(int(fd))
        except OSError:
            pass


# The operations and their intermediate steps are the syscall replay's (support/syscall_trace.py),
# less its 16-item turn, which only the replay sweeps (it would double the OS-call sweeps' time).
OPERATIONS = {name: operation for name, operation in ALL_OPERATIONS.items() if name != "turn-16-items"}


def verify_before_any_writer(root: Path, seed: bytes, where: str) -> None:
    """What an auditor sees right after the crash, before any writer reopened the store: the
    old or the new state, or a change in flight (exit 6 naming the dangling intent), never
    tampering or truncation."""
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        report = verify_store(store, options=VerifyOptions(seed=seed, public_key=SIGNING.verifier))
    first = report.failures[0].describe() if report.failures else ""
    assert report.exit_code in (0, 6), f"{where}: exit {report.exit_code}: {first}"
    assert all(f.check == "dangling-intent" for f in report.incomplete), \
        f"{where}: {[f.describe() for f in report.incomplete]}"


def intermediate_states(baseline: Path, tmp: Path, op_name: str, session: str) -> list[Any]:
    """The states after each intermediate step (the replay's list, less the state before)."""
    return allowed_states(baseline, tmp, op_name)[1:]


def run_clean(
    baseline: Path, tmp: Path, operation: Callable[[SecureStore], object], session: str
) -> tuple[Any, Any, list[str]]:
    """State before and after the operation without faults, and the OS calls it makes."""
    root = tmp / "clean"
    shutil.copytree(baseline, root)
    calls: dict[str, Any] = {"names": [], "armed": False}

    def hook(name: str, args: tuple[object, ...]) -> None:
        if calls["armed"]:
            calls["names"].append(name)

    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=instrumented(REAL_OS, hook)) as store:
        before = state_of(store, session)
        calls["armed"] = True
        operation(store)
        calls["armed"] = False
        after = state_of(store, session)
    assert before != after or session == "sess"
    return before, after, calls["names"]


def kill_rounds(root: Path, rounds: int, seed: int) -> int:
    """Kill a writer `rounds` times after a random number of acknowledgements; check each time
    that every acknowledged item survived. Returns the number of items written."""
    rng = random.Random(seed)
    acked = -1
    for _ in range(rounds):
        child = spawn_writer(root, "write")
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "open"
        for _ in range(rng.randint(1, 12)):
            line = child.stdout.readline()
            assert line, "writer died on its own"
            acked = int(line)
        child.send_signal(signal.SIGKILL)  # mid-workload: it keeps writing until this lands
        child.wait()
        child.stdout.close()
        child.stdin.close()  # type: ignore[union-attr]
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            items = [item["i"] for item in store.read_items("w")]
        assert items == list(range(len(items))), "a gap or a duplicate after a crash"
        assert len(items) > acked, f"acknowledged item {acked} lost ({len(items)} items survived)"
    return acked
