"""The core of a listing: reading a 10,000-line listing index (`index/updates.log`, each line
embedding its session's summary) into one page of every session, first in this process (cold:
every line parsed, validated and its key re-encoded) and again (warm: checked lines are cached
by their bytes). Synthetic: the index alone, no session directories. Best of 5 for warm.

    python3 tools/bench_index_read.py [N]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from securestore.backends.local.index import IndexReader  # noqa: E402
from securestore.core.listing import Page, SessionSummary, summary_line  # noqa: E402
from securestore.core.policy import encode_name  # noqa: E402
from securestore.fs import FsContext, open_root  # noqa: E402


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    index = os.path.join(tempfile.mkdtemp(), "index")
    os.mkdir(index, 0o700)
    os.mkdir(os.path.join(index, "entries"), 0o700)
    lines = []
    for i in range(count):
        key = f"adk:my-app:user{i % 100}:session-{i:05d}"
        lines.append(summary_line(SessionSummary(key=key, name=encode_name(key), workspace=f"adk:my-app:user{i % 100}",
                                                 created_ms=1000 + i, updated_ms=2000 + i, items=i % 7)))
    for name, data in (("updates.log", b"".join(lines)), ("created.log", b"")):
        fd = os.open(os.path.join(index, name), os.O_CREAT | os.O_WRONLY, 0o600)
        os.write(fd, data)
        os.close(fd)

    def page() -> Page:
        with open_root(index, FsContext(), create=False, what="index") as directory:
            reader = IndexReader(directory, max_index_bytes=1 << 30)
            return reader.page(order="updated", page_size=count + 1, cursor=None, workspace=None)

    started = time.perf_counter()
    listed = len(page().sessions)
    cold = time.perf_counter() - started
    warm = min(_timed(page) for _ in range(5))
    print(f"{listed} sessions: cold {cold * 1000:.1f} ms, warm {warm * 1000:.1f} ms")


def _timed(run: object) -> float:
    started = time.perf_counter()
    run()  # type: ignore[operator]
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
