"""Python CPU per durable single-item append, with fsync stubbed out (the disk's cost removed):
process time, best of 5 runs of 200 appends of one 480-byte agent item on an open session.

    python3 tools/cpu_append.py [TREE]    # TREE: a securestore checkout (default: this one)

Run it interleaved against another checkout to compare (the figure moves with the machine's load).
"""

from __future__ import annotations

import dataclasses
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent))

from securestore import SecureStore  # noqa: E402
from securestore.fs.osapi import REAL_OS  # noqa: E402
from tests.support.keys import KEYS, MASTER_KEY  # noqa: E402
from tests.support.stores import make_store  # noqa: E402

ITEM = {"role": "assistant", "content": "The deployment pipeline failed at the integration stage because the " * 5,
        "tool_calls": [{"id": "call_1", "name": "search_logs", "arguments": {"query": "integration failure", "limit": 20}}]}


def main() -> None:
    no_fsync = dataclasses.replace(REAL_OS, fsync=lambda fd: None)
    root = make_store(Path(tempfile.mkdtemp()) / "store")
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS, os_api=no_fsync) as store, \
            store.open_session("cpu", create=True) as session:
        for _ in range(50):
            session.append_items([ITEM])
        runs = []
        for _ in range(5):
            start = time.process_time()
            for _ in range(200):
                session.append_items([ITEM])
            runs.append((time.process_time() - start) / 200 * 1e6)
    print(f"CPU us per append (fsync stubbed), best of 5x200: {min(runs):.0f}  (all: {[round(r) for r in runs]})")


if __name__ == "__main__":
    main()
