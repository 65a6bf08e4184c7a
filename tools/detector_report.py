"""Detection rate on the secret corpus and false-positive rate on the benign corpus.

    python3 tools/detector_report.py            # recall, kinds, false positives
    python3 tools/detector_report.py --timing   # and the time find_secrets takes over each corpus

A planted secret counts as detected only when the WHOLE secret lies inside one finding: a
partial redaction leaks the rest.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: securestore, tests.support

from tests.support.corpus import Planted, benign_corpus, corpus_kinds, secret_corpus  # noqa: E402

from securestore.core.secrets import find_secrets


def detected(planted: Planted) -> bool:
    text = planted.message["content"]
    at = text.find(planted.secret)
    return at >= 0 and any(f.start <= at and at + len(planted.secret) <= f.end for f in find_secrets(text))


def _report_recall(secrets: list[Planted]) -> None:
    missed = [p for p in secrets if not detected(p)]
    kinds = corpus_kinds(secrets)
    print(f"secret corpus: {len(secrets) - len(missed)}/{len(secrets)} detected "
          f"({100 * (len(secrets) - len(missed)) / len(secrets):.1f}%), {len(kinds)} kinds")
    if missed:
        missed_by_kind = Counter(p.kind for p in missed)
        for kind, count in sorted(missed_by_kind.items()):
            names = ", ".join(p.name for p in missed if p.kind == kind)
            print(f"  missed {kind}: {kinds[kind] - count}/{kinds[kind]} detected (missed: {names})")


def _report_false_positives(benign: list[str]) -> None:
    flagged = [text for text in benign if find_secrets(text)]
    print(f"benign corpus: {len(flagged)}/{len(benign)} flagged = {100 * len(flagged) / len(benign):.2f}% false positives")
    for text in flagged:
        kinds = sorted({f.kind for f in find_secrets(text)})
        print(f"  flagged ({', '.join(kinds)}): {text[:80]!r}")


def _report_timing(label: str, texts: list[str], runs: int = 7) -> None:
    size = sum(len(text.encode()) for text in texts)
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        for text in texts:
            find_secrets(text)
        best = min(best, time.perf_counter() - start)
    print(f"timing {label}: {len(texts)} strings, {size / 1024:.0f} KiB: best of {runs} runs {best * 1000:.1f} ms "
          f"({size / best / 2**20:.2f} MiB/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--timing", action="store_true", help="also time find_secrets over both corpora")
    args = parser.parse_args()
    secrets = secret_corpus()
    benign = benign_corpus()
    _report_recall(secrets)
    _report_false_positives(benign)
    if args.timing:
        _report_timing("benign corpus", benign)
        _report_timing("secret corpus", [p.message["content"] for p in secrets])


if __name__ == "__main__":
    main()
