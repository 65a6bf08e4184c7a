"""How many OS calls (and fsyncs) securestore makes per public operation.

    PYTHONPATH=<tree> python tools/os_calls.py [--rounds N] [--json] [--dir PATH]

Measures the tree on PYTHONPATH (the header names the package it imported), so one copy of this
file measures any checkout: it adds nothing to sys.path itself.

Every field of the store's OS-call table (`securestore.fs.osapi.OsApi`) is wrapped to count its
calls by name. Each operation gets a fresh store; the store, the session and any other sessions
are set up first, then the counters are reset and the operation runs N times; figures are the
mean per operation. Columns: "io" counts the calls the tree itself classes as I/O
(`io_call_names()`), "fsyncs" the fsync/fdatasync among them, "other" the remaining table calls
(clock, random bytes, pid, ...: a tree that routes the clock through the table counts it here,
one that calls `time` directly does not). Counts are deterministic for a given tree, except that
an audit epoch also ends on the wall clock (60 s by default), which a normal run never reaches.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

import orjson

import securestore
from securestore import SecureStore, Session, generate_master_key, init_store, open_store
from securestore.fs import REAL_OS, FsContext, OsApi, io_call_names

FSYNC_NAMES = frozenset({"fsync", "fdatasync"})
TOP_NAMES = 6
ITEM_BYTES = 200
EXISTING_SESSIONS = 20
TURN_ITEMS = 16

Operation = Callable[[int], object]  # runs round i of the operation
Setup = Callable[[SecureStore, ExitStack], Operation]  # prepares a store, returns the operation


def signing_key_generator() -> Callable[..., object]:
    """`generate_signing_key(ctx, path, *, root_path)`: securestore/api/keys.py on main, and
    securestore/audit_keys.py before the redesign (abc8309); same signature in both."""
    for module in ("securestore.api.keys", "securestore.audit_keys"):
        try:
            return cast(Callable[..., object], importlib.import_module(module).generate_signing_key)
        except ModuleNotFoundError:
            continue
    raise SystemExit("os_calls: no generate_signing_key in securestore.api.keys or securestore.audit_keys")


class CallCounter:
    """Counts every call made through a table it wraps, by field name."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def wrap(self, base: OsApi) -> OsApi:
        return replace(base, **{f.name: self._counted(f.name, getattr(base, f.name)) for f in fields(base)})

    def _counted(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.counts[name] += 1
            return fn(*args, **kwargs)

        return call


@dataclass(frozen=True)
class Keys:
    signing_key_file: str
    master_key_file: str


def new_store(base: Path) -> tuple[Path, Keys]:
    """A fresh store under `base`, its keys beside it (outside the root), made with the public API."""
    keys = Keys(str(base / "signing.key"), str(base / "master.key"))
    signing_key_generator()(FsContext(REAL_OS), keys.signing_key_file, root_path=None)
    generate_master_key(keys.master_key_file)
    root = base / "store"
    init_store(root, seed_out=str(base / "store.seed"), signing_key_file=keys.signing_key_file, environ={})
    return root, keys


def item(n: int) -> dict[str, Any]:
    """A non-secret transcript item of ITEM_BYTES bytes as JSON."""
    body = {"role": "assistant", "n": n, "content": ""}
    pad = ITEM_BYTES - len(orjson.dumps(body))
    body["content"] = ("the quick brown fox jumps over the lazy dog " * 8)[:pad]
    return body


def setup_put(store: SecureStore, _stack: ExitStack) -> Operation:
    store.put("bench-put", "slot", item(0))
    return lambda i: store.put("bench-put", "slot", item(i + 1))


def setup_append(store: SecureStore, stack: ExitStack) -> Operation:
    session: Session = stack.enter_context(store.create_session("bench-append"))
    session.append_items([item(0)])
    return lambda i: session.append_items([item(i + 1)])


def setup_create(store: SecureStore, _stack: ExitStack) -> Operation:
    for n in range(EXISTING_SESSIONS):
        with store.create_session(f"existing-{n}") as session:
            session.append_items([item(n)])

    def create(i: int) -> None:
        with store.create_session(f"new-{i}") as session:
            session.append_items([item(i)])

    return create


def setup_turn(store: SecureStore, stack: ExitStack) -> Operation:
    session: Session = stack.enter_context(store.create_session("bench-turn"))
    session.append_items([item(0)])

    def turn(i: int) -> None:
        with session.turn():
            for n in range(TURN_ITEMS):
                session.append_items([item(i * TURN_ITEMS + n)])

    return turn


OPERATIONS: list[tuple[str, Setup, Callable[[], bool]]] = [
    ("store.put: 1 slot, existing session", setup_put, lambda: True),
    ("session.append_items: 1 item, open handle", setup_append, lambda: True),
    (f"create_session + 1 item + close ({EXISTING_SESSIONS} sessions)", setup_create, lambda: True),
    (f"session.turn(): {TURN_ITEMS} x append_items(1 item)", setup_turn, lambda: hasattr(Session, "turn")),
]


@dataclass(frozen=True)
class Result:
    operation: str
    rounds: int
    counts: dict[str, int]  # totals over all rounds, every table call by name
    io_names: frozenset[str]

    def per_op(self, names: frozenset[str] | None = None) -> float:
        total = sum(n for name, n in self.counts.items() if names is None or name in names)
        return total / self.rounds

    def to_json(self) -> dict[str, Any]:
        other = frozenset(self.counts) - self.io_names
        return {
            "operation": self.operation, "rounds": self.rounds,
            "io_calls_per_op": self.per_op(self.io_names), "fsyncs_per_op": self.per_op(FSYNC_NAMES),
            "other_calls_per_op": self.per_op(other),
            "per_op_by_name": {name: n / self.rounds for name, n in sorted(self.counts.items())},
        }


def measure(label: str, setup: Setup, rounds: int, base: Path) -> Result:
    root, keys = new_store(base)
    counter = CallCounter()
    with ExitStack() as stack:
        store = stack.enter_context(open_store(
            root, signing_key_file=keys.signing_key_file, master_key_file=keys.master_key_file, environ={},
            os_api=counter.wrap(REAL_OS)))
        operation = setup(store, stack)
        counter.counts.clear()
        for i in range(rounds):
            operation(i)
        counts = dict(counter.counts)
    return Result(label, rounds, counts, frozenset(io_call_names()))


def top_calls(result: Result) -> str:
    io = Counter({name: n for name, n in result.counts.items() if name in result.io_names})
    return ", ".join(f"{name} {n / result.rounds:g}" for name, n in io.most_common(TOP_NAMES))


def table(results: list[Result], skipped: list[str]) -> str:
    width = max(len(r.operation) for r in results)
    lines = [f"{'operation':<{width}}  {'io/op':>7}  {'fsyncs/op':>9}  {'other/op':>8}  top {TOP_NAMES} io calls per op"]
    for r in results:
        other = frozenset(r.counts) - r.io_names
        lines.append(f"{r.operation:<{width}}  {r.per_op(r.io_names):>7.1f}  {r.per_op(FSYNC_NAMES):>9.1f}  "
                     f"{r.per_op(other):>8.1f}  {top_calls(r)}")
    lines += [f"{label:<{width}}  (not offered by this version)" for label in skipped]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="OS calls and fsyncs per securestore operation")
    parser.add_argument("--rounds", type=int, default=20, help="runs of each operation (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--dir", default=None, help="where to create the stores (default: a new temp dir)")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more")
    package = str(Path(securestore.__file__).resolve().parent)
    results: list[Result] = []
    skipped: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ss-oscalls-", dir=args.dir) as tmp:
        for n, (label, setup, offered) in enumerate(OPERATIONS):
            if not offered():
                skipped.append(label)
                continue
            base = Path(tmp) / f"op{n}"
            base.mkdir()
            results.append(measure(label, setup, args.rounds, base))
    if args.json:
        print(orjson.dumps({"securestore": package, "rounds": args.rounds, "skipped": skipped,
                            "operations": [r.to_json() for r in results]}, option=orjson.OPT_INDENT_2).decode())
    else:
        print(f"securestore OS-call table counts, mean of {args.rounds} rounds per operation ({package})")
        print(table(results, skipped))
    return 0


if __name__ == "__main__":
    sys.exit(main())
