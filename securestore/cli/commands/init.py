"""`securestore init`: a new store, and optionally its master key and audit signing key."""

from __future__ import annotations

import argparse

from ...api import DEFAULT_KEY_NAME, SeedOut, generate_master_key, init_store, new_signing_key_file
from ...errors import EXIT_OK
from ..console import say
from . import Subcommands


def add_parsers(commands: Subcommands) -> None:
    init = commands.add_parser("init", help="create a new store")
    init.add_argument("--generate-master-key", metavar="PATH",
                      help="also write a new random master key to PATH (0600, outside the root)")
    init.add_argument("--seed-out", metavar="PATH", required=True,
                      help="where to export the audit verification seed, once (a new 0600 file outside the root, "
                           "or - for standard output); the store never keeps it")
    init.add_argument("--generate-signing-key", metavar="PATH",
                      help="write a new Ed25519 audit signing key to PATH (0600, outside the root) and use it")
    init.add_argument("--key-name", default=DEFAULT_KEY_NAME, help="name of a generated signing key")


def init(args: argparse.Namespace) -> int:
    signing_key_file = args.signing_key_file
    if args.generate_signing_key:  # keys first, so a refused key path leaves no store behind
        key = new_signing_key_file(args.generate_signing_key, root_path=args.root, name=args.key_name)
        signing_key_file = args.generate_signing_key
        say(f"wrote a new audit signing key to {args.generate_signing_key}; its public key (give it to "
            f"auditors): {key.verifier.text()}", err=True)
    if args.generate_master_key:
        generate_master_key(args.generate_master_key, root_path=args.root)
        say(f"wrote a new master key to {args.generate_master_key} (keep it outside the store; back it up)", err=True)
    store_id = init_store(args.root, seed_out=_seed_destination(args.seed_out), signing_key_file=signing_key_file,
                          environ=args.environ)
    where = "printed above" if args.seed_out == "-" else f"written to {args.seed_out}"
    say(f"initialized store {store_id} at {args.root}; the audit verification seed was {where}: give it to "
        "your auditor and remove it from this machine", err=True)
    return EXIT_OK


def _seed_destination(seed_out: str) -> SeedOut:
    """`-` prints the seed (escaped like every other line); anything else is a new file's path."""
    if seed_out != "-":
        return seed_out

    def print_seed(text: bytes) -> None:
        say(*text.decode().splitlines())

    return print_seed
