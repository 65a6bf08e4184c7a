"""`securestore demo`: a scripted agent session against a fresh store (see cli/demo.py)."""

from __future__ import annotations

import argparse

from ..demo import run_demo
from . import Subcommands


def add_parsers(commands: Subcommands) -> None:
    demo = commands.add_parser("demo", help="run a scripted agent session against a fresh store")
    demo.add_argument("--keep", action="store_true", help="keep the temporary store and print its path")


def demo(args: argparse.Namespace) -> int:
    """Takes --root as given: without it the demo makes its own store (never the default root)."""
    return run_demo(args.root, keep=args.keep, environ=args.environ)
