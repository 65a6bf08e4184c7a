"""Command-line front end: parses arguments, calls the API, formats results, maps exit codes."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from pydantic import ValidationError

from .config import StoreConfig
from .errors import (
    EXIT_OK,
    EXIT_OPERATIONAL,
    EXIT_USAGE,
    KeyMaterialError,
    NotFoundError,
    PolicyError,
    SecureStoreError,
    UsageError,
)
from .backends.local.migrate_inspect import inspect_source
from .core.policy import parse_json_text
from .core.secrets import scrub_text
from .api.store import SecureStore, generate_master_key, init_store
from .audit.anchor import Anchor, encode_anchor, parse_anchor
from .audit.checkpoint import open_note, peek_note
from .audit.errors import RecordError
from .audit.keys import parse_verifier_key
from .audit.proof import ConsistencyProof, check_proof, encode_proof, parse_proof
from .api.keys import (
    DEFAULT_KEY_NAME,
    SIGNING_KEY_FILE_ENV,
    SeedOut,
    generate_signing_key,
    load_public_key,
    load_seed,
    load_signing_key,
)
from .fs import FsContext, open_parent, read_key_file, write_output_file
from .backends.local.proofs import make_anchor, prove_consistency, prove_inclusion
from .render import dump_json, format_verify, iso_time, json_safe, safe_lines, terminal_safe
from .backends.local.verify import VerifyOptions, verify_store

ROOT_ENV = "SECURESTORE_ROOT"


def default_root() -> str:
    if os.environ.get(ROOT_ENV):
        return os.environ[ROOT_ENV]
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "securestore")


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
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(_without_echoed_values(message))


def _say(*lines: str, err: bool = False) -> None:
    """Every human-readable line leaves through here, escaped whole (see render.terminal_safe)."""
    if lines:
        print(safe_lines(lines), file=sys.stderr if err else sys.stdout)


def _row(*fields: str) -> None:
    """A tab-separated row: each field escaped, so a tab or newline in one cannot add columns or rows."""
    print("\t".join(terminal_safe(field) for field in fields))


def _json(value: object, *, indent: bool = True) -> None:
    print(dump_json(value, indent=indent))


# Other local users can read a process's command line (/proc/<pid>/cmdline, ps).
_SECRET_INPUT = ("A value that holds a secret belongs on standard input (-) or in a file (@FILE), never on "
                 "the command line, where other local users can read it.")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="securestore", description="Audited, hardened session store for AI agents.",
                     epilog=f"Secrets: {_SECRET_INPUT}")
    parser.add_argument("--root", help=f"store root (default: ${ROOT_ENV} or a per-user data directory)")
    parser.add_argument("--master-key-file", help="file holding the master key (outside the root)")
    parser.add_argument("--signing-key-file",
                        help=f"the audit signing key (outside the root; default ${SIGNING_KEY_FILE_ENV})")
    parser.add_argument("--principal", help="who the writes are made for (recorded in the audit log)")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    init = commands.add_parser("init", help="create a new store")
    init.add_argument("--generate-master-key", metavar="PATH",
                      help="also write a new random master key to PATH (0600, outside the root)")
    init.add_argument("--seed-out", metavar="PATH", required=True,
                      help="where to export the audit verification seed, once (a new 0600 file outside the root, "
                           "or - for standard output); the store never keeps it")
    init.add_argument("--generate-signing-key", metavar="PATH",
                      help="write a new Ed25519 audit signing key to PATH (0600, outside the root) and use it")
    init.add_argument("--key-name", default=DEFAULT_KEY_NAME, help="name of a generated signing key")

    put = commands.add_parser("put", help="store a JSON value in a slot (creates the session)")
    put.add_argument("session")
    put.add_argument("slot")
    put.add_argument("value", metavar="VALUE_JSON", help=f"JSON text, - for standard input, or @FILE. {_SECRET_INPUT}")

    get = commands.add_parser("get", help="print a slot's JSON value")
    get.add_argument("session")
    get.add_argument("slot")
    get.add_argument("--resolve", action="store_true", help="replace references by secret values")

    sessions = commands.add_parser("sessions", help="list or delete sessions")
    session_commands = sessions.add_subparsers(dest="sessions_command", required=True, parser_class=_Parser)
    listing = session_commands.add_parser("list", help="list sessions, newest first, a page at a time")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--limit", type=int, default=50, help="sessions per page (50)")
    listing.add_argument("--cursor", help="continue after a previous page (its next_cursor)")
    listing.add_argument("--workspace", help="only sessions of this workspace")
    listing.add_argument("--order", choices=("updated", "created"), default="updated")
    delete = session_commands.add_parser("delete", help="delete a session (audited)")
    delete.add_argument("session")

    session = commands.add_parser("session", help="one session: show, items, append, history")
    session_cmds = session.add_subparsers(dest="session_command", required=True, parser_class=_Parser)
    show = session_cmds.add_parser("show", help="metadata, revisions, item count, slots, lock holder")
    show.add_argument("session")
    show.add_argument("--json", action="store_true")
    items = session_cmds.add_parser("items", help="transcript items, oldest first")
    items.add_argument("session")
    items.add_argument("--limit", type=int, help="only the latest N items")
    items.add_argument("--json", action="store_true")
    items.add_argument("--resolve", action="store_true", help="replace references by secret values")
    append = session_cmds.add_parser("append", help="append one transcript item (creates the session)")
    append.add_argument("session")
    append.add_argument("item", metavar="ITEM_JSON",
                        help=f"a JSON object, - for standard input, or @FILE. {_SECRET_INPUT}")
    history = session_cmds.add_parser("history", help="manifest revisions, oldest first")
    history.add_argument("session")
    history.add_argument("--json", action="store_true")

    index = commands.add_parser("index", help="the listing index")
    index_cmds = index.add_subparsers(dest="index_command", required=True, parser_class=_Parser)
    index_cmds.add_parser("rebuild", help="recompute the index from the session directories (audited)")

    audit = commands.add_parser("audit", help="audit trail commands")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
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
    prove = audit_commands.add_parser("prove", help="inclusion proof of record SEQ against the latest checkpoint")
    prove.add_argument("target", nargs="+", metavar="SESSION SEQ", help="SESSION SEQ, or SEQ with --store-log")
    prove.add_argument("--store-log", action="store_true", help="prove a record of the store log")
    prove.add_argument("--out", metavar="FILE")
    consistency = audit_commands.add_parser("consistency", help="consistency proof from OLD_SIZE to the latest checkpoint")
    consistency.add_argument("target", nargs="+", metavar="SESSION OLD_SIZE", help="SESSION OLD_SIZE, or OLD_SIZE with --store-log")
    consistency.add_argument("--store-log", action="store_true")
    consistency.add_argument("--out", metavar="FILE")
    check = audit_commands.add_parser("check-proof", help="check a proof file without the store")
    check.add_argument("proof", metavar="FILE")
    check.add_argument("--public-key", metavar="FILE", help="the trusted signer")
    check.add_argument("--anchor", metavar="FILE", help="trust the anchor's signer; a consistency proof must start at its checkpoint")

    migrate = commands.add_parser("migrate", help="import a legacy session store")
    migrate_cmds = migrate.add_subparsers(dest="migrate_command", required=True, parser_class=_Parser)
    inspect = migrate_cmds.add_parser("inspect", help="say what importing PATH would do (reads only)")
    inspect.add_argument("path")
    inspect.add_argument("--json", action="store_true")
    run_import = migrate_cmds.add_parser("run", help="import PATH (staged, then published; audited)")
    run_import.add_argument("path")
    rollback = migrate_cmds.add_parser("rollback", help="undo the latest import of PATH")
    rollback.add_argument("path")

    maintain = commands.add_parser("maintain", help="retention and disk budget (warn mode unless --enforce)")
    maintain.add_argument("--enforce", action="store_true", help="act: evict (audited) and reclaim leftovers")
    maintain.add_argument("--json", action="store_true")
    maintain.add_argument("--prune-after-days", type=float, help="evict sessions not updated for this long (30)")
    maintain.add_argument("--max-sessions", type=int, help="keep at most this many sessions (5000)")
    maintain.add_argument("--max-disk-bytes", type=int, help="disk budget (10 GiB); evict down to 80%% of it")
    maintain.add_argument("--protect", action="append", default=[], metavar="PATTERN",
                          help="never evict sessions whose key matches this glob (repeatable)")

    demo = commands.add_parser("demo", help="run a scripted agent session against a fresh store")
    demo.add_argument("--keep", action="store_true", help="keep the temporary store and print its path")
    return parser


def _read_value(text: str, store: SecureStore) -> bytes:
    """The JSON text of VALUE_JSON / ITEM_JSON: literal, `-` for stdin, or `@FILE` (no JSON text
    starts with `@`). Stdin and files have the same cap (parse_json_text reports a longer stdin)."""
    cap = 2 * store.config.limits.max_value_bytes
    if text == "-":
        return sys.stdin.buffer.read(cap + 1)
    if text.startswith("@"):
        return _read_value_file(text[1:], cap)
    return text.encode("utf-8", "surrogatepass")


def _read_value_file(path: str, cap: int) -> bytes:
    """A regular file of ours: never a symlink, FIFO or device, nor another user's file (which
    could be swapped or fed while we read it)."""
    if not path:
        raise UsageError("@ needs a file name: @FILE reads the JSON text from FILE")
    what = f"cannot read the JSON text from @{path}"
    try:
        holder, name = open_parent(path, FsContext())
        with holder:
            entry = holder.entry(name)
            if entry is not None and entry.kind not in ("file", "symlink"):
                found = "a directory" if entry.kind == "dir" else "a FIFO, socket or device"
                raise UsageError(f"{what}: it is {found}, not a regular file")
            return holder.read(name, cap, ours=False)  # O_NOFOLLOW, fstat: the checks that count
    except UsageError:
        raise
    except SecureStoreError as exc:
        raise UsageError(f"{what}: {exc}") from None


def _open(args: argparse.Namespace) -> SecureStore:
    try:
        config = StoreConfig(principal=args.principal) if args.principal else StoreConfig()
    except ValidationError as exc:
        # pydantic's own text repeats the input value; report the rule only.
        raise UsageError(f"--principal rejected: {exc.errors()[0]['msg']}") from None
    return SecureStore(args.root, config, master_key_file=args.master_key_file, signing_key_file=args.signing_key_file)


def run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        from .demo import run_demo

        return run_demo(args.root, keep=args.keep)
    args.root = args.root or default_root()
    if args.command == "init":
        return _init(args)
    if args.command == "audit" and args.audit_command == "check-proof":
        return _check_proof(args)
    if args.command == "audit" and args.audit_command == "public-key":
        key = load_signing_key(FsContext(), args.root, key=None, key_file=args.signing_key_file, environ=os.environ)
        if key is None:
            raise KeyMaterialError(f"no audit signing key configured (--signing-key-file or ${SIGNING_KEY_FILE_ENV})")
        _say(key.verifier.text())
        return EXIT_OK
    with _open(args) as store:
        if args.command == "put":
            try:
                value = parse_json_text(_read_value(args.value, store), store.config.limits)
            except PolicyError as error:
                store.record_rejection("slot.put", args.session, error)
                raise
            version = store.put(args.session, args.slot, value)
            _say(f"stored slot version {version}", err=True)
        elif args.command == "get":
            value = store.get(args.session, args.slot, resolve=args.resolve, default=_MISSING)
            if value is _MISSING:
                raise NotFoundError("no such slot in that session")
            _json(value)
        elif args.command == "sessions" and args.sessions_command == "list":
            page = store.list_sessions(args.limit, args.cursor, args.order, args.workspace)
            if args.json:
                _json({"sessions": [s.model_dump() for s in page.sessions], "next_cursor": page.next_cursor,
                       "skipped": [s.__dict__ for s in page.skipped]})
            else:
                for summary in page.sessions:
                    title = (summary.title,) if summary.title else ()
                    _row(summary.key, f"{summary.items} items", f"updated {iso_time(summary.updated_ms)}", *title)
                if page.next_cursor:
                    _say(f"next page: --cursor {page.next_cursor}", err=True)
            _say(*(f"skipped {entry.name}: {entry.reason}" for entry in page.skipped), err=True)
        elif args.command == "index":
            count = store.rebuild_index()
            _say(f"index rebuilt: {count} sessions", *(f"repaired: {line}" for line in store.index_repaired),
                 *(f"skipped {line}" for line in store.index_skipped), err=True)
        elif args.command == "sessions" and args.sessions_command == "delete":
            store.delete_session(args.session)
            _say("deleted", err=True)
        elif args.command == "session":
            return _session_command(args, store)
        elif args.command == "maintain":
            return _maintain_command(args, store)
        elif args.command == "migrate":
            return _migrate_command(args, store)
        elif args.command == "audit":
            return _audit_command(args, store)
    return EXIT_OK


_MISSING = object()


def progress_printer(stream: TextIO) -> Callable[[int, int], None] | None:
    """Progress for long imports, only when a person is watching (stderr is a terminal)."""
    if not stream.isatty():
        return None

    def show(done: int, total: int) -> None:
        stream.write("\r" + terminal_safe(f"imported {done}/{total} sessions"))
        if done == total:
            stream.write("\n")
        stream.flush()

    return show


def _migrate_command(args: argparse.Namespace, store: SecureStore) -> int:
    if args.migrate_command == "run":
        report = store.migrate(args.path, progress=progress_printer(sys.stderr))
        _say(*(f"duplicate key {key}: kept {kept}, dropped {dropped}" for key, kept, dropped in report.duplicates),
             err=True)
        _say(f"imported {len(report.sessions)} sessions ({report.items} items); the source is kept as {report.backup}")
        return EXIT_OK
    if args.migrate_command == "rollback":
        moved = store.rollback_migration(args.path)
        _say(f"rolled back: {len(moved)} sessions moved aside, {args.path} restored")
        return EXIT_OK
    result = inspect_source(store, args.path)
    if args.json:
        _json(result.to_json())
        return EXIT_OK
    lines = [f"state: {result.state}" + (f" ({result.reason})" if result.reason else "")]
    if result.layout:
        lines.append(f"layout: {result.layout}; {result.sessions} sessions, {result.items} transcript items")
    lines += [f"duplicate key {d['key']}: kept {d['kept']}, dropped {d['dropped']}" for d in result.duplicates]
    lines += [f"refused {rejected['source']}: {rejected['why']}" for rejected in result.rejected]
    lines += [f"already in the store: {key}" for key in result.existing]
    lines += [f"backup: {backup}" for backup in result.backups]
    _say(*lines)
    return EXIT_OK


def _maintain_command(args: argparse.Namespace, store: SecureStore) -> int:
    overrides: dict[str, object] = {}
    for flag, field in (("prune_after_days", "prune_after_days"), ("max_sessions", "max_sessions_kept"),
                        ("max_disk_bytes", "max_disk_bytes")):
        if getattr(args, flag) is not None:
            overrides[field] = getattr(args, flag)
    if args.protect:
        overrides["protected_keys"] = tuple(store.config.maintenance.protected_keys) + tuple(args.protect)
    try:
        policy = store.config.maintenance.model_copy(update=overrides)
        policy = type(policy).model_validate(policy.model_dump())
    except ValidationError as exc:
        raise UsageError(f"maintenance option rejected: {exc.errors()[0]['msg']}") from None
    report = store.maintain(enforce=args.enforce, policy=policy)
    if args.json:
        _json(report.to_json())
        return EXIT_OK
    lines = [f"mode: {report.mode}" + ("" if args.enforce else " (nothing changed; run with --enforce to act)"),
             f"sessions: {report.sessions_before} -> {report.sessions_after}; "
             f"bytes: {report.bytes_before} -> {report.bytes_after}"]
    lines += [f"evict {e.key} ({e.reason}, updated {iso_time(e.updated_ms)}, {e.bytes} bytes)"
              for e in report.evictions]
    lines += [f"protected {key}: {why}" for key, why in report.protected]
    if report.temp_files:
        lines.append(f"leftovers of interrupted writes: {report.temp_files} files, {report.temp_bytes} bytes")
    _say(*lines)
    _say(*(f"skipped {line}" for line in report.skipped), err=True)
    return EXIT_OK


def _session_command(args: argparse.Namespace, store: SecureStore) -> int:
    command = args.session_command
    if command == "show":
        view = store.describe_session(args.session)
        if args.json:
            _json(view.__dict__)
        else:
            meta = view.metadata
            lines = [f"session   {view.key}", f"directory sessions/{view.name}"]
            lines += [f"{field:<9} {meta[field]}" for field in ("title", "workspace", "agent", "model")
                      if meta.get(field)]
            if meta.get("labels"):
                lines.append("labels    " + ", ".join(f"{k}={v}" for k, v in sorted(meta["labels"].items())))
            _say(*lines, f"revisions {view.revisions}", f"created   {iso_time(view.created_ms)}",
                 f"updated   {iso_time(view.updated_ms)}", f"items     {view.items}",
                 f"slots     {', '.join(view.slots) or '-'}", f"lock      {view.lock_holder or 'free'}")
    elif command == "items":
        if args.limit is not None and args.limit < 0:
            raise UsageError("--limit must be 0 or more")
        found = store.read_items(args.session, args.limit, resolve=args.resolve)
        if args.json:
            _json(found)
        else:
            for item in found:
                _json(item, indent=False)
    elif command == "append":
        try:
            item = parse_json_text(_read_value(args.item, store), store.config.limits)
        except PolicyError as error:
            store.record_rejection("session.append", args.session, error)
            raise
        try:
            with store.open_session(args.session, create=True) as handle:
                count = handle.append_items([item])
        except PolicyError as error:
            store.record_rejection("session.append", args.session, error)
            raise
        _say(f"appended; the transcript holds {count} items", err=True)
    elif command == "history":
        revisions = store.history(args.session)
        if args.json:
            _json(revisions)
        else:
            for revision in revisions:
                _row(f"rev {revision['rev']}", iso_time(revision["ts"]), revision["metadata"].get("title") or "")
    return EXIT_OK



def _init(args: argparse.Namespace) -> int:
    ctx = FsContext()
    signing_key_file = args.signing_key_file
    if args.generate_signing_key:  # keys first, so a refused key path leaves no store behind
        key = generate_signing_key(ctx, args.generate_signing_key, root_path=args.root, name=args.key_name)
        signing_key_file = args.generate_signing_key
        _say(f"wrote a new audit signing key to {args.generate_signing_key}; its public key (give it to "
             f"auditors): {key.verifier.text()}", err=True)
    if args.generate_master_key:
        generate_master_key(args.generate_master_key, root_path=args.root)
        _say(f"wrote a new master key to {args.generate_master_key} (keep it outside the store; back it up)", err=True)
    destination: SeedOut = args.seed_out
    if args.seed_out == "-":
        def seed_out(text: bytes) -> None:
            _say(*text.decode().splitlines())

        destination = seed_out
    store_id = init_store(args.root, seed_out=destination, signing_key_file=signing_key_file)
    where = "printed above" if args.seed_out == "-" else f"written to {args.seed_out}"
    _say(f"initialized store {store_id} at {args.root}; the audit verification seed was {where}: give it to "
         "your auditor and remove it from this machine", err=True)
    return EXIT_OK


def _write_out(data: bytes, out: str | None) -> None:
    """An anchor or proof (JSON): a new file, or standard output."""
    if out is None:
        sys.stdout.write(json_safe(data.decode()))
    else:
        write_output_file(out, data, FsContext())


def _two_args(args: argparse.Namespace, what: str) -> tuple[str | None, int]:
    expected = 1 if args.store_log else 2
    if len(args.target) != expected:
        raise UsageError(f"expected {'' if args.store_log else 'SESSION '}{what}")
    try:
        number = int(args.target[-1])
    except ValueError:
        raise UsageError(f"{what} must be a number") from None
    return (None if args.store_log else args.target[0]), number


def _audit_command(args: argparse.Namespace, store: SecureStore) -> int:
    command = args.audit_command
    ctx = FsContext()
    if command == "verify":
        options = VerifyOptions(
            seed=_seed_for(store, args.seed, ctx) if args.seed else None,
            public_key=load_public_key(ctx, args.public_key) if args.public_key else None,
            anchor=_read_anchor(args.anchor, ctx) if args.anchor else None,
            max_unsealed=args.max_unsealed,
        )
        report = verify_store(store, args.session, options)
        if args.json:
            _json(report.to_json())
        else:
            _say(*format_verify(report).split("\n"))
        return report.exit_code
    if command == "seal":
        sealed = store.seal()
        _say(f"sealed the store log and {len(sealed.sealed)} sessions; {len(sealed.busy)} busy (their writers "
             "seal on close)", *(f"skipped {line}" for line in sealed.skipped), err=True)
    elif command == "anchor":
        _write_out(encode_anchor(make_anchor(store, args.session)), args.out)
    elif command == "prove":
        session, seq = _two_args(args, "SEQ")
        _write_out(encode_proof(prove_inclusion(store, session, seq)), args.out)
    elif command == "consistency":
        session, old_size = _two_args(args, "OLD_SIZE")
        _write_out(encode_proof(prove_consistency(store, session, old_size)), args.out)
    return EXIT_OK


def _seed_for(store: SecureStore, path: str, ctx: FsContext) -> bytes:
    store_id, seed = load_seed(ctx, path, root_path=store.root_path)
    if store_id != store.store_id:
        raise UsageError(f"the seed is for store {store_id}, not {store.store_id}")
    return seed


def _read_anchor(path: str, ctx: FsContext) -> Anchor:
    try:
        return parse_anchor(read_key_file(path, ctx, root_path=None, cap=64 * 1024 * 1024, secret=False))
    except RecordError as exc:
        raise UsageError(f"{path}: {exc.detail}") from None


def _check_proof(args: argparse.Namespace) -> int:
    ctx = FsContext()
    if not args.public_key and not args.anchor:
        raise UsageError("check-proof needs the trusted signer: --public-key FILE or --anchor FILE")
    anchor = _read_anchor(args.anchor, ctx) if args.anchor else None
    try:
        proof = parse_proof(read_key_file(args.proof, ctx, root_path=None, cap=4 * 1024 * 1024, secret=False))
        trusted = load_public_key(ctx, args.public_key) if args.public_key else parse_verifier_key(anchor.signer if anchor else "")
        anchored = None
        if anchor is not None and isinstance(proof, ConsistencyProof):
            log_id = peek_note(proof.checkpoint).log_id
            for entry in anchor.logs:
                candidate = open_note(entry.note, trusted)
                if candidate.log_id == log_id:
                    anchored = candidate
            if anchored is None:
                raise RecordError("consistency", "the anchor holds no checkpoint of this log")
        result = check_proof(proof, trusted, anchored)
    except RecordError as exc:
        _say(f"securestore: proof FAILED the {exc.check} check: {exc.detail}", err=True)
        return 1
    _say(f"OK: {result.statement}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return run(args)
    except SecureStoreError as error:
        # Defence in depth: messages are built without values, and are cleaned once more.
        _say(f"securestore: error: {_error_line(str(error))}", err=True)
        return error.exit_code
    except KeyboardInterrupt:
        _say("securestore: interrupted", err=True)
        return EXIT_OPERATIONAL
    except SystemExit as exit_:  # argparse --help
        return int(exit_.code or 0) if isinstance(exit_.code, int) else EXIT_USAGE
    except Exception as exc:  # a bug: say so in one line
        if os.environ.get("SECURESTORE_DEBUG") == "1":
            raise
        # Not its message: an unexpected exception's text may quote any input (int("<value>"),
        # a pydantic input_value), and no rule says what it may hold. Where it came from is safe.
        _say(f"securestore: internal error ({type(exc).__name__} at {_origin(exc)}); run again with "
             "SECURESTORE_DEBUG=1 for the traceback", err=True)
        return EXIT_OPERATIONAL


def _origin(exc: BaseException) -> str:
    """file:line where `exc` was raised (the innermost frame)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "an unknown place"
    return f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
