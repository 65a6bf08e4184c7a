"""Detection rate on the secret corpus and false-positive rate on the benign corpus.

    python3 tools/detector_report.py
"""

from __future__ import annotations

import sys
from pathlib import Path

here = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(here), str(here / "tests")]

from corpus import benign_corpus, secret_corpus  # noqa: E402

from securestore.secrets import find_secrets  # noqa: E402


def main() -> None:
    secrets = secret_corpus()
    missed = [p.name for p in secrets if not any(
        p.message["content"][f.start:f.end].find(p.secret[:12]) >= 0 or p.secret in p.message["content"][f.start:f.end]
        for f in find_secrets(p.message["content"]))]
    benign = benign_corpus()
    flagged = [text[:50] for text in benign if find_secrets(text)]
    print(f"secret corpus: {len(secrets) - len(missed)}/{len(secrets)} detected; missed: {missed or 'none'}")
    print(f"benign corpus: {len(flagged)}/{len(benign)} flagged = {100 * len(flagged) / len(benign):.1f}% false positives")
    for text in flagged:
        print(f"  flagged: {text!r}")


if __name__ == "__main__":
    main()
