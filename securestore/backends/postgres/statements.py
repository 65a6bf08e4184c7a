"""Every statement the tree runs, composed once per schema (the schema is an identifier,
quoted by psycopg: never text pasted into SQL). Values are always parameters, so no stored
byte and no secret ever appears in SQL text or in the server's statement log."""

from __future__ import annotations

from dataclasses import dataclass, fields

from psycopg import sql


@dataclass(frozen=True)
class Statements:
    find: sql.Composed
    file_info: sql.Composed
    entry: sql.Composed
    children: sql.Composed
    make_dir: sql.Composed
    make_file: sql.Composed
    read: sql.Composed
    replace: sql.Composed
    create: sql.Composed
    append: sql.Composed
    chunks_backward: sql.Composed
    chunks_forward: sql.Composed
    audit_backward: sql.Composed
    audit_forward: sql.Composed
    truncate_node: sql.Composed
    truncate_drop: sql.Composed
    truncate_cut: sql.Composed
    unlink: sql.Composed
    rename: sql.Composed
    subtree: sql.Composed
    retire: sql.Composed
    drop_chunks: sql.Composed
    drop_nodes: sql.Composed
    barrier: sql.Composed
    schema_version: sql.Composed
    lock_holder: sql.Composed


_TEXT = {
    "find": "SELECT id, kind FROM {s}.nodes WHERE parent = %(parent)s AND name = %(name)s",
    "file_info": "SELECT id, gen, size, audit, kind FROM {s}.nodes WHERE parent = %(parent)s AND name = %(name)s",
    "entry": "SELECT kind, size, mtime_ms FROM {s}.nodes WHERE parent = %(parent)s AND name = %(name)s",
    "children": "SELECT name FROM {s}.nodes WHERE parent = %(parent)s",
    "make_dir": ("INSERT INTO {s}.nodes (parent, name, kind, mtime_ms) VALUES (%(parent)s, %(name)s, 'd', %(now)s) "
                 "ON CONFLICT (parent, name) DO NOTHING RETURNING id"),
    "make_file": ("INSERT INTO {s}.nodes (parent, name, kind, audit, mtime_ms) "
                  "VALUES (%(parent)s, %(name)s, 'f', %(audit)s, %(now)s) ON CONFLICT (parent, name) DO NOTHING"),
    # A file's bytes live in `chunks`, or in `audit_records` for the audit trail's files.
    "read": ("SELECT n.kind, n.size, CASE WHEN n.size > %(cap)s THEN NULL WHEN n.audit THEN "
             "(SELECT string_agg(data, ''::bytea ORDER BY seq) FROM {s}.audit_records WHERE node = n.id) "
             "ELSE (SELECT string_agg(data, ''::bytea ORDER BY seq) FROM {s}.chunks WHERE node = n.id) END "
             "FROM {s}.nodes n WHERE n.parent = %(parent)s AND n.name = %(name)s"),
    # Replace a (non-audit) file whole: a new generation, one chunk; older chunks dropped.
    "replace": ("WITH n AS (INSERT INTO {s}.nodes (parent, name, kind, size, next_seq, mtime_ms) "
                "VALUES (%(parent)s, %(name)s, 'f', %(size)s, 1, %(now)s) ON CONFLICT (parent, name) DO UPDATE "
                "SET gen = nextval('{s}.generations'), size = EXCLUDED.size, next_seq = {s}.nodes.next_seq + 1, "
                "mtime_ms = EXCLUDED.mtime_ms WHERE {s}.nodes.kind = 'f' AND NOT {s}.nodes.audit "
                "RETURNING id, next_seq), "
                "d AS (DELETE FROM {s}.chunks c USING n WHERE c.node = n.id AND c.seq < n.next_seq) "
                "INSERT INTO {s}.chunks (node, seq, pos, data) SELECT id, next_seq, 0, %(data)s FROM n"),
    # Create a file that must not exist yet (the audit trail's files are made this way).
    "create": ("WITH n AS (INSERT INTO {s}.nodes (parent, name, kind, audit, size, next_seq, mtime_ms) "
               "VALUES (%(parent)s, %(name)s, 'f', %(audit)s, %(size)s, 1, %(now)s) "
               "ON CONFLICT (parent, name) DO NOTHING RETURNING id, audit), "
               "a AS (INSERT INTO {s}.audit_records (node, seq, pos, data) SELECT id, 1, 0, %(data)s FROM n "
               "WHERE audit AND %(size)s > 0), "
               "c AS (INSERT INTO {s}.chunks (node, seq, pos, data) SELECT id, 1, 0, %(data)s FROM n "
               "WHERE NOT audit AND %(size)s > 0) "
               "SELECT count(*) FROM n"),
    "append": ("WITH n AS (UPDATE {s}.nodes SET size = size + %(size)s, next_seq = next_seq + 1, mtime_ms = %(now)s "
               "WHERE parent = %(parent)s AND name = %(name)s AND kind = 'f' "
               "RETURNING id, next_seq, size - %(size)s AS pos, audit, size), "
               "a AS (INSERT INTO {s}.audit_records (node, seq, pos, data) SELECT id, next_seq, pos, %(data)s "
               "FROM n WHERE audit), "
               "c AS (INSERT INTO {s}.chunks (node, seq, pos, data) SELECT id, next_seq, pos, %(data)s "
               "FROM n WHERE NOT audit) "
               "SELECT size FROM n"),
    "chunks_backward": ("SELECT seq, pos, data FROM {s}.chunks WHERE node = %(node)s AND seq < %(before)s "
                        "AND pos < %(end)s ORDER BY seq DESC LIMIT %(limit)s"),
    "chunks_forward": ("SELECT seq, pos, data FROM {s}.chunks WHERE node = %(node)s AND seq > %(after)s "
                       "AND pos + length(data) > %(start)s ORDER BY seq LIMIT %(limit)s"),
    "truncate_node": ("UPDATE {s}.nodes SET size = %(size)s, mtime_ms = %(now)s WHERE id = %(node)s "
                      "AND size >= %(size)s"),
    "truncate_drop": "DELETE FROM {s}.chunks WHERE node = %(node)s AND pos >= %(size)s",
    "truncate_cut": ("UPDATE {s}.chunks SET data = substring(data FROM 1 FOR (%(size)s - pos)::integer) "
                     "WHERE node = %(node)s AND pos < %(size)s AND pos + length(data) > %(size)s"),
    "unlink": ("WITH n AS (DELETE FROM {s}.nodes WHERE parent = %(parent)s AND name = %(name)s AND kind = 'f' "
               "RETURNING id), c AS (DELETE FROM {s}.chunks WHERE node IN (SELECT id FROM n)) SELECT count(*) FROM n"),
    "rename": "UPDATE {s}.nodes SET parent = %(into)s, name = %(dst)s WHERE parent = %(parent)s AND name = %(name)s",
    "subtree": ("WITH RECURSIVE t(id, audit) AS (SELECT id, audit FROM {s}.nodes "
                "WHERE parent = %(parent)s AND name = %(name)s UNION ALL SELECT c.id, c.audit FROM {s}.nodes c JOIN t ON c.parent = t.id) SELECT id, audit FROM t"),
    "retire": "UPDATE {s}.nodes SET parent = -1, name = id::text WHERE id = ANY(%(ids)s) AND audit",
    "drop_chunks": "DELETE FROM {s}.chunks WHERE node = ANY(%(ids)s)",
    "drop_nodes": "DELETE FROM {s}.nodes WHERE id = ANY(%(ids)s) AND NOT audit",
    # A transaction with an xid commits a WAL record, synchronously: it makes every earlier
    # asynchronous commit durable too (WAL is flushed in order).
    "barrier": "SELECT pg_current_xact_id()",
    "schema_version": "SELECT value FROM {s}.meta WHERE key = 'schema_version'",
    "lock_holder": ("SELECT a.pid, a.application_name, host(a.client_addr) FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND l.classid = %(high)s AND l.objid = %(low)s AND l.objsubid = 1 LIMIT 1"),
}


def compile_statements(schema: str) -> Statements:
    ident = sql.Identifier(schema)
    texts = dict(_TEXT)
    for way in ("backward", "forward"):
        texts[f"audit_{way}"] = texts[f"chunks_{way}"].replace("{s}.chunks", "{s}.audit_records")
    composed = {name: sql.SQL(text.replace("{s}", "{schema}")).format(schema=ident) for name, text in texts.items()}
    return Statements(**{f.name: composed[f.name] for f in fields(Statements)})
