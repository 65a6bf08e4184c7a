"""`securestore sessions` (list, delete), `session` (show, items, append, history) and `index`
(the listing index)."""

from __future__ import annotations

import argparse

from ...api import SecureStore, describe_key, parse_json_text
from ...errors import EXIT_OK, PolicyError, UsageError
from ..console import SECRET_INPUT, done, print_json, read_value, row, say
from ..render import iso_time
from . import Subcommands


def add_parsers(commands: Subcommands) -> None:
    _add_sessions(commands)
    _add_session(commands)
    index = commands.add_parser("index", help="the listing index")
    index_cmds = index.add_subparsers(dest="index_command", required=True)
    index_cmds.add_parser("rebuild", help="recompute the index from the session directories (audited)")


def _add_sessions(commands: Subcommands) -> None:
    sessions = commands.add_parser("sessions", help="list or delete sessions")
    session_commands = sessions.add_subparsers(dest="sessions_command", required=True)
    listing = session_commands.add_parser("list", help="list sessions, newest first, a page at a time")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--limit", type=int, default=50, help="sessions per page (50)")
    listing.add_argument("--cursor", help="continue after a previous page (its next_cursor)")
    listing.add_argument("--workspace", help="only sessions of this workspace")
    listing.add_argument("--order", choices=("updated", "created"), default="updated")
    delete = session_commands.add_parser("delete", help="delete a session (audited)")
    delete.add_argument("session")


def _add_session(commands: Subcommands) -> None:
    session = commands.add_parser("session", help="one session: show, items, append, history")
    session_cmds = session.add_subparsers(dest="session_command", required=True)
    show = session_cmds.add_parser("show", help="metadata, revisions, item count, slots, lock holder")
    show.add_argument("session")
    show.add_argument("--json", action="store_true")
    items = session_cmds.add_parser("items", help="transcript items, oldest first")
    items.add_argument("session")
    items.add_argument("--limit", type=int, help="only the latest N items")
    items.add_argument("--json", action="store_true")
    items.add_argument("--resolve", action="store_true", help="replace references by secret values")
    append = session_cmds.add_parser("append", help="append one transcript item (creates the session)")
    append.add_argument("session")
    append.add_argument("item", metavar="ITEM_JSON",
                        help=f"a JSON object, - for standard input, or @FILE. {SECRET_INPUT}")
    history = session_cmds.add_parser("history", help="manifest revisions, oldest first")
    history.add_argument("session")
    history.add_argument("--json", action="store_true")


def list_sessions(args: argparse.Namespace, store: SecureStore) -> int:
    page = store.list_sessions(args.limit, args.cursor, args.order, args.workspace)
    if args.json:
        print_json({"sessions": [s.model_dump() for s in page.sessions], "next_cursor": page.next_cursor,
                    "skipped": [s.__dict__ for s in page.skipped]})
    else:
        for summary in page.sessions:
            title = (summary.title,) if summary.title else ()
            row(summary.key, f"{summary.items} items", f"updated {iso_time(summary.updated_ms)}", *title)
        if page.next_cursor:
            say(f"next page: --cursor {page.next_cursor}", err=True)
    say(*(f"skipped {entry.name}: {entry.reason}" for entry in page.skipped), err=True)
    return EXIT_OK


def delete_session(args: argparse.Namespace, store: SecureStore) -> int:
    store.delete_session(args.session)
    done(args.json, {"session": args.session, "deleted": True}, f"deleted session {describe_key(args.session, '')}")
    return EXIT_OK


def rebuild_index(args: argparse.Namespace, store: SecureStore) -> int:
    count = store.rebuild_index()
    done(args.json, {"sessions": count, "repaired": store.index_repaired, "skipped": store.index_skipped},
         f"index rebuilt: {count} sessions", *(f"repaired: {line}" for line in store.index_repaired),
         *(f"skipped {line}" for line in store.index_skipped))
    return EXIT_OK


def show(args: argparse.Namespace, store: SecureStore) -> int:
    view = store.describe_session(args.session)
    if args.json:
        print_json(view.__dict__)
        return EXIT_OK
    meta = view.metadata
    lines = [f"session   {view.key}", f"directory sessions/{view.name}"]
    lines += [f"{field:<9} {meta[field]}" for field in ("title", "workspace", "agent", "model") if meta.get(field)]
    if meta.get("labels"):
        lines.append("labels    " + ", ".join(f"{k}={v}" for k, v in sorted(meta["labels"].items())))
    say(*lines, f"revisions {view.revisions}", f"created   {iso_time(view.created_ms)}",
        f"updated   {iso_time(view.updated_ms)}", f"items     {view.items}",
        f"slots     {', '.join(view.slots) or '-'}", f"lock      {view.lock_holder or 'free'}")
    return EXIT_OK


def items(args: argparse.Namespace, store: SecureStore) -> int:
    if args.limit is not None and args.limit < 0:
        raise UsageError("--limit must be 0 or more")
    found = store.read_items(args.session, args.limit, resolve=args.resolve)
    if args.json:
        print_json(found)
    else:
        for item in found:
            print_json(item, indent=False)
    return EXIT_OK


def append(args: argparse.Namespace, store: SecureStore) -> int:
    try:
        item = parse_json_text(read_value(args.item, store), store.config.limits)
        with store.open_session(args.session, create=True) as handle:
            count = handle.append_items([item])
    except PolicyError as error:
        store.record_rejection("session.append", args.session, error)
        raise
    done(args.json, {"session": args.session, "items": count},
         f"appended to session {describe_key(args.session, '')}; its transcript holds {count} "
         + ("item" if count == 1 else "items"))
    return EXIT_OK


def history(args: argparse.Namespace, store: SecureStore) -> int:
    revisions = store.history(args.session)
    if args.json:
        print_json(revisions)
    else:
        for revision in revisions:
            row(f"rev {revision['rev']}", iso_time(revision["ts"]), revision["metadata"].get("title") or "")
    return EXIT_OK
