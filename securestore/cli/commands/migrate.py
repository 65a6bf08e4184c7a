"""`securestore migrate`: inspect, run and roll back the import of a legacy session store; copy a
whole store between backends (`migrate copy --from SRC --to DST`, verified before and after)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TextIO

from ...api import SecureStore, copy_store, inspect_source
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
    copy = migrate_cmds.add_parser(
        "copy", help="copy a whole store, audit trail included, into an empty directory or database (verified "
                     "before and after; the keys stay where they are: the copy keeps the store id)")
    copy.add_argument("--from", dest="source", required=True, metavar="SRC", help="the store: a directory or URL")
    copy.add_argument("--to", dest="destination", required=True, metavar="DST",
                      help="an empty or new directory, or a postgresql:// URL set up by pg-setup holding no store")
    copy.add_argument("--seed", metavar="FILE", help="the source's verification seed from init: check every MAC")
    copy.add_argument("--public-key", metavar="FILE", help="the trusted checkpoint signer (name+id+key)")
    copy.add_argument("--anchor", metavar="FILE", help="an anchor from `audit anchor`, kept outside the store")
    copy.add_argument("--max-unsealed", type=int, metavar="N",
                      help="records allowed after the last checkpoint (default: one epoch)")


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


def copy(args: argparse.Namespace) -> int:
    """No open store: the source is opened (and held still) by the copy itself."""
    report = copy_store(args.source, args.destination, seed_file=args.seed, public_key_file=args.public_key,
                        anchor_file=args.anchor, max_unsealed=args.max_unsealed,
                        signing_key_file=args.signing_key_file, environ=args.environ,
                        progress=copy_progress(sys.stderr))
    say(*(f"warning: took over the lock of a dead holder: {what}" for what in report.took_over), err=True)
    if args.json:
        print_json(report.to_json())
        return EXIT_OK
    say(f"copied store {report.store_id} from {report.source} to {report.destination}: {report.files} files, "
        f"{report.bytes} bytes, {report.sessions} sessions; the source and the copy verify (trust root: "
        f"{report.copy_verify.trust_root})")
    return EXIT_OK


def copy_progress(stream: TextIO) -> Callable[[str, int], None] | None:
    """Files copied so far, only when a person is watching (stderr is a terminal)."""
    if not stream.isatty():
        return None

    def show(path: str, done: int) -> None:
        stream.write("\r" + terminal_safe(f"copied {done} files") + ("\n" if path == "store.json" else ""))
        stream.flush()  # store.json is copied last

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
