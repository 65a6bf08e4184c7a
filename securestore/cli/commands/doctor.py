"""`securestore doctor`: a health check of the store; changes nothing."""

from __future__ import annotations

import argparse

from ...api import diagnose
from ..console import print_json, say
from . import Subcommands

_MARK = {"ok": "ok", "attention": "ATTENTION", "damage": "DAMAGE"}


def add_parsers(commands: Subcommands) -> None:
    doctor = commands.add_parser("doctor", help="health check: modes, keys, disk, fsync, locks, audit trail, index "
                                                "(exit 0 healthy, 1 damage, 4 needs attention)")
    doctor.add_argument("--json", action="store_true")


def doctor(args: argparse.Namespace) -> int:
    report = diagnose(args.root, args.environ, master_key_file=args.master_key_file,
                      signing_key_file=args.signing_key_file)
    if args.json:
        print_json(report.to_json())
    else:
        say(*(f"{_MARK[f.status]:9} {f.check}: {f.detail}" for f in report.findings))
        verdict = {0: "healthy", 1: "DAMAGED", 4: "needs attention"}[report.exit_code]
        say(f"result: {verdict}")
    return report.exit_code
