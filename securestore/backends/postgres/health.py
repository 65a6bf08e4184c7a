"""`securestore doctor` on a database: what only the server can say (issue 13). Reads only.

Each finding is (check, status, detail) with status ok / attention; the store-level checks
(keys, locks, the audit trail) are the doctor's own and run on either backend."""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg import sql

from ...errors import SecureStoreError
from .connect import connect, describe_error
from .schema import SCHEMA_VERSION
from .url import PgTarget

Finding = tuple[str, str, str]
# The triggers that keep the audit rows append-only (schema.py); a disabled one is a hole.
GUARDS = {"audit_records_append_only", "audit_records_no_truncate", "audit_nodes_guarded",
          "setup_history_append_only", "setup_history_no_truncate"}


def database_findings(target: PgTarget) -> list[Finding]:
    try:
        connection = connect(target, application_name="securestore doctor")
    except SecureStoreError as exc:
        return [("database", "attention", str(exc))]
    try:
        with connection:
            return _findings(target, connection)
    except psycopg.Error as exc:
        return [("database", "attention", f"could not check {target.display}: {describe_error(exc)}")]


def _findings(target: PgTarget, connection: psycopg.Connection[Any]) -> list[Finding]:
    found: list[Finding] = []
    version = connection.info.server_version
    tls = "TLS" if connection.pgconn.ssl_in_use else "no TLS (this machine)"
    found.append(("database", "ok", f"{target.display}: PostgreSQL {version // 10000}.{version % 10000}, {tls}"))
    role, superuser = _one(connection, "SELECT current_user, rolsuper FROM pg_catalog.pg_roles "
                                       "WHERE rolname = current_user")
    if superuser:
        found.append(("role", "attention", f"connected as {role}, a superuser, which can rewrite any row: connect "
                      f"as a login role granted {target.schema}_writer (`securestore pg-setup --grant-writer-to`)"))
    else:
        found.append(("role", "ok", f"connected as {role}, not a superuser"))
    found.append(_durability(connection))
    found.append(_guards(target, connection))
    last = connection.execute(sql.SQL("SELECT at, session_role, actions FROM {}.setup_history ORDER BY id DESC "
                                      "LIMIT 1").format(sql.Identifier(target.schema))).fetchone()
    if last is not None:
        found.append(("setup", "ok", f"schema version {SCHEMA_VERSION}; last pg-setup {last[0]:%Y-%m-%dT%H:%M:%SZ} "
                      f"by {last[1]}: {last[2]}"))
    return found


def _durability(connection: psycopg.Connection[Any]) -> Finding:
    fsync = _one(connection, "SELECT current_setting('fsync')")[0]
    commit = _one(connection, "SELECT current_setting('synchronous_commit')")[0]
    if fsync != "on" or commit == "off":
        return ("durability", "attention", f"fsync={fsync}, synchronous_commit={commit}: the server may lose "
                "acknowledged writes in a crash; set fsync=on and synchronous_commit=on")
    return ("durability", "ok", f"fsync={fsync}, synchronous_commit={commit}")


def _guards(target: PgTarget, connection: psycopg.Connection[Any]) -> Finding:
    rows = connection.execute(
        "SELECT t.tgname, t.tgenabled FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND NOT t.tgisinternal",
        (target.schema,)).fetchall()
    enabled = {name for name, state in rows if state != "D"}
    missing = sorted(GUARDS - enabled)
    if missing:
        return ("guards", "attention", f"append-only triggers missing or disabled: {', '.join(missing)}; the audit "
                "rows can be rewritten: run `securestore pg-setup` again as the database's owner")
    return ("guards", "ok", "the audit rows are append-only (triggers enabled)")


def _one(connection: psycopg.Connection[Any], query: LiteralString) -> tuple[Any, ...]:
    row = connection.execute(query).fetchone()
    assert row is not None  # nosec B101 - these queries always return a row
    return tuple(row)
