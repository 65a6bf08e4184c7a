"""The tables that hold a store's tree, and the two roles `securestore pg-setup` makes.

A directory or file is a row of `nodes`; a file's bytes are rows of `chunks` (one per append,
or one for a whole replacement), except the audit trail's files (`audit/log.jsonl`,
`audit/checkpoints.jsonl`, wherever they are): their rows, one canonical record or signed
checkpoint each, go to `audit_records`, which the writer role may read and insert into, never
update, delete or truncate (grants, and triggers that hold even for the owner; `setup_history`,
one row per pg-setup run, is append-only the same way). A deleted
session's audit files are not deleted: they are retired (parent -1) and stay readable.

Every statement names the schema explicitly (`{schema}` is a validated identifier: see url.py),
so no `search_path` of the connecting role can redirect it.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
ROOT = 0  # the parent of the store root's entries
RETIRED = -1  # the parent of a deleted session's audit files

TABLES = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.meta (
    key text PRIMARY KEY,
    value text NOT NULL
);
CREATE SEQUENCE IF NOT EXISTS {schema}.generations;
CREATE TABLE IF NOT EXISTS {schema}.nodes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    parent bigint NOT NULL,
    name text NOT NULL,
    kind "char" NOT NULL CHECK (kind IN ('d', 'f')),
    audit boolean NOT NULL DEFAULT false,
    gen bigint NOT NULL DEFAULT nextval('{schema}.generations'),
    size bigint NOT NULL DEFAULT 0 CHECK (size >= 0),
    next_seq integer NOT NULL DEFAULT 0,
    mtime_ms bigint NOT NULL,
    UNIQUE (parent, name)
);
CREATE TABLE IF NOT EXISTS {schema}.chunks (
    node bigint NOT NULL,
    seq integer NOT NULL,
    pos bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (node, seq)
);
CREATE TABLE IF NOT EXISTS {schema}.audit_records (
    node bigint NOT NULL,
    seq integer NOT NULL,
    pos bigint NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (node, seq)
);
-- One row per `securestore pg-setup` run: who changed the schema and roles, and what was done.
CREATE TABLE IF NOT EXISTS {schema}.setup_history (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    session_role text NOT NULL DEFAULT session_user,
    client_addr inet DEFAULT inet_client_addr(),
    schema_version integer NOT NULL,
    actions text NOT NULL
);
CREATE INDEX IF NOT EXISTS chunks_by_pos ON {schema}.chunks (node, pos);
CREATE INDEX IF NOT EXISTS audit_records_by_pos ON {schema}.audit_records (node, pos);

CREATE OR REPLACE FUNCTION {schema}.refuse_audit_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'securestore: %.% is append-only (% refused)', TG_TABLE_SCHEMA, TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE OR REPLACE FUNCTION {schema}.guard_audit_node() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.audit THEN
            RAISE EXCEPTION 'securestore: an audit file is never deleted' USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.audit AND (NOT NEW.audit OR NEW.size < OLD.size OR NEW.gen <> OLD.gen OR NEW.kind <> OLD.kind
                      OR ((NEW.parent, NEW.name) IS DISTINCT FROM (OLD.parent, OLD.name) AND NEW.parent <> -1)) THEN
        RAISE EXCEPTION 'securestore: an audit file only grows (or is retired with its session)'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS audit_records_append_only ON {schema}.audit_records;
CREATE TRIGGER audit_records_append_only BEFORE UPDATE OR DELETE ON {schema}.audit_records
    FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_audit_change();
DROP TRIGGER IF EXISTS audit_records_no_truncate ON {schema}.audit_records;
CREATE TRIGGER audit_records_no_truncate BEFORE TRUNCATE ON {schema}.audit_records
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_audit_change();
DROP TRIGGER IF EXISTS setup_history_append_only ON {schema}.setup_history;
CREATE TRIGGER setup_history_append_only BEFORE UPDATE OR DELETE ON {schema}.setup_history
    FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_audit_change();
DROP TRIGGER IF EXISTS setup_history_no_truncate ON {schema}.setup_history;
CREATE TRIGGER setup_history_no_truncate BEFORE TRUNCATE ON {schema}.setup_history
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.refuse_audit_change();
DROP TRIGGER IF EXISTS audit_nodes_guarded ON {schema}.nodes;
CREATE TRIGGER audit_nodes_guarded BEFORE UPDATE OR DELETE ON {schema}.nodes
    FOR EACH ROW EXECUTE FUNCTION {schema}.guard_audit_node();
"""

# The writer: the role the store runs as. Reads and writes the tree; the audit rows only grow.
WRITER_GRANTS = """
REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {writer};
REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {writer};
GRANT USAGE ON SCHEMA {schema} TO {writer};
GRANT SELECT ON {schema}.meta, {schema}.setup_history TO {writer};
GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.nodes, {schema}.chunks TO {writer};
GRANT SELECT, INSERT ON {schema}.audit_records TO {writer};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {writer};
"""

OWNERSHIP = """
ALTER SCHEMA {schema} OWNER TO {owner};
ALTER TABLE {schema}.meta OWNER TO {owner};
ALTER TABLE {schema}.nodes OWNER TO {owner};
ALTER TABLE {schema}.chunks OWNER TO {owner};
ALTER TABLE {schema}.audit_records OWNER TO {owner};
ALTER TABLE {schema}.setup_history OWNER TO {owner};
ALTER SEQUENCE {schema}.generations OWNER TO {owner};
ALTER FUNCTION {schema}.refuse_audit_change() OWNER TO {owner};
ALTER FUNCTION {schema}.guard_audit_node() OWNER TO {owner};
REVOKE ALL ON SCHEMA {schema} FROM PUBLIC;
"""


def statements(template: str, **names: str) -> list[str]:
    """The template's statements with the identifiers filled in (each already validated)."""
    text = template.format(**names)
    parts: list[str] = []
    current: list[str] = []
    in_body = False
    for line in text.splitlines():
        current.append(line)
        if line.count("$$") % 2 == 1:
            in_body = not in_body
        if not in_body and line.rstrip().endswith(";"):
            parts.append("\n".join(current).strip())
            current = []
    return [part for part in parts if part]
