"""What the commands print and read. Every human-readable line leaves through `say` or `row`,
escaped (see render.terminal_safe); JSON values come from the command line, stdin or @FILE."""

from __future__ import annotations

import sys

from ..api import SecureStore, read_input_file
from ..errors import SecureStoreError, UsageError
from .render import dump_json, safe_lines, terminal_safe

# Other local users can read a process's command line (/proc/<pid>/cmdline, ps).
SECRET_INPUT = ("A value that holds a secret belongs on standard input (-) or in a file (@FILE), never on "
                "the command line, where other local users can read it.")


def say(*lines: str, err: bool = False) -> None:
    """Every human-readable line leaves through here, escaped whole (see render.terminal_safe)."""
    if lines:
        print(safe_lines(lines), file=sys.stderr if err else sys.stdout)


def done(as_json: bool, result: dict[str, object], *lines: str) -> None:
    """A command's outcome: one JSON object on standard output with --json, else its lines on
    standard error (standard output stays for data)."""
    if as_json:
        print_json(result)
    else:
        say(*lines, err=True)


def row(*fields: str) -> None:
    """A tab-separated row: each field escaped, so a tab or newline in one cannot add columns or rows."""
    print("\t".join(terminal_safe(field) for field in fields))


def print_json(value: object, *, indent: bool = True) -> None:
    print(dump_json(value, indent=indent))


def read_value(text: str, store: SecureStore) -> bytes:
    """The JSON text of VALUE_JSON / ITEM_JSON: literal, `-` for stdin, or `@FILE` (no JSON text
    starts with `@`). Stdin and files have the same cap (parse_json_text reports a longer stdin)."""
    cap = 2 * store.config.limits.max_value_bytes
    if text == "-":
        return sys.stdin.buffer.read(cap + 1)
    if text.startswith("@"):
        return _read_value_file(text[1:], cap)
    return text.encode("utf-8", "surrogatepass")


def _read_value_file(path: str, cap: int) -> bytes:
    """A regular file of ours (see api.read_input_file); what refused it, as a usage error."""
    if not path:
        raise UsageError("@ needs a file name: @FILE reads the JSON text from FILE")
    try:
        return read_input_file(path, cap)
    except UsageError:
        raise
    except SecureStoreError as exc:
        raise UsageError(f"cannot read the JSON text from @{path}: {exc}") from None
