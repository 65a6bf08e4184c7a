"""`securestore audit`: verify, seal, public-key, anchor, prove, consistency and check-proof."""

from __future__ import annotations

import argparse
import sys

from ...api import (
    SIGNING_KEY_FILE_ENV,
    RecordError,
    SecureStore,
    check_proof_file,
    export_anchor,
    export_consistency_proof,
    export_inclusion_proof,
    verify_options,
    verify_store,
    write_new_file,
)
from ...errors import EXIT_OK, KeyMaterialError, UsageError
from ..console import done, print_json, say
from ..render import format_verify, json_safe
from . import Subcommands


def add_parsers(commands: Subcommands) -> None:
    audit = commands.add_parser("audit", help="audit trail commands")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_commands.add_parser("verify", help="verify the audit trail and the data against it")
    verify.add_argument("session", nargs="?")
    verify.add_argument("--json", action="store_true")
    verify.add_argument("--seed", metavar="FILE", help="the verification seed from init: check every MAC")
    verify.add_argument("--public-key", metavar="FILE", help="the trusted checkpoint signer (name+id+key)")
    verify.add_argument("--anchor", metavar="FILE", help="an anchor from `audit anchor`, kept outside the store")
    verify.add_argument("--max-unsealed", type=int, metavar="N",
                        help="records allowed after the last checkpoint (default: one epoch)")
    audit_commands.add_parser("seal", help="sign checkpoints over every idle log (run it from a timer)")
    audit_commands.add_parser("public-key", help="print the public half of the configured signing key")
    anchor = audit_commands.add_parser("anchor", help="export the latest signed checkpoints (seals first)")
    anchor.add_argument("session", nargs="?")
    anchor.add_argument("--out", metavar="FILE", help="a new file (default: standard output)")
    _add_proofs(audit_commands)


def _add_proofs(audit_commands: Subcommands) -> None:
    prove = audit_commands.add_parser("prove", help="inclusion proof of record SEQ against the latest checkpoint")
    prove.add_argument("target", nargs="+", metavar="SESSION SEQ", help="SESSION SEQ, or SEQ with --store-log")
    prove.add_argument("--store-log", action="store_true", help="prove a record of the store log")
    prove.add_argument("--out", metavar="FILE")
    consistency = audit_commands.add_parser("consistency",
                                            help="consistency proof from OLD_SIZE to the latest checkpoint")
    consistency.add_argument("target", nargs="+", metavar="SESSION OLD_SIZE",
                             help="SESSION OLD_SIZE, or OLD_SIZE with --store-log")
    consistency.add_argument("--store-log", action="store_true")
    consistency.add_argument("--out", metavar="FILE")
    check = audit_commands.add_parser("check-proof", help="check a proof file without the store")
    check.add_argument("proof", metavar="FILE")
    check.add_argument("--public-key", metavar="FILE", help="the trusted signer")
    check.add_argument("--anchor", metavar="FILE",
                       help="trust the anchor's signer; a consistency proof must start at its checkpoint")


def verify(args: argparse.Namespace, store: SecureStore) -> int:
    options = verify_options(store, seed_file=args.seed, public_key_file=args.public_key, anchor_file=args.anchor,
                             max_unsealed=args.max_unsealed)
    report = verify_store(store, args.session, options)
    if args.json:
        print_json(report.to_json())
    else:
        say(*format_verify(report).split("\n"))
    return report.exit_code


def seal(args: argparse.Namespace, store: SecureStore) -> int:
    sealed = store.seal()
    done(args.json, {"sealed": len(sealed.sealed), "busy": len(sealed.busy), "skipped": sealed.skipped},
         f"sealed the store log and {len(sealed.sealed)} sessions; {len(sealed.busy)} busy (their writers "
         "seal on close)", *(f"skipped {line}" for line in sealed.skipped))
    return EXIT_OK


def public_key(args: argparse.Namespace, store: SecureStore) -> int:
    key = store.backend.env.signer  # the configured key, else the one in the store's key directory
    if key is None:
        raise KeyMaterialError(f"no audit signing key for store {store.store_id}: none in its key directory, and none "
                               f"configured (--signing-key-file or ${SIGNING_KEY_FILE_ENV})")
    if args.json:
        print_json({"public_key": key.verifier.text()})
    else:
        say(key.verifier.text())
    return EXIT_OK


def anchor(args: argparse.Namespace, store: SecureStore) -> int:
    _write_out(export_anchor(store, args.session), args.out)
    return EXIT_OK


def prove(args: argparse.Namespace, store: SecureStore) -> int:
    session, seq = _two_args(args, "SEQ")
    _write_out(export_inclusion_proof(store, session, seq), args.out)
    return EXIT_OK


def consistency(args: argparse.Namespace, store: SecureStore) -> int:
    session, old_size = _two_args(args, "OLD_SIZE")
    _write_out(export_consistency_proof(store, session, old_size), args.out)
    return EXIT_OK


def check_proof(args: argparse.Namespace) -> int:
    if not args.public_key and not args.anchor:
        raise UsageError("check-proof needs the trusted signer: --public-key FILE or --anchor FILE")
    try:
        result = check_proof_file(args.proof, public_key_file=args.public_key, anchor_file=args.anchor)
    except RecordError as exc:
        if args.json:
            print_json({"ok": False, "check": exc.check, "detail": exc.detail})
        else:
            say(f"securestore: proof FAILED the {exc.check} check: {exc.detail}", err=True)
        return 1
    if args.json:
        print_json({"ok": True, "statement": result.statement})
    else:
        say(f"OK: {result.statement}")
    return EXIT_OK


def _write_out(data: bytes, out: str | None) -> None:
    """An anchor or proof (JSON): a new file, or standard output."""
    if out is None:
        sys.stdout.write(json_safe(data.decode()))
    else:
        write_new_file(out, data)


def _two_args(args: argparse.Namespace, what: str) -> tuple[str | None, int]:
    expected = 1 if args.store_log else 2
    if len(args.target) != expected:
        raise UsageError(f"expected {'' if args.store_log else 'SESSION '}{what}")
    try:
        number = int(args.target[-1])
    except ValueError:
        raise UsageError(f"{what} must be a number") from None
    return (None if args.store_log else args.target[0]), number
