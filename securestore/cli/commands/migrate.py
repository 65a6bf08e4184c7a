"""`securestore migrate`: inspect, run and roll back the import of a legacy session store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from ...api import SecureStore, inspect_source
from ...errors import EXIT_OK
from ..console import print_json, say
from ..render import terminal_safe
from . import Subcommands


def add_parsers(commands: Subcommands) -> None:
    migrate = commands.add_parser("migrate", help="import a legacy session store")
    migrate_cmds = migrate.add_subparsers(dest="migrate_command", required=True)
    inspect = migrate_cmds.add_parser("inspect", help="say what importing PATH would do (reads only)")
    inspect.add_argument("path")
    inspect.add_argument("--json", action="store_true")
    run_import = migrate_cmds.add_parser("run", help="import PATH (staged, then published; audited)")
    run_import.add_argument("path")
    rollback = migrate_cmds.add_parser("rollback", help="undo the latest import of PATH")
    rollback.add_argument("path")


def progress_printer(stream: TextIO) -> Callable[[int, int], None] | None:
    """Progress for long imports, only when a person is watching (stderr is a terminal)."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        stream.write("\r" + terminal_safe(f"imported {done}/{total} sessions"))
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def run_import(args: argparse.Namespace, store: SecureStore) -> int:
    report = store.migrate(args.path, progress=progress_printer(sys.stderr))
    if args.json:
        print_json({"sessions": len(report.sessions), "items": report.items, "backup": report.backup,
                    "duplicates": [{"key": key, "kept": kept, "dropped": dropped}
                                   for key, kept, dropped in report.duplicates]})
        return EXIT_OK
    say(*(f"duplicate key {key}: kept {kept}, dropped {dropped}" for key, kept, dropped in report.duplicates),
        err=True)
    say(f"imported {len(report.sessions)} sessions ({report.items} items); the source is kept as {report.backup}")
    return EXIT_OK


def rollback(args: argparse.Namespace, store: SecureStore) -> int:
    moved = store.rollback_migration(args.path)
    if args.json:
        print_json({"moved_aside": len(moved), "restored": args.path})
    else:
        say(f"rolled back: {len(moved)} sessions moved aside, {args.path} restored")
    return EXIT_OK


def inspect(args: argparse.Namespace, store: SecureStore) -> int:
    result = inspect_source(store, args.path)
    if args.json:
        print_json(result.to_json())
        return EXIT_OK
    lines = [f"state: {result.state}" + (f" ({result.reason})" if result.reason else "")]
    if result.layout:
        lines.append(f"layout: {result.layout}; {result.sessions} sessions, {result.items} transcript items")
    lines += [f"duplicate key {d['key']}: kept {d['kept']}, dropped {d['dropped']}" for d in result.duplicates]
    lines += [f"refused {rejected['source']}: {rejected['why']}" for rejected in result.rejected]
    lines += [f"already in the store: {key}" for key in result.existing]
    lines += [f"backup: {backup}" for backup in result.backups]
    say(*lines)
    return EXIT_OK
