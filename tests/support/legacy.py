"""A legacy `sessions.json` map for the migration tests: duplicates once trimmed, a key long
enough to be hashed, a planted credential, and several timestamp formats."""

from __future__ import annotations

import json
from pathlib import Path

from tests.support.corpus import secret_corpus

LONG_KEY = "agent:main:" + "x" * 189  # 200 bytes: a hashed session name


def legacy_map() -> dict[str, object]:
    return {
        "agent:main:telegram:42": {
            "sessionId": "a1", "updatedAt": 1_763_000_000_000, "label": "Support chat", "model": "gpt-4o",
            "messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": secret_corpus()[0].message["content"]}],
        },
        " agent:main:telegram:42": {"sessionId": "a0", "updatedAt": "2025-01-01T00:00:00Z"},  # same key once trimmed
        LONG_KEY: {"sessionId": "b", "updatedAt": 1_700_000_000, "cwd": "/srv/app"},
        "agent:cli:7": {"sessionId": "c", "transcript": []},
    }


def write(path: Path, value: object) -> Path:
    path.write_text(json.dumps(value))
    return path
