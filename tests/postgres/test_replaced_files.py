"""A file replaced whole is kept in chunks (PgDir.write_atomic): every read of it (whole, by
lines forward and backward, its tail) gives back exactly its bytes, a replacement leaves no
chunk of the old content behind (so a listing's first page reads the end of a compacted update
log, not all of it)."""

from __future__ import annotations

import psycopg

from securestore.backends.postgres.root import open_pg_root
from securestore.backends.postgres.tree import REPLACE_CHUNK
from securestore.backends.postgres.url import parse_target
from securestore.fs import FsContext
from tests.support.pg_stores import set_up_database
from tests.support.postgres import PostgresServer


def _lines(count: int, width: int) -> bytes:
    return b"".join(b"%06d " % n + b"x" * (n % width) + b"\n" for n in range(count))


def test_a_big_replaced_file_is_kept_in_chunks_and_reads_back_exactly(pg_server: PostgresServer) -> None:
    url = set_up_database(pg_server)
    big, small = _lines(3000, 97), _lines(10, 5)
    assert len(big) > 8 * REPLACE_CHUNK
    with open_pg_root(parse_target(url, {}), FsContext()) as root, root.make_dir("d") as directory:
        directory.write_atomic("f", big)
        assert directory.read("f", len(big)) == big
        assert b"".join(line for _, line in directory.iter_lines("f", 1024)) == big
        start = len(big) - 3 * REPLACE_CHUNK - 7  # inside a chunk and inside a line
        assert b"".join(line for _, line in directory.iter_lines("f", 1024, start=start)) == big[start:]
        backward = [line for _, line in directory.lines_backward("f", len(big), 1024)]
        assert backward == list(reversed(big.split(b"\n")[:-1]))
        assert directory.read_tail("f", 1000) == (len(big), big[-1000:])
        with psycopg.connect(url) as watcher:
            rows = watcher.execute("SELECT count(*), max(length(data)) FROM securestore.chunks c JOIN "
                                   "securestore.nodes n ON n.id = c.node WHERE n.name = 'f'").fetchone()
        assert rows == (-(-len(big) // REPLACE_CHUNK), REPLACE_CHUNK)
        directory.write_atomic("f", small)
        assert directory.read("f", len(big)) == small
        assert [line for _, line in directory.lines_backward("f", len(small), 1024)] \
            == list(reversed(small.split(b"\n")[:-1]))
        with psycopg.connect(url) as watcher:
            left = watcher.execute("SELECT count(*) FROM securestore.chunks c JOIN securestore.nodes n "
                                   "ON n.id = c.node WHERE n.name = 'f'").fetchone()
        assert left == (1,)
        directory.write_atomic("empty", b"")
        assert directory.read("empty", 10) == b"" and directory.size_of("empty") is not None
