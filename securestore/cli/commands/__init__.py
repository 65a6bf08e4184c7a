"""One module per command group. Each has `add_parsers(commands)` for its arguments and help
texts, and one handler per command; main.py's dispatch table maps command paths to handlers."""

from __future__ import annotations

import argparse
from typing import TypeAlias

# What each group adds its parsers to (argparse's class is generic only to type checkers).
Subcommands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
