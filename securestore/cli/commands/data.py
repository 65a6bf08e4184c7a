"""`securestore put` and `get`: one slot's JSON value."""

from __future__ import annotations

import argparse

from ...api import SecureStore, describe_key, parse_json_text
from ...errors import EXIT_OK, NotFoundError, PolicyError
from ..console import SECRET_INPUT, done, print_json, read_value
from . import Subcommands

_MISSING = object()


def add_parsers(commands: Subcommands) -> None:
    put = commands.add_parser("put", help="store a JSON value in a slot (creates the session)")
    put.add_argument("session")
    put.add_argument("slot")
    put.add_argument("value", metavar="VALUE_JSON", help=f"JSON text, - for standard input, or @FILE. {SECRET_INPUT}")
    put.add_argument("--json", action="store_true", help='print {"session", "slot", "version"}')

    get = commands.add_parser("get", help="print a slot's JSON value")
    get.add_argument("session")
    get.add_argument("slot")
    get.add_argument("--resolve", action="store_true", help="replace references by secret values")
    get.add_argument("--json", action="store_true", help="the value's JSON (what get prints anyway)")


def put(args: argparse.Namespace, store: SecureStore) -> int:
    try:
        value = parse_json_text(read_value(args.value, store), store.config.limits)
    except PolicyError as error:
        store.record_rejection("slot.put", args.session, error)
        raise
    version = store.put(args.session, args.slot, value)
    done(args.json, {"session": args.session, "slot": args.slot, "version": version},
         f"stored slot {describe_key(args.slot, '')} of session {describe_key(args.session, '')}, version {version}")
    return EXIT_OK


def get(args: argparse.Namespace, store: SecureStore) -> int:
    value = store.get(args.session, args.slot, resolve=args.resolve, default=_MISSING)
    if value is _MISSING:
        raise NotFoundError(f"session {describe_key(args.session, '')} has no slot {describe_key(args.slot, '')} "
                            "(`securestore session show` lists its slots)")
    print_json(value)
    return EXIT_OK
