"""The parser, the one dispatch table (command path -> handler), and how every outcome becomes an
exit code and at most one escaped error line. Handlers live in commands/, one module per group.
Every handler finds the process environment in `args.environ` (main() reads it once)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import PurePath
from typing import cast

from pydantic import ValidationError

from ..api import ROOT_ENV, SIGNING_KEY_FILE_ENV, SecureStore, default_root, scrub_text
from .. import VERSION
from ..config import StoreConfig
from ..errors import EXIT_OPERATIONAL, EXIT_USAGE, SecureStoreError, UsageError
from .commands import Subcommands, audit, data, demo, doctor, init, maintain, migrate, pgsetup, session
from .console import SECRET_INPUT, say
from .render import terminal_safe

Handler = Callable[[argparse.Namespace], int]
StoreHandler = Callable[[argparse.Namespace, SecureStore], int]


# argparse quotes what the user typed in its errors; any of it could be a secret (a value given
# to the wrong flag, an extra argument): keep the rule, drop the value.
_ARGPARSE_ECHOES = (
    (re.compile(r"invalid choice: .* \(choose from ", re.S), "invalid choice (choose from "),
    (re.compile(r"invalid (\w+) value: .*", re.S), r"invalid \1 value (not shown)"),
    (re.compile(r"ignored explicit argument .*", re.S), "takes no value (the value given is not shown)"),
    (re.compile(r"unrecognized arguments: .*", re.S), "unrecognized arguments (not shown; see --help)"),
    (re.compile(r"ambiguous option: (--?[^=\s]*)\S* could match", re.S), r"ambiguous option: \1 could match"),
)


def _without_echoed_values(message: str) -> str:
    for pattern, replacement in _ARGPARSE_ECHOES:
        message = pattern.sub(replacement, message)
    return message


# pydantic's error text repeats the input (`input_value=...`), whatever hide_input_in_errors says
# elsewhere; greedy, so several errors in one message lose everything between their values.
_PYDANTIC_INPUT = re.compile(r"input_value=.*, input_type=", re.S)


def _error_line(message: str) -> str:
    """An error message as printed: no detected secret, no echoed input, one visible line."""
    return terminal_safe(scrub_text(_PYDANTIC_INPUT.sub("input_value=(not shown), input_type=", message)))


class _Parser(argparse.ArgumentParser):
    """Every level of the command tree is one of these: argparse's add_subparsers makes its
    parsers of the parent's class, so no level can print an error with the value echoed."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(_without_echoed_values(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="securestore", description="Audited, hardened session store for AI agents.",
                     epilog=f"Secrets: {SECRET_INPUT}")
    parser.add_argument("--version", action="version", version=f"securestore {VERSION}")
    _add_global_options(parser, default=None)
    # Typed as plain parsers: the groups need only add_parser, and every parser it makes is a _Parser.
    commands = cast(Subcommands, parser.add_subparsers(dest="command", required=True, parser_class=_Parser))
    # In this order in the help text.
    for add_parsers in (init.add_parsers, data.add_parsers, session.add_parsers, audit.add_parsers,
                        migrate.add_parsers, maintain.add_parsers, doctor.add_parsers, pgsetup.add_parsers,
                        demo.add_parsers):
        add_parsers(commands)
    # The global options are accepted after the subcommand too (`securestore put ... --root DIR`);
    # there they default to "not given", so they never undo one given before the subcommand.
    for leaf in _leaf_parsers(parser):
        _add_global_options(leaf, default=argparse.SUPPRESS)
        # Every command that prints can print JSON (anchors and proofs are JSON already); the
        # demo is a walkthrough for people, not for scripts.
        if "--json" not in leaf._option_string_actions and leaf.prog != "securestore demo":
            leaf.add_argument("--json", action="store_true", help="print the result as one JSON value on standard output")
    return parser


def _add_global_options(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument("--root", default=default,
                        help=f"store root (default: ${ROOT_ENV} or a per-user data directory)")
    parser.add_argument("--master-key-file", default=default,
                        help="file holding the master key (outside the root; default: the store's key directory)")
    parser.add_argument("--signing-key-file", default=default,
                        help=f"the audit signing key (outside the root; default ${SIGNING_KEY_FILE_ENV}, else the "
                             "store's key directory)")
    parser.add_argument("--principal", default=default, help="who the writes are made for (recorded in the audit log)")
    parser.add_argument("--lock-timeout", default=default, type=float, metavar="SECONDS",
                        help="how long a write waits for a session held by another writer before it fails "
                             "(0 to 600; default 10)")


def _leaf_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parsers of every runnable command (`put`, `sessions list`, ...), not the groups'."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    if not groups:
        return [parser]
    return [leaf for group in groups for child in group.choices.values() for leaf in _leaf_parsers(child)]


def _with_root(handler: Handler) -> Handler:
    """A command that needs the store's path (--root, else the default) but not an open store."""
    def at_root(args: argparse.Namespace) -> int:
        args.root = args.root or default_root(args.environ)
        return handler(args)

    return at_root


def _with_store(handler: StoreHandler) -> Handler:
    """A command that works on the open store; it is closed when the command returns or fails."""
    def on_store(args: argparse.Namespace) -> int:
        args.root = args.root or default_root(args.environ)
        with _open(args) as store:
            return handler(args, store)

    return on_store


def _open(args: argparse.Namespace) -> SecureStore:
    given = {name: value for name, value in (("principal", args.principal),
                                             ("lock_timeout_seconds", args.lock_timeout)) if value is not None}
    try:
        config = StoreConfig(**given)
    except ValidationError as exc:
        # pydantic's own text repeats the input value; report the rule only.
        error = exc.errors()[0]
        option = "--principal" if error["loc"][0] == "principal" else "--lock-timeout"
        raise UsageError(f"{option} rejected: {error['msg']}") from None
    return SecureStore(args.root, config, master_key_file=args.master_key_file, signing_key_file=args.signing_key_file,
                       environ=args.environ)


# Command path (the command, then the group's subcommand) -> handler. `demo` and `check-proof`
# take no store; `demo` also takes --root as given, so that without it it makes its own store.
_COMMANDS: dict[tuple[str, ...], Handler] = {
    ("init",): _with_root(init.init),
    ("put",): _with_store(data.put),
    ("get",): _with_store(data.get),
    ("sessions", "list"): _with_store(session.list_sessions),
    ("sessions", "delete"): _with_store(session.delete_session),
    ("session", "show"): _with_store(session.show),
    ("session", "items"): _with_store(session.items),
    ("session", "append"): _with_store(session.append),
    ("session", "history"): _with_store(session.history),
    ("index", "rebuild"): _with_store(session.rebuild_index),
    ("audit", "verify"): _with_store(audit.verify),
    ("audit", "seal"): _with_store(audit.seal),
    ("audit", "public-key"): _with_store(audit.public_key),
    ("audit", "anchor"): _with_store(audit.anchor),
    ("audit", "prove"): _with_store(audit.prove),
    ("audit", "consistency"): _with_store(audit.consistency),
    ("audit", "check-proof"): audit.check_proof,
    ("migrate", "inspect"): _with_store(migrate.inspect),
    ("migrate", "run"): _with_store(migrate.run_import),
    ("migrate", "rollback"): _with_store(migrate.rollback),
    ("migrate", "copy"): migrate.copy,
    ("maintain",): _with_store(maintain.maintain),
    ("doctor",): _with_root(doctor.doctor),
    ("pg-setup",): pgsetup.pg_setup_command,
    ("demo",): demo.demo,
}


def _command_path(args: argparse.Namespace) -> tuple[str, ...]:
    """A group's subparsers keep the subcommand in `<group>_command` (dest), e.g. sessions_command."""
    subcommand = getattr(args, f"{args.command}_command", None)
    return (args.command,) if subcommand is None else (args.command, subcommand)


def run(args: argparse.Namespace) -> int:
    return _COMMANDS[_command_path(args)](args)


def exit_code_of(command: Callable[[], int], *, debug: bool = False) -> int:
    """Runs `command` (parse and dispatch); every failure becomes its exit code and one line.
    With `debug`, a bug raises (for its traceback) instead."""
    try:
        return command()
    except SecureStoreError as error:
        # Defence in depth: messages are built without values, and are cleaned once more.
        say(f"securestore: error: {_error_line(str(error))}", err=True)
        return error.exit_code
    except KeyboardInterrupt:
        say("securestore: interrupted", err=True)
        return EXIT_OPERATIONAL
    except SystemExit as exit_:  # argparse --help
        return int(exit_.code or 0) if isinstance(exit_.code, int) else EXIT_USAGE
    except Exception as exc:  # a bug: say so in one line
        if debug:
            raise
        # Not its message: an unexpected exception's text may quote any input (int("<value>"),
        # a pydantic input_value), and no rule says what it may hold. Where it came from is safe.
        say(f"securestore: internal error ({type(exc).__name__} at {_origin(exc)}); run again with "
            "SECURESTORE_DEBUG=1 for the traceback", err=True)
        return EXIT_OPERATIONAL


def _origin(exc: BaseException) -> str:
    """file:line where `exc` was raised (the innermost frame)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "an unknown place"
    return f"{PurePath(tb.tb_frame.f_code.co_filename).name}:{tb.tb_lineno}"
