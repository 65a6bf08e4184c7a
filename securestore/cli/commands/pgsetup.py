"""`securestore pg-setup`: prepare a PostgreSQL database for stores (schema, owner and writer roles)."""

from __future__ import annotations

import argparse

from ...api import ROOT_ENV, pg_setup, store_label
from ...errors import EXIT_OK, UsageError
from ..console import print_json, say
from . import Subcommands


def add_parsers(commands: Subcommands) -> None:
    setup = commands.add_parser(
        "pg-setup", help="create the schema and the owner and writer roles in a PostgreSQL database (idempotent; "
                         "run as the database's owner or a superuser)")
    setup.add_argument("url", nargs="?", help=f"postgresql:// URL (default: --root, else ${ROOT_ENV})")
    setup.add_argument("--owner-role", help="the role that owns the tables (default: <schema>_owner)")
    setup.add_argument("--writer-role", help="the role stores connect as (default: <schema>_writer)")
    setup.add_argument("--grant-writer-to", action="append", default=[], metavar="LOGIN_ROLE",
                       help="grant the writer role to this login role (repeatable)")
    setup.add_argument("--json", action="store_true")


def pg_setup_command(args: argparse.Namespace) -> int:
    url = args.url or args.root or args.environ.get(ROOT_ENV)
    if not url:
        raise UsageError(f"pg-setup needs a postgresql:// URL: pass it, or --root, or set ${ROOT_ENV}")
    report = pg_setup(url, owner_role=args.owner_role, writer_role=args.writer_role,
                      grant_writer_to=args.grant_writer_to, environ=args.environ)
    where = store_label(url, args.environ)
    if args.json:
        print_json({"database": where, "schema": report.schema, "schema_version": report.version,
                    "owner_role": report.owner, "writer_role": report.writer,
                    "created_roles": report.created_roles, "granted_to": report.granted_to})
        return EXIT_OK
    say(f"{where}: {report.describe()}")
    say(f"next: `securestore --root URL init`, connecting as a login role granted {report.writer}", err=True)
    return EXIT_OK
