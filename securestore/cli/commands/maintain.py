"""`securestore maintain`: retention and the disk budget (reports only, unless --enforce)."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from ...api import SecureStore
from ...config import MaintenancePolicy
from ...errors import EXIT_OK, UsageError
from ..console import print_json, say
from ..render import iso_time
from . import Subcommands

# option dest -> MaintenancePolicy field
_OVERRIDES = (("prune_after_days", "prune_after_days"), ("max_sessions", "max_sessions_kept"),
              ("max_disk_bytes", "max_disk_bytes"))


def add_parsers(commands: Subcommands) -> None:
    maintain = commands.add_parser("maintain", help="retention and disk budget (warn mode unless --enforce)")
    maintain.add_argument("--enforce", action="store_true", help="act: evict (audited) and reclaim leftovers")
    maintain.add_argument("--json", action="store_true")
    maintain.add_argument("--prune-after-days", type=float, help="evict sessions not updated for this long (30)")
    maintain.add_argument("--max-sessions", type=int, help="keep at most this many sessions (5000)")
    maintain.add_argument("--max-disk-bytes", type=int, help="disk budget (10 GiB); evict down to 80%% of it")
    maintain.add_argument("--protect", action="append", default=[], metavar="PATTERN",
                          help="never evict sessions whose key matches this glob (repeatable)")


def maintain(args: argparse.Namespace, store: SecureStore) -> int:
    report = store.maintain(enforce=args.enforce, policy=_policy(args, store))
    if args.json:
        print_json(report.to_json())
        return EXIT_OK
    lines = [f"mode: {report.mode}" + ("" if args.enforce else " (nothing changed; run with --enforce to act)"),
             f"sessions: {report.sessions_before} -> {report.sessions_after}; "
             f"bytes: {report.bytes_before} -> {report.bytes_after}"]
    lines += [f"evict {e.key} ({e.reason}, updated {iso_time(e.updated_ms)}, {e.bytes} bytes)"
              for e in report.evictions]
    lines += [f"protected {key}: {why}" for key, why in report.protected]
    if report.temp_files:
        lines.append(f"leftovers of interrupted writes: {report.temp_files} files, {report.temp_bytes} bytes")
    say(*lines)
    say(*(f"skipped {line}" for line in report.skipped), err=True)
    return EXIT_OK


def _policy(args: argparse.Namespace, store: SecureStore) -> MaintenancePolicy:
    """The store's maintenance policy with the command-line options over it, validated again."""
    overrides: dict[str, object] = {field: getattr(args, flag) for flag, field in _OVERRIDES
                                    if getattr(args, flag) is not None}
    if args.protect:
        overrides["protected_keys"] = tuple(store.config.maintenance.protected_keys) + tuple(args.protect)
    try:
        policy = store.config.maintenance.model_copy(update=overrides)
        return type(policy).model_validate(policy.model_dump())
    except ValidationError as exc:
        raise UsageError(f"maintenance option rejected: {exc.errors()[0]['msg']}") from None
