"""What a per-write session open costs as the active journal segment grows: the pattern of
every adapter that opens a session per write (LangGraph's default saver, ADK's append_event,
`store.put`, each CLI write). Median of 30 open+append+close and open+len+close cycles on a
session holding one item, and on one whose active segment holds 200 items of ~4.5 KB (~900 KB,
just under the 1 MiB seal threshold; an open replays that segment).

    python3 tools/bench_open.py
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from securestore import SecureStore  # noqa: E402
from tests.support.keys import KEYS, MASTER_KEY  # noqa: E402
from tests.support.stores import make_store  # noqa: E402

ITEM = {"messages": [{"role": "user", "content": "word " * 900}]}  # ~4.5 KB


def median_ms(cycle: object, rounds: int = 30) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        cycle()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    root = make_store(Path(tempfile.mkdtemp()) / "store")
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        for key, items in (("small", 1), ("big", 200)):
            with store.open_session(key, create=True) as session:
                for _ in range(items):
                    session.append_items([ITEM])

        def append(key: str) -> None:
            with store.open_session(key) as session:
                session.append_items([{"n": 1}])

        def count(key: str) -> None:
            with store.open_session(key) as session:
                len(session)

        for key in ("small", "big"):
            print(f"{key:6} open+append+close {median_ms(lambda: append(key)):6.2f} ms   "
                  f"open+len+close {median_ms(lambda: count(key)):6.2f} ms")


if __name__ == "__main__":
    main()
