"""Real processes: a writer killed with SIGKILL mid-workload loses no acknowledged item
(tools/soak_kill.py runs the same rounds for as long as you like)."""

from __future__ import annotations

from pathlib import Path

import pytest

from securestore import SecureStore, verify_store
from tests.support.faults import kill_rounds
from tests.support.keys import KEYS, MASTER_KEY

pytestmark = pytest.mark.crash  # 50 kill -9 rounds: outside the fast loop


@pytest.mark.crash
def test_sigkill_mid_workload_loses_no_acknowledged_item(tmp_path: Path, root: Path) -> None:
    kill_rounds(root, rounds=50, seed=2026)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.open_session("w") as session:  # a writer reconciles whatever the last kill cut
            assert session.slot("progress").version >= 0
        report = verify_store(store)
        assert report.ok, report.failures[0].describe()
