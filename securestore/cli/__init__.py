"""The `securestore` command line; the console script is `securestore.cli:main`.

main.py: the parser, the dispatch table, exit codes and error lines. commands/: one module per
command group. console.py: what the commands print and read. render.py: formatting (no I/O).
demo.py: `securestore demo`."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from ..api import environment
from .main import build_parser, exit_code_of, run

__all__ = ["build_parser", "main", "run"]


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Parse `argv` and run the command (`run`, looked up here when called); every outcome,
    failures included, becomes the exit code. `environ` (default: the process environment) is
    read here only, and reaches the commands as `args.environ`."""
    env = environment() if environ is None else environ
    given = argparse.Namespace(environ=env)
    return exit_code_of(lambda: run(build_parser().parse_args(argv, given)),
                        debug=env.get("SECURESTORE_DEBUG") == "1")
