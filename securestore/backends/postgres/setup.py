"""`securestore pg-setup`: the schema and its two roles, idempotently, in one transaction.

- the owner role owns the schema and its tables (NOLOGIN: administrators act as it);
- the writer role is what a store connects as (granted to login roles with --grant-writer-to):
  it reads and writes the tree, and may only ever insert into `audit_records`.
Run by a role that may create roles and schemas (a superuser, or the database's owner with
CREATEROLE)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from ...errors import StorageError, UsageError
from .connect import connect, describe_error
from .schema import OWNERSHIP, SCHEMA_VERSION, TABLES, WRITER_GRANTS, statements
from .url import PgTarget

_ROLE = re.compile(r"[a-z_][a-z0-9_]{0,62}")


@dataclass
class SetupReport:
    schema: str
    owner: str
    writer: str
    created_roles: list[str] = field(default_factory=list)
    granted_to: list[str] = field(default_factory=list)
    version: int = SCHEMA_VERSION

    def describe(self) -> str:
        """One line: what this run did (recorded in setup_history and printed)."""
        made = f"created roles {', '.join(self.created_roles)}" if self.created_roles else "roles already present"
        granted = f"; granted {self.writer} to {', '.join(self.granted_to)}" if self.granted_to else ""
        return (f"schema {self.schema} at version {self.version} (owner {self.owner}, writer {self.writer}); "
                f"{made}{granted}")


def role_name(text: str, what: str) -> str:
    if not _ROLE.fullmatch(text):
        raise UsageError(f"invalid {what} {text!r}: use lower-case letters, digits and '_' (at most 63)")
    return text


def install(target: PgTarget, *, owner: str | None = None, writer: str | None = None,
            grant_writer_to: tuple[str, ...] = ()) -> SetupReport:
    report = SetupReport(target.schema, role_name(owner or f"{target.schema}_owner", "owner role"),
                         role_name(writer or f"{target.schema}_writer", "writer role"))
    logins = [role_name(name, "login role") for name in grant_writer_to]
    names = {"schema": sql.Identifier(report.schema), "owner": sql.Identifier(report.owner),
             "writer": sql.Identifier(report.writer)}
    connection = connect(target, application_name="securestore pg-setup")
    try:
        with connection.transaction():
            for role in (report.owner, report.writer):
                exists = connection.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,)).fetchone()
                if exists is None:
                    connection.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
                    report.created_roles.append(role)
            for template in (TABLES, OWNERSHIP, WRITER_GRANTS):
                for statement in statements(template, schema="{schema}", owner="{owner}", writer="{writer}"):
                    connection.execute(sql.SQL(statement).format(**names))
            connection.execute(sql.SQL("INSERT INTO {}.meta (key, value) VALUES ('schema_version', %s) "
                                       "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value").format(names["schema"]),
                               (str(SCHEMA_VERSION),))
            for login in logins:
                connection.execute(sql.SQL("GRANT {} TO {}").format(names["writer"], sql.Identifier(login)))
                report.granted_to.append(login)
            connection.execute(sql.SQL("INSERT INTO {}.setup_history (schema_version, actions) VALUES (%s, %s)")
                               .format(names["schema"]), (SCHEMA_VERSION, report.describe()))
    except psycopg.Error as exc:
        raise StorageError(f"pg-setup at {target.display} failed, nothing was changed: {describe_error(exc)}") from None
    finally:
        connection.close()
    return report
