"""Raw access to a store's tree, on either backend, behind the store's back: what an attacker
(or a crash) with full power over the storage can do. Paths are relative to the store root,
"/"-separated ("sessions/<dir>/journal.log", "audit/log.jsonl").

On disk that is the files themselves. On PostgreSQL it is the rows `PgDir` keeps
(securestore/backends/postgres/tree.py, statements.py): a directory or file is a `nodes` row
(parent, name), a file's bytes are `chunks` rows, or `audit_records` rows for the audit
trail's files (audit/log.jsonl and audit/checkpoints.jsonl). The accessor connects as the
server's superuser with `session_replication_role = replica`, so the append-only guard
triggers do not fire: exactly the power of a database superuser, whose tampering only
verification can catch. A rewritten file keeps its identity (inode / node id and generation),
as `Path.write_bytes` keeps the inode."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import orjson
import psycopg
from psycopg import sql

from securestore.audit.checkpoint import peek_note
from securestore.backends.postgres.tree import AUDIT_FILES
from securestore.core.policy import encode_name

from .stores import tree_snapshot

Snapshot = dict[str, tuple[int, bytes | None]]  # path -> (mode, content of a file; None for a directory)
ROOT = 0  # the parent of the store root's entries (schema.py)
RETIRED = -1  # the parent of a deleted session's audit files


def session_path(key: str) -> str:
    """The tree path of the session directory of `key` ("sessions/<encoded name>")."""
    return f"sessions/{encode_name(key)}"


def raw_tree(root: Path | str) -> FsRaw | PgRaw:
    if isinstance(root, str) and root.startswith("postgresql://"):
        return PgRaw(root)
    return FsRaw(Path(root))


class RawBase:
    """What both backends offer on top of read/write/list (see the subclasses)."""

    def read(self, path: str) -> bytes:
        raise NotImplementedError

    def write(self, path: str, data: bytes) -> None:
        raise NotImplementedError

    def list(self, path: str = "") -> list[str]:
        raise NotImplementedError

    def is_dir(self, path: str) -> bool:
        raise NotImplementedError

    def is_file(self, path: str) -> bool:
        raise NotImplementedError

    def snapshot(self, path: str = "", *, skip: frozenset[str] = frozenset()) -> Snapshot:
        """Every entry under `path` (but not under the paths, relative to it, in `skip`)."""
        raise NotImplementedError

    def make_dir(self, path: str) -> None:
        raise NotImplementedError

    def exists(self, path: str) -> bool:
        return self.is_dir(path) or self.is_file(path)

    def lines(self, path: str) -> list[bytes]:
        """The file's lines, each with its newline (the last may lack one)."""
        return self.read(path).splitlines(keepends=True)

    def size(self, path: str) -> int:
        return len(self.read(path))

    def copy(self, src: str, dst: str) -> None:
        """Copy a file, or a directory and everything under it, to `dst` (replacing a file)."""
        self.copy_from(self, src, dst)

    def copy_from(self, other: RawBase, src: str, dst: str) -> None:
        """Copy `src` of another store's tree (either backend) to `dst` of this one."""
        if other.is_file(src):
            self.write(dst, other.read(src))
            return
        if not self.is_dir(dst):
            self.make_dir(dst)
        for name in other.list(src):
            self.copy_from(other, f"{src}/{name}", f"{dst}/{name}")

    def files(self, path: str = "") -> dict[str, bytes]:
        """Every file under `path`: its path (relative to `path`) -> its bytes."""
        return {name: data for name, (_, data) in self.snapshot(path).items() if data is not None}

    def drop_checkpoints_past(self, audit_dir: str, size: int) -> None:
        """Forget checkpoints over more than `size` records: the state of a log whose writer
        crashed before sealing (see tests/support/stores.py drop_checkpoints_past)."""
        path = f"{audit_dir}/checkpoints.jsonl"
        kept = [line for line in self.lines(path) if peek_note(orjson.loads(line)["note"]).size <= size]
        self.write(path, b"".join(kept))


class FsRaw(RawBase):
    def __init__(self, root: Path) -> None:
        self.root = root

    def _p(self, path: str) -> Path:
        return self.root / path if path else self.root

    def read(self, path: str) -> bytes:
        return self._p(path).read_bytes()

    def write(self, path: str, data: bytes) -> None:
        """Rewrite in place (same inode), or create (mode 0600, like the store's files)."""
        target = self._p(path)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not target.exists():
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            return
        mode = stat.S_IMODE(target.stat().st_mode)
        target.chmod(mode | 0o200)
        try:
            with open(target, "r+b") as out:
                out.truncate(0)
                out.write(data)
        finally:
            target.chmod(mode)

    def append(self, path: str, data: bytes) -> None:
        with open(self._p(path), "ab") as out:
            out.write(data)

    def delete(self, path: str) -> None:
        target = self._p(path)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()

    def make_dir(self, path: str) -> None:
        self._p(path).mkdir(mode=0o700)

    def list(self, path: str = "") -> list[str]:
        return sorted(os.listdir(self._p(path)))

    def is_dir(self, path: str) -> bool:
        return self._p(path).is_dir()

    def is_file(self, path: str) -> bool:
        return self._p(path).is_file()

    def identity(self, path: str) -> int:
        return self._p(path).stat().st_ino

    def snapshot(self, path: str = "", *, skip: frozenset[str] = frozenset()) -> Snapshot:
        """Every entry under `path`: (mode, content for files). Never follows links."""
        return tree_snapshot(self._p(path), skip=skip)

    def escaped(self) -> list[str]:
        """What lies beside the store root (nothing a store writes may land there)."""
        return sorted(os.listdir(self.root.parent))


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part]


class PgRaw(RawBase):
    _MODES = {"d": 0o700, "f": 0o600}

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        self.schema = dict(query).get("securestore_schema", "securestore")
        self.dsn = urlunsplit(parts._replace(query=urlencode([(k, v) for k, v in query
                                                              if not k.startswith("securestore_")])))

    _connection: psycopg.Connection[tuple[Any, ...]] | None = None

    @contextmanager
    def _db(self) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
        """One transaction (committed on exit) on this accessor's own connection."""
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(self.dsn, autocommit=True)
            self._connection.execute("SET session_replication_role = replica")  # the guard triggers stay quiet
        with self._connection.transaction():
            yield self._connection

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def __del__(self) -> None:
        self.close()

    def _q(self, text: str) -> sql.Composed:
        return sql.SQL(text.replace("{s}", "{schema}")).format(schema=sql.Identifier(self.schema))

    def _find(self, db: psycopg.Connection[tuple[Any, ...]], path: str) -> tuple[int, str, bool] | None:
        """(id, kind, audit) of the node at `path`; the root is (0, "d", False)."""
        node, kind, audit = ROOT, "d", False
        for part in _split(path):
            if kind != "d":
                return None
            row = db.execute(self._q("SELECT id, kind, audit FROM {s}.nodes WHERE parent = %s AND name = %s"),
                             (node, part)).fetchone()
            if row is None:
                return None
            node, kind, audit = int(row[0]), str(row[1]), bool(row[2])
        return node, kind, audit

    def _table(self, audit: bool) -> str:
        return "audit_records" if audit else "chunks"

    def _content(self, db: psycopg.Connection[tuple[Any, ...]], node: int, audit: bool) -> bytes:
        rows = db.execute(self._q(f"SELECT data FROM {{s}}.{self._table(audit)} WHERE node = %s ORDER BY seq"),
                          (node,)).fetchall()
        return b"".join(bytes(row[0]) for row in rows)

    def _existing(self, db: psycopg.Connection[tuple[Any, ...]], path: str, kind: str) -> tuple[int, bool]:
        found = self._find(db, path)
        if found is None or found[1] != kind:
            raise FileNotFoundError(f"no {'file' if kind == 'f' else 'directory'} {path!r} in {self.dsn}")
        return found[0], found[2]

    def read(self, path: str) -> bytes:
        with self._db() as db:
            node, audit = self._existing(db, path, "f")
            return self._content(db, node, audit)

    def _parent(self, db: psycopg.Connection[tuple[Any, ...]], path: str) -> int:
        """The node of `path`'s directory, made (with any missing ancestors) if absent."""
        node = ROOT
        for part in _split(path)[:-1]:
            row = db.execute(self._q("SELECT id, kind FROM {s}.nodes WHERE parent = %s AND name = %s"),
                             (node, part)).fetchone()
            if row is None:
                row = db.execute(self._q("INSERT INTO {s}.nodes (parent, name, kind, mtime_ms) VALUES "
                                         "(%s, %s, 'd', (extract(epoch FROM now()) * 1000)::bigint) RETURNING id"),
                                 (node, part)).fetchone()
            elif row[1] != "d":
                raise NotADirectoryError(path)
            assert row is not None
            node = int(row[0])
        return node

    def write(self, path: str, data: bytes) -> None:
        """Replace a file's bytes in place (same node, same generation), or create it."""
        parts = _split(path)
        with self._db() as db:
            found = self._find(db, path)
            if found is None:
                audit = len(parts) >= 2 and (parts[-2], parts[-1]) in AUDIT_FILES
                row = db.execute(self._q("INSERT INTO {s}.nodes (parent, name, kind, audit, size, next_seq, mtime_ms) "
                                         "VALUES (%s, %s, 'f', %s, 0, 0, 0) RETURNING id"),
                                 (self._parent(db, path), parts[-1], audit)).fetchone()
                assert row is not None
                found = (int(row[0]), "f", audit)
            node, kind, audit = found
            if kind != "f":
                raise IsADirectoryError(path)
            db.execute(self._q(f"DELETE FROM {{s}}.{self._table(audit)} WHERE node = %s"), (node,))
            if data:
                db.execute(self._q(f"INSERT INTO {{s}}.{self._table(audit)} (node, seq, pos, data) "
                                   "VALUES (%s, 1, 0, %s)"), (node, data))
            db.execute(self._q("UPDATE {s}.nodes SET size = %s, next_seq = 1, "
                               "mtime_ms = (extract(epoch FROM now()) * 1000)::bigint WHERE id = %s"),
                       (len(data), node))

    def append(self, path: str, data: bytes) -> None:
        with self._db() as db:
            node, audit = self._existing(db, path, "f")
            row = db.execute(self._q("UPDATE {s}.nodes SET size = size + %s, next_seq = next_seq + 1 WHERE id = %s "
                                     "RETURNING next_seq, size - %s"), (len(data), node, len(data))).fetchone()
            assert row is not None
            db.execute(self._q(f"INSERT INTO {{s}}.{self._table(audit)} (node, seq, pos, data) "
                               "VALUES (%s, %s, %s, %s)"), (node, row[0], row[1], data))

    def delete(self, path: str) -> None:
        """Delete a file, or a directory and everything under it (audit files too)."""
        with self._db() as db:
            found = self._find(db, path)
            if found is None or not _split(path):
                raise FileNotFoundError(path)
            ids = [int(row[0]) for row in db.execute(self._q(
                "WITH RECURSIVE t(id) AS (SELECT %s::bigint UNION ALL SELECT c.id FROM {s}.nodes c JOIN t "
                "ON c.parent = t.id) SELECT id FROM t"), (found[0],))]
            for table in ("chunks", "audit_records", "nodes"):
                column = "id" if table == "nodes" else "node"
                db.execute(self._q(f"DELETE FROM {{s}}.{table} WHERE {column} = ANY(%s)"), (ids,))

    def make_dir(self, path: str) -> None:
        with self._db() as db:
            if self._find(db, path) is not None:
                raise FileExistsError(path)
            db.execute(self._q("INSERT INTO {s}.nodes (parent, name, kind, mtime_ms) VALUES "
                               "(%s, %s, 'd', (extract(epoch FROM now()) * 1000)::bigint)"),
                       (self._parent(db, path), _split(path)[-1]))

    def list(self, path: str = "") -> list[str]:
        with self._db() as db:
            node, _ = self._existing(db, path, "d")
            return sorted(str(row[0]) for row in db.execute(self._q("SELECT name FROM {s}.nodes WHERE parent = %s"),
                                                            (node,)))

    def is_dir(self, path: str) -> bool:
        with self._db() as db:
            found = self._find(db, path)
        return found is not None and found[1] == "d"

    def is_file(self, path: str) -> bool:
        with self._db() as db:
            found = self._find(db, path)
        return found is not None and found[1] == "f"

    def identity(self, path: str) -> int:
        with self._db() as db:
            return self._existing(db, path, "f")[0]

    def snapshot(self, path: str = "", *, skip: frozenset[str] = frozenset()) -> Snapshot:
        """Every entry under `path` (not the retired audit files, which are out of the tree):
        (the mode PgDir reports, content for files)."""
        out: Snapshot = {}
        with self._db() as db:
            start, _ = self._existing(db, path, "d")
            pending = [(start, "")]
            while pending:
                node, prefix = pending.pop()
                for child, name, kind, audit in db.execute(self._q(
                        "SELECT id, name, kind, audit FROM {s}.nodes WHERE parent = %s"), (node,)).fetchall():
                    rel = f"{prefix}{name}"
                    if kind == "d":
                        out[rel] = (self._MODES["d"], None)
                        if rel not in skip:
                            pending.append((int(child), rel + "/"))
                    else:
                        out[rel] = (self._MODES["f"], self._content(db, int(child), bool(audit)))
        return out

    def escaped(self) -> list[str]:
        """Nodes outside the tree: neither under the root nor retired audit files."""
        with self._db() as db:
            rows = db.execute(self._q(
                "SELECT n.name FROM {s}.nodes n WHERE n.parent NOT IN (0, -1) AND NOT EXISTS "
                "(SELECT 1 FROM {s}.nodes p WHERE p.id = n.parent AND p.kind = 'd')")).fetchall()
        return sorted(str(row[0]) for row in rows)
