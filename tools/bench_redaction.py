"""Redaction and `prepare` (validate, redact, cap) throughput on the benchmark's 500-byte agent
items (tools/bench/corpus.py), best of 7 passes over 400 items, in MB/s of compact JSON.

    python3 tools/bench_redaction.py [TREE]    # TREE: a securestore checkout (default: this one)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

TREE = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent)
sys.path.insert(0, TREE)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import orjson  # noqa: E402
from bench.corpus import items  # noqa: E402

from securestore.config import Limits  # noqa: E402
from securestore.core.prepare import prepare  # noqa: E402
from securestore.core.secrets.redact import redact  # noqa: E402


class _Sink:
    """Keeps nothing: the items hold no secret, and this measures the scan, not the vault."""

    def keep(self, value: Any, kind: str) -> tuple[str, str]:
        return ("redacted", "x")

    def mark(self) -> int:
        return 0

    def rollback(self, mark: int | None = None) -> None:
        pass


def main() -> None:
    data = items(0, 400)
    size = sum(len(orjson.dumps(item)) for item in data)
    limits = Limits()

    def best(fn: Callable[[Any], object]) -> float:
        fastest = float("inf")
        for _ in range(7):
            start = time.perf_counter()
            for item in data:
                fn(item)
            fastest = min(fastest, time.perf_counter() - start)
        return fastest

    for label, fn in (("redact", lambda item: redact(item, _Sink(), max_secrets=1024)),
                      ("prepare", lambda item: prepare(item, _Sink(), limits))):  # type: ignore[arg-type]
        seconds = best(fn)
        print(f"{label} on bench items: {size / seconds / 1e6:.1f} MB/s, {seconds / len(data) * 1e6:.0f} us/item")


if __name__ == "__main__":
    main()
