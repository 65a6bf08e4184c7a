"""Every statement the tree runs, composed once per schema (the schema is an identifier,
quoted by psycopg: never text pasted into SQL) and rendered to bytes once, not per call. Values
are always parameters, so no stored byte and no secret ever appears in SQL text or in the
server's statement log.

A write that is one statement runs as its own transaction on the autocommit connection: one
round trip instead of BEGIN, the statement and COMMIT (and a SET LOCAL for an asynchronous
commit). Such a statement ends in `COMMIT_TAIL` (`{tail}` in the texts): `set_config(..., true)` sets this
transaction's synchronous_commit, which the server reads when it commits the statement's
implicit transaction (before transaction-local settings are reset), and a durable write takes
an xid even when it changed nothing, so its commit is flushed and every earlier asynchronous
commit with it (WAL is flushed in order): `PgLink.unflushed` stays exact."""

from __future__ import annotations

from dataclasses import dataclass, fields

from psycopg import sql


@dataclass(frozen=True)
class Statements:
    find: bytes
    file_info: bytes
    entry: bytes
    children: bytes
    child_dirs: bytes
    make_dir: bytes
    make_file: bytes
    read: bytes
    replace: bytes
    replace_in: bytes  # replace, in the child directory %(sub)s of directory %(dir)s (NULL: not there)
    create: bytes
    append: bytes
    append_creating: bytes
    tail_first: bytes
    chunks_backward: bytes
    chunks_forward: bytes
    audit_backward: bytes
    audit_forward: bytes
    unlink: bytes
    rename: bytes
    subtree: bytes
    retire: bytes
    drop_chunks: bytes
    drop_nodes: bytes
    barrier: bytes
    schema_version: bytes
    lock_holder: bytes


# The end of every one-statement write: `%(commit)s` is 'on' (durable) or 'off'; one row.
COMMIT_TAIL = ("set_config('synchronous_commit', %(commit)s, true), "
               "CASE WHEN %(commit)s = 'on' THEN pg_current_xact_id() END")

_TEXT = {
    "find": "SELECT id, kind FROM {s}.nodes WHERE parent = %(parent)s AND name = %(name)s",
    "file_info": "SELECT id, gen, size, audit, kind FROM {s}.nodes WHERE parent = %(parent)s AND name = %(name)s",
    "entry": "SELECT kind, size, mtime_ms FROM {s}.nodes WHERE parent = %(parent)s AND name = %(name)s",
    "children": "SELECT name FROM {s}.nodes WHERE parent = %(parent)s",
    "child_dirs": "SELECT name, id FROM {s}.nodes WHERE parent = %(parent)s AND kind = 'd' LIMIT %(limit)s",
    "make_dir": ("WITH n AS (INSERT INTO {s}.nodes (parent, name, kind, mtime_ms) "
                 "VALUES (%(parent)s, %(name)s, 'd', %(now)s) ON CONFLICT (parent, name) DO NOTHING RETURNING id) "
                 "SELECT (SELECT id FROM n), {tail}"),
    "make_file": ("INSERT INTO {s}.nodes (parent, name, kind, audit, mtime_ms) "
                  "VALUES (%(parent)s, %(name)s, 'f', %(audit)s, %(now)s) ON CONFLICT (parent, name) DO NOTHING"),
    # A file's bytes live in `chunks`, or in `audit_records` for the audit trail's files.
    "read": ("SELECT n.kind, n.size, CASE WHEN n.size > %(cap)s THEN NULL WHEN n.audit THEN "
             "(SELECT string_agg(data, ''::bytea ORDER BY seq) FROM {s}.audit_records WHERE node = n.id) "
             "ELSE (SELECT string_agg(data, ''::bytea ORDER BY seq) FROM {s}.chunks WHERE node = n.id) END "
             "FROM {s}.nodes n WHERE n.parent = %(parent)s AND n.name = %(name)s"),
    # Replace a (non-audit) file whole: a new generation, its bytes in %(count)s chunks (so a
    # read of its end, such as a listing's first page, fetches a chunk, not the whole file);
    # older chunks dropped (an empty file has none). One row: 1, or 0 for a directory.
    "replace": ("WITH n AS (INSERT INTO {s}.nodes (parent, name, kind, size, next_seq, mtime_ms) "
                "VALUES (%(parent)s, %(name)s, 'f', %(size)s, %(count)s, %(now)s) ON CONFLICT (parent, name) "
                "DO UPDATE SET gen = nextval('{s}.generations'), size = EXCLUDED.size, "
                "next_seq = {s}.nodes.next_seq + %(count)s, mtime_ms = EXCLUDED.mtime_ms "
                "WHERE {s}.nodes.kind = 'f' AND NOT {s}.nodes.audit RETURNING id, next_seq), "
                "d AS (DELETE FROM {s}.chunks c USING n WHERE c.node = n.id AND c.seq <= n.next_seq - %(count)s), "
                "i AS (INSERT INTO {s}.chunks (node, seq, pos, data) SELECT n.id, n.next_seq - %(count)s + p.k, "
                "p.pos, p.data FROM n, unnest(%(parts)s::bytea[], %(positions)s::bigint[]) WITH ORDINALITY "
                "AS p(data, pos, k) RETURNING 1) SELECT (SELECT count(*) FROM n), {tail}"),
    # Create a file that must not exist yet (the audit trail's files are made this way).
    "create": ("WITH n AS (INSERT INTO {s}.nodes (parent, name, kind, audit, size, next_seq, mtime_ms) "
               "VALUES (%(parent)s, %(name)s, 'f', %(audit)s, %(size)s, 1, %(now)s) "
               "ON CONFLICT (parent, name) DO NOTHING RETURNING id, audit), "
               "a AS (INSERT INTO {s}.audit_records (node, seq, pos, data) SELECT id, 1, 0, %(data)s FROM n "
               "WHERE audit AND %(size)s > 0), "
               "c AS (INSERT INTO {s}.chunks (node, seq, pos, data) SELECT id, 1, 0, %(data)s FROM n "
               "WHERE NOT audit AND %(size)s > 0) "
               "SELECT (SELECT count(*) FROM n), {tail}"),
    "append": ("WITH n AS (UPDATE {s}.nodes SET size = size + %(size)s, next_seq = next_seq + 1, mtime_ms = %(now)s "
               "WHERE parent = %(parent)s AND name = %(name)s AND kind = 'f' "
               "RETURNING id, next_seq, size - %(size)s AS pos, audit, gen, size), "
               "a AS (INSERT INTO {s}.audit_records (node, seq, pos, data) SELECT id, next_seq, pos, %(data)s "
               "FROM n WHERE audit AND %(size)s > 0), "
               "c AS (INSERT INTO {s}.chunks (node, seq, pos, data) SELECT id, next_seq, pos, %(data)s "
               "FROM n WHERE NOT audit AND %(size)s > 0) "
               "SELECT (SELECT ARRAY[gen, size] FROM n), {tail}"),
    # Append to a (non-audit) file, creating it first if it does not exist.
    "append_creating": ("WITH n AS (INSERT INTO {s}.nodes (parent, name, kind, size, next_seq, mtime_ms) "
                        "VALUES (%(parent)s, %(name)s, 'f', %(size)s, 1, %(now)s) ON CONFLICT (parent, name) "
                        "DO UPDATE SET size = {s}.nodes.size + EXCLUDED.size, next_seq = {s}.nodes.next_seq + 1, "
                        "mtime_ms = EXCLUDED.mtime_ms WHERE {s}.nodes.kind = 'f' AND NOT {s}.nodes.audit "
                        "RETURNING id, next_seq, size - %(size)s AS pos, gen, size), "
                        "c AS (INSERT INTO {s}.chunks (node, seq, pos, data) SELECT id, next_seq, pos, %(data)s "
                        "FROM n WHERE %(size)s > 0) SELECT (SELECT ARRAY[gen, size] FROM n), {tail}"),
    # A file's row and the last rows of its bytes before %(end)s, in one round trip: the start of
    # every backward read (a log's head, a listing's first page, the latest items).
    # No row is ever empty (an empty append or file adds none), so a file's rows tile its bytes
    # and `pos` orders them, increasing with `seq`. A walk (these three) is ordered and bounded
    # by pos alone and runs with sorting ruled out (lines.py walk_rows): the (node, pos) index
    # yields its rows in order, reading only them.
    "tail_first": ("SELECT n.id, n.gen, n.size, n.audit, n.kind, r.seq, r.pos, r.data FROM {s}.nodes n "
                   "LEFT JOIN LATERAL ((SELECT a.seq, a.pos, a.data FROM {s}.audit_records a WHERE n.audit "
                   "AND n.kind = 'f' AND a.node = n.id AND a.pos < LEAST(n.size, %(end)s) ORDER BY a.pos DESC "
                   "LIMIT %(limit)s) UNION ALL (SELECT c.seq, c.pos, c.data FROM {s}.chunks c WHERE NOT n.audit "
                   "AND n.kind = 'f' AND c.node = n.id AND c.pos < LEAST(n.size, %(end)s) ORDER BY c.pos DESC "
                   "LIMIT %(limit)s)) r ON true WHERE n.parent = %(parent)s AND n.name = %(name)s"),
    "chunks_backward": ("SELECT seq, pos, data FROM {s}.chunks WHERE node = %(node)s AND pos < %(before)s "
                        "ORDER BY pos DESC LIMIT %(limit)s"),
    # From the row holding byte `start` (the last one that begins at or before it) on.
    "chunks_forward": ("SELECT seq, pos, data FROM {s}.chunks WHERE node = %(node)s AND pos > %(after)s "
                       "AND pos >= COALESCE((SELECT pos FROM {s}.chunks WHERE node = %(node)s AND pos <= %(start)s "
                       "ORDER BY pos DESC LIMIT 1), 0) AND pos + length(data) > %(start)s "
                       "ORDER BY pos LIMIT %(limit)s"),
    "unlink": ("WITH n AS (DELETE FROM {s}.nodes WHERE parent = %(parent)s AND name = %(name)s AND kind = 'f' "
               "RETURNING id), c AS (DELETE FROM {s}.chunks WHERE node IN (SELECT id FROM n)) "
               "SELECT (SELECT count(*) FROM n), {tail}"),
    "rename": ("WITH n AS (UPDATE {s}.nodes SET parent = %(into)s, name = %(dst)s WHERE parent = %(parent)s "
               "AND name = %(name)s RETURNING 1) SELECT (SELECT count(*) FROM n), {tail}"),
    "subtree": ("WITH RECURSIVE t(id, audit) AS (SELECT id, audit FROM {s}.nodes "
                "WHERE parent = %(parent)s AND name = %(name)s UNION ALL SELECT c.id, c.audit FROM {s}.nodes c JOIN t ON c.parent = t.id) SELECT id, audit FROM t"),
    "retire": "UPDATE {s}.nodes SET parent = -1, name = id::text WHERE id = ANY(%(ids)s) AND audit",
    "drop_chunks": "DELETE FROM {s}.chunks WHERE node = ANY(%(ids)s)",
    "drop_nodes": "DELETE FROM {s}.nodes WHERE id = ANY(%(ids)s) AND NOT audit",
    # A transaction with an xid commits a WAL record, synchronously: it makes every earlier
    # asynchronous commit durable too (WAL is flushed in order). One statement, like the writes.
    "barrier": "SELECT NULL, {tail}",
    "schema_version": "SELECT value FROM {s}.meta WHERE key = 'schema_version'",
    "lock_holder": ("SELECT a.pid, a.application_name, host(a.client_addr) FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.classid = %(high)s AND l.objid = %(low)s AND l.objsubid = 1 LIMIT 1"),
}


def compile_statements(schema: str) -> Statements:
    ident, tail = sql.Identifier(schema), sql.SQL(COMMIT_TAIL)
    texts = dict(_TEXT)
    texts["replace_in"] = texts["replace"].replace(
        "VALUES (%(parent)s,", "VALUES ((SELECT id FROM {s}.nodes WHERE parent = %(dir)s AND name = %(sub)s AND kind = 'd'),")
    if texts["replace_in"] == texts["replace"]:
        raise RuntimeError("the replace statement changed: replace_in no longer derives from it")
    for way in ("backward", "forward"):
        texts[f"audit_{way}"] = texts[f"chunks_{way}"].replace("{s}.chunks", "{s}.audit_records")
    composed = {name: sql.SQL(text.replace("{s}", "{schema}")).format(schema=ident, tail=tail).as_bytes(None)
                for name, text in texts.items()}
    return Statements(**{f.name: composed[f.name] for f in fields(Statements)})
