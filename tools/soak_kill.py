"""SIGKILL soak: kill a writer mid-workload many times; no acknowledged item may be lost.

    python3 tools/soak_kill.py [--rounds 500] [--seed N]

The same check as tests/crash/test_kill.py (50 rounds in the crash suite), for as many rounds as you like.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: securestore, tests.support

from tests.support.faults import kill_rounds  # noqa: E402
from tests.support.keys import KEYS, MASTER_KEY  # noqa: E402
from tests.support.stores import make_store  # noqa: E402

from securestore import SecureStore, verify_store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="ss-soak-")) / "store"
    make_store(root)
    start = time.perf_counter()
    acked = kill_rounds(root, args.rounds, args.seed)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.open_session("w").close()
        report = verify_store(store)
    print(f"{args.rounds} SIGKILL rounds (seed {args.seed}) in {time.perf_counter() - start:.0f} s: "
          f"{acked + 1} items acknowledged, 0 lost; audit verify {'OK' if report.ok else 'FAILED'}")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
