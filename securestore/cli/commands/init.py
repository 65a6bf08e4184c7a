"""`securestore init`: a new store, and its keys.

With no flags the store gets its own keys in the per-user key directory (found again by store
id) and the verification seed is printed once on standard output. Flags and the key environment
variables still choose explicit key files."""

from __future__ import annotations

import argparse

from ...api import (
    DEFAULT_KEY_NAME, SeedOut, generate_master_key, init_store, keyring_of, new_signing_key_file, store_label,
)
from ...errors import EXIT_OK
from ..console import print_json, say
from . import Subcommands

_SEED_ADVICE = ("give the audit verification seed to your auditor (it proves the trail was not rewritten) and "
                "keep it off this machine; the store never keeps it and nobody can make it again")


def add_parsers(commands: Subcommands) -> None:
    init = commands.add_parser("init", help="create a new store (and its keys, unless configured)")
    init.add_argument("--seed-out", metavar="PATH", default="-",
                      help="where to export the audit verification seed, once: a new 0600 file outside the root, "
                           "or - for standard output (the default); the store never keeps it")
    init.add_argument("--generate-master-key", metavar="PATH",
                      help="write the new master key to PATH (0600, outside the root) instead of the key directory")
    init.add_argument("--generate-signing-key", metavar="PATH",
                      help="write the new Ed25519 audit signing key to PATH (0600, outside the root) instead of the "
                           "key directory")
    init.add_argument("--key-name", default=DEFAULT_KEY_NAME, help="name of a signing key made by --generate-signing-key")
    init.add_argument("--json", action="store_true",
                      help="print one JSON object (store id, root, key files, and the seed unless --seed-out PATH)")


def init(args: argparse.Namespace) -> int:
    signing_key_file = args.signing_key_file
    public_key = None
    if args.generate_signing_key:  # keys first, so a refused key path leaves no store behind
        key = new_signing_key_file(args.generate_signing_key, root_path=args.root, name=args.key_name)
        signing_key_file, public_key = args.generate_signing_key, key.verifier.text()
    master_key_file = args.master_key_file
    if args.generate_master_key:
        generate_master_key(args.generate_master_key, root_path=args.root)
        master_key_file = args.generate_master_key
    seed_lines: list[str] = []
    store_id = init_store(args.root, seed_out=_seed_destination(args.seed_out, seed_lines, args.json),
                          signing_key_file=signing_key_file, master_key_file=master_key_file, environ=args.environ)
    ring = keyring_of(store_id, args.environ)  # made by init when no key was configured
    if args.json:
        print_json({"store_id": store_id, "root": store_label(args.root, args.environ),
                    "key_directory": ring.path if ring else None,
                    "signing_key_file": ring.signing_key if ring else signing_key_file,
                    "public_key_file": ring.public_key if ring else None,
                    "master_key_file": ring.master_key if ring and ring.master_key else master_key_file,
                    "seed": "\n".join(seed_lines) if seed_lines else None,
                    "seed_file": None if args.seed_out == "-" else args.seed_out,
                    "seed_advice": _SEED_ADVICE})
        return EXIT_OK
    say(f"initialized store {store_id} at {store_label(args.root, args.environ)}", err=True)
    if ring is not None:
        made = "its audit signing key, public key and master key" if ring.master_key else \
            "its audit signing key and public key (the master key is the one configured)"
        say(f"keys: {ring.path} holds {made}; every securestore command finds them by store id. Back the directory "
            "up: without the master key vaulted secrets cannot be read, without the signing key nobody can write",
            err=True)
    if public_key is not None:
        say(f"wrote the audit signing key to {args.generate_signing_key}; its public key (give it to auditors): "
            f"{public_key}", err=True)
    if args.generate_master_key:
        say(f"wrote the master key to {args.generate_master_key} (keep it outside the store; back it up)", err=True)
    where = "written to standard output" if args.seed_out == "-" else f"written to {args.seed_out}"
    say(f"the audit verification seed was {where}: {_SEED_ADVICE}", err=True)
    return EXIT_OK


def _seed_destination(seed_out: str, kept: list[str], as_json: bool) -> SeedOut:
    """`-` prints the seed (escaped like every other line; with --json, inside the one JSON
    object); anything else is a new file's path."""
    if seed_out != "-":
        return seed_out

    def print_seed(text: bytes) -> None:
        lines = text.decode().splitlines()
        if as_json:
            kept.extend(lines)
        else:
            say(*lines)

    return print_seed
