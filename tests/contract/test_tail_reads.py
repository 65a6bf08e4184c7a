"""The ends of append-only files are read in two steps (`read_tail(..., enough=)`): a small
window first (on disk FIRST_TAIL bytes, on PostgreSQL the rows of the first round trip), the
caller's whole window only when the small one does not hold what the caller needs. Whatever the lines' lengths, the answer is the one a single read of the whole
window gives."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from securestore.backends.postgres.root import open_pg_root
from securestore.backends.postgres.url import parse_target
from securestore.backends.tree import TreeDir, holds_last_line, read_tail_until
from securestore.fs import FsContext, open_root
from securestore.fs.lines import FIRST_TAIL
from tests.support.pg_stores import set_up_database

pytestmark = pytest.mark.both_backends

_WINDOW = 64 * 1024


@pytest.fixture
def directory(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[TreeDir]:
    if backend == "postgres":
        root: TreeDir = open_pg_root(parse_target(set_up_database(request.getfixturevalue("pg_server")), {}),
                                     FsContext())
    else:
        (tmp_path / "r").mkdir(mode=0o700)
        root = open_root(str(tmp_path / "r"), FsContext(), create=False)
    with root, root.make_dir("d") as made:
        yield made


def _write(directory: TreeDir, lines: list[bytes]) -> bytes:
    directory.ensure_file("f")
    for line in lines:  # one append per line, as the store writes them
        directory.append("f", line, durable=False)
    return b"".join(lines)


@pytest.mark.parametrize("shape", ["short lines", "a long last line", "a long torn fragment", "one long line",
                                   "a short file"])
def test_a_two_step_tail_read_answers_as_one_read_of_the_whole_window(directory: TreeDir, shape: str) -> None:
    lines = {
        "short lines": [b"%05d short\n" % n for n in range(2000)],
        "a long last line": [b"%05d short\n" % n for n in range(2000)] + [b"L" * (3 * FIRST_TAIL) + b"\n"],
        "a long torn fragment": [b"%05d short\n" % n for n in range(2000)] + [b"T" * (2 * FIRST_TAIL)],
        "one long line": [b"X" * (2 * FIRST_TAIL) + b"\n"],
        "a short file": [b"one\n", b"two\n"],
    }[shape]
    data = _write(directory, lines)
    size, tail = read_tail_until(directory, "f", _WINDOW, holds_last_line)
    assert size == len(data) and data.endswith(tail)
    whole = data[-_WINDOW:]
    complete = [line for line in lines if line.endswith(b"\n")]
    # What a caller takes from a tail: the last complete line and the fragment after it.
    assert tail[tail.rfind(b"\n", 0, tail.rfind(b"\n")) + 1:] == whole[whole.rfind(b"\n", 0, whole.rfind(b"\n")) + 1:]
    assert tail.endswith(complete[-1] + (lines[-1] if not lines[-1].endswith(b"\n") else b""))
    small = shape in ("short lines", "a short file")
    assert (len(tail) <= FIRST_TAIL) == small  # the whole window only when the small one falls short
