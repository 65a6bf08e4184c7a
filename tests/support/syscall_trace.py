"""Syscall-level crash checking, independent of the store's own OS-call table (ALICE, OSDI'14).

One operation runs in a child Python process (tests/support/trace_child.py) on a copy of a baseline store,
under strace. The real system calls that touch the store are replayed onto a model of the tree
(objects = inodes, directory entries, and what each fsync made durable), and crash states are
rebuilt from the model onto fresh directories:

- "crash" after call i (kill -9): the effect of calls 0..i, what the kernel held;
- "power" cut after call i: only what fsync made durable: a file's bytes and mode as of its last
  fsync, a directory's entries as of its last fsync; a file never fsynced is empty; un-synced
  creates, renames and unlinks are undone. The pessimistic model of tests/support/powercut.py, computed
  from the trace instead of from the store's table;
- "reorder" (ALICE-style, optional): inside one fsync window, one object's un-synced changes
  persist (a prefix of them) while every other un-synced change is lost, or one object's
  un-synced changes are lost while everything else the kernel held persists.

Identical trees are checked once. Each distinct state is first verified read-only, exactly as an
auditor would before any writer reopens the store, then reconciled by a writer.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tests.support.keys import KEYS, MASTER_KEY, SIGNING
from tests.support.stores import FAULT_CONFIG, REPO, make_store, seed_path
from securestore import NotFoundError, Secret, SecureStore, verify_store
from securestore.audit.keys import parse_seed
from securestore.audit.verify import INCOMPLETE
from securestore.api.verify import VerifyOptions, VerifyReport

STRACE = "/usr/bin/strace"
CHILD = Path(__file__).resolve().parent / "trace_child.py"
# Every call that can change a file, a directory or the descriptor table. "?" marks names some
# architectures lack (strace ignores those there instead of refusing to start).
TRACED_CALLS = (
    "?open", "openat", "?openat2", "?creat", "close", "?close_range", "dup", "?dup2", "dup3", "fcntl",
    "write", "pwrite64", "writev", "pwritev", "?pwritev2", "ftruncate", "truncate", "fallocate",
    "?copy_file_range", "?sendfile", "fsync", "fdatasync", "?rename", "renameat", "?renameat2",
    "?unlink", "unlinkat", "?mkdir", "mkdirat", "?rmdir", "fchmod", "?chmod", "fchmodat",
    "?link", "linkat", "?symlink", "symlinkat", "flock",
)
MAX_STRING = 1 << 26  # strace -s: larger than any record the store writes (a journal record is <= 8 MiB)


class HarnessError(Exception):
    """The trace holds something the replay model does not cover: a gap in the checker, not in
    the store. Never reported as a crash-state failure."""


def require_strace() -> str:
    found = shutil.which("strace") or (STRACE if os.access(STRACE, os.X_OK) else None)
    if found is None:
        raise HarnessError(f"strace was not found on PATH nor at {STRACE}: install strace (apt-get install strace) "
                           "to run the syscall-level crash checks")
    return found


# -- the operations (the set of tests/crash/test_faults.py, plus the reviewer's 16-item turn) -----------

OLD = {"turn": 1, "text": "hello"}
NEW = {"turn": 2, "text": "the key is in the vault", "token": Secret("s3cret-token-value-42")}
ABSENT = "absent"


def state_of(store: SecureStore, session: str) -> Any:
    """Everything a reader can see of one session."""
    try:
        history = store.history(session)
    except NotFoundError:
        return ABSENT
    return (
        store.get(session, "slot", resolve=True, default=ABSENT),
        store.read_items(session, resolve=True),
        len(history),
        history[-1]["metadata"],
    )


def summary_of(state: Any) -> str:
    """A state for a report, without its values (they hold resolved secrets)."""
    if state == ABSENT:
        return "the session is absent"
    slot, items, revisions, _ = state
    return f"{len(items)} items, {revisions} manifest revisions, slot {'absent' if slot == ABSENT else 'present'}"


def _with_session(action: Callable[[Any], object]) -> Callable[[SecureStore], None]:
    def run(store: SecureStore) -> None:
        with store.open_session("sess") as session:
            action(session)
    return run


def _turn(store: SecureStore) -> None:
    with store.open_session("sess") as session, session.turn():
        session.append_items([{"role": "user", "content": "turn two"},
                              {"role": "tool", "content": "sk-proj-" + "q" * 40}])
        session.slot("slot").put(NEW)
        session.update_metadata(title="after the turn", labels={"phase": "2"})


def _turn_of_16(store: SecureStore) -> None:
    """The reviewer's failing case: one turn of 16 items (two of them secrets), a slot, metadata."""
    items: list[Any] = [{"role": "user" if n % 2 else "assistant", "content": f"step {n}"} for n in range(14)]
    items += [{"role": "tool", "content": "sk-proj-" + "r" * 40}, {"role": "tool", "auth": Secret("turn-secret-16")}]
    with store.open_session("sess") as session, session.turn():
        session.append_items(items)
        session.slot("slot").put(NEW)
        session.update_metadata(title="sixteen items", labels={"phase": "16"})


# Operations made of several atomic steps list them: a crash may stop between two steps.
STEPS: dict[str, list[Callable[[SecureStore], object]]] = {
    "put-new-session": [lambda s: s.create_session("fresh").close()],
}

OPERATIONS: dict[str, tuple[Callable[[SecureStore], object], str]] = {
    "put-existing": (lambda s: s.put("sess", "slot", NEW), "sess"),
    "put-new-session": (lambda s: s.put("fresh", "slot", NEW), "fresh"),
    "delete-slot": (lambda s: s.delete_slot("sess", "slot"), "sess"),
    "delete-session": (lambda s: s.delete_session("sess"), "sess"),
    "append-items": (_with_session(lambda s: s.append_items([{"role": "user", "content": "x"},
                                                            {"k": Secret("item-secret-9")}])), "sess"),
    "pop-item": (_with_session(lambda s: s.pop_item()), "sess"),
    "clear": (_with_session(lambda s: s.clear()), "sess"),  # a record, then a seal that removes two segments
    "update-metadata": (_with_session(lambda s: s.update_metadata(title="renamed", agent="bot-2")), "sess"),
    "commit-turn": (_turn, "sess"),
    "snapshot": (_with_session(lambda s: s.commit_turn()), "sess"),  # seals the active journal segment
    "turn-16-items": (_turn_of_16, "sess"),
}


def build_baseline(root: Path) -> Path:
    """The store every operation starts from (tests/crash/test_faults.py's baseline): count-only epochs
    of 3 records, so ratchets happen inside the traced operations."""
    make_store(root, FAULT_CONFIG)
    with SecureStore(root, FAULT_CONFIG, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("sess", metadata={"title": "before"}) as session:
            session.append_items([{"role": "user", "content": "one"}, {"role": "assistant", "content": "two"}])
            session.commit_turn()  # seals journal.log
            session.append_items([{"role": "user", "content": "three"}])  # the active segment is not empty
            session.slot("slot").put(OLD)
    return root


def baseline_seed(baseline: Path) -> bytes:
    return parse_seed(seed_path(baseline).read_bytes())[1]


def allowed_states(baseline: Path, work: Path, op_name: str) -> list[Any]:
    """What a reader may see after a crash: the state before, and after each intermediate step
    (the state after the whole operation is added from the traced run)."""
    session = OPERATIONS[op_name][1]
    states = []
    with SecureStore(baseline, master_key=MASTER_KEY, environ=KEYS) as store:
        states.append(state_of(store, session))
    for index in range(len(STEPS.get(op_name, []))):
        root = work / f"step{index}" / "store"
        shutil.copytree(baseline, root)
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            for step in STEPS[op_name][: index + 1]:
                step(store)
            states.append(state_of(store, session))
    return states


# -- running the child under strace ----------------------------------------------------------------

def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURESTORE_")}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONHASHSEED"] = "0"  # the same call sequence in every run (kill_after counts calls)
    return env


def run_strace(argv: list[str], trace_file: Path, inject: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `argv` under strace: every process (-f), descriptors with their paths (-yy), every
    byte of every buffer in hex (-xx and a large -s), the calls in TRACED_CALLS (filtered in the
    kernel, --seccomp-bpf, so the child's other calls do not stop it)."""
    command = [require_strace(), "-f", "-qq", "-yy", "-xx", "-s", str(MAX_STRING), "-o", str(trace_file),
               "-e", "trace=" + ",".join(TRACED_CALLS)]
    # strace 6.1 does not deliver an injected signal under --seccomp-bpf: a kill run stops at every call.
    command += ["-e", f"inject={inject}"] if inject is not None else ["--seccomp-bpf"]
    return subprocess.run([*command, "--", *argv], capture_output=True, text=True, env=child_env(), timeout=300,
                          check=False)


def run_traced(root: Path, op_name: str, trace_file: Path,
               inject: str | None = None) -> subprocess.CompletedProcess[str]:
    return run_strace([sys.executable, str(CHILD), str(root), op_name], trace_file, inject)


def current_umask() -> int:
    """The umask the child inherits (read from /proc: os.umask would have to change it)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise HarnessError("no Umask line in /proc/self/status: cannot model file creation modes")


# -- parsing strace output (-f -yy -xx) ------------------------------------------------------------

@dataclass(frozen=True)
class RawCall:
    line: int
    name: str
    args: list[str]
    ret: str


_PID = re.compile(r"(?:\[pid\s+)?(\d+)\]?\s+(.*)")
_RESUMED = re.compile(r"<\.\.\. (\w+) resumed>(.*)")
_CALL = re.compile(r"(\w+)\((.*)\)\s+=\s+(.*)")
_STRING = re.compile(r'"((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')
_HEX = re.compile(r"(?:\\x[0-9a-f]{2})+")
_FD = re.compile(r"(-?\d+|AT_FDCWD)(?:<(.*?)>)?(?:\(deleted\))?")
_RET = re.compile(r"(-?\d+|0x[0-9a-f]+|\?)(?:<(.*?)>)?(?:\(deleted\))?(?:\s.*)?")
_IOV = re.compile(r'iov_base="((?:\\x[0-9a-f]{2})*)"(\.\.\.)?')


def parse_strace(text: str) -> list[RawCall]:
    calls: list[RawCall] = []
    pending: dict[str, tuple[int, str]] = {}  # pid -> (line, the start of an unfinished call)
    for number, raw in enumerate(text.splitlines(), 1):
        match = _PID.fullmatch(raw)
        pid, body = (match.group(1), match.group(2)) if match else ("", raw)
        if body.startswith(("---", "+++")):
            continue  # signals and exits
        if body.endswith("<unfinished ...>"):
            pending[pid] = (number, body[: -len("<unfinished ...>")].rstrip())
            continue
        resumed = _RESUMED.fullmatch(body)
        if resumed:
            start = pending.pop(pid, None)
            if start is None:
                raise HarnessError(f"strace line {number}: a resumed {resumed.group(1)} without its start")
            number, body = start[0], start[1] + resumed.group(2)
        call = _CALL.fullmatch(body)
        if call is None:
            raise HarnessError(f"strace line {number}: not a system call line: {body[:120]!r}")
        calls.append(RawCall(number, call.group(1), split_args(call.group(2)), call.group(3)))
    return calls


def split_args(text: str) -> list[str]:
    """Top-level arguments. Strings and fd paths are all \\xHH (-xx), so only brackets and the
    <...> decorations of non-path descriptors (sockets: "<UNIX:[1->2]>") need care."""
    args: list[str] = []
    depth, start, in_string, in_decoration = 0, 0, False, 0
    for index, char in enumerate(text):
        if in_string:
            in_string = char != '"'
        elif char == '"':
            in_string = True
        elif char == "<":
            in_decoration += 1
        elif char == ">" and in_decoration and depth == 0:
            in_decoration -= 1
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0 and not in_decoration:
            args.append(text[start:index].strip())
            start = index + 1
    tail = text[start:].strip()
    if tail:
        args.append(tail)
    return args


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace("\\x", ""))


def string_arg(arg: str) -> bytes:
    match = _STRING.fullmatch(arg)
    if match is None:
        raise HarnessError(f"expected a string argument, found {arg[:80]!r}")
    if match.group(2):
        raise HarnessError("strace cut a buffer short: raise MAX_STRING")
    return hex_bytes(match.group(1))


def decoration_path(text: str | None) -> str | None:
    """The path strace printed for a descriptor (-yy), or None for sockets, pipes and the like."""
    if text is None or not _HEX.fullmatch(text):
        return None
    return os.fsdecode(hex_bytes(text))


def fd_arg(arg: str) -> tuple[int | None, str | None]:
    """(descriptor or None for AT_FDCWD, the path strace resolved it to)."""
    match = _FD.fullmatch(arg)
    if match is None:
        raise HarnessError(f"expected a descriptor argument, found {arg[:80]!r}")
    fd = None if match.group(1) == "AT_FDCWD" else int(match.group(1))
    return fd, decoration_path(match.group(2))


def ret_value(ret: str) -> int | None:
    """The call's result, or None when the process died inside it (strace prints "?")."""
    match = _RET.fullmatch(ret)
    if match is None:
        raise HarnessError(f"unparsed return value {ret[:80]!r}")
    return None if match.group(1) == "?" else int(match.group(1), 0)


def int_arg(arg: str) -> int:
    return int(arg, 8) if arg.startswith("0") and arg != "0" and arg.isdigit() else int(arg)


def iov_bytes(arg: str) -> bytes:
    out = b""
    for match in _IOV.finditer(arg):
        if match.group(2):
            raise HarnessError("strace cut an iovec short: raise MAX_STRING")
        out += hex_bytes(match.group(1))
    return out


# -- the replay model ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Node:
    """One object (inode) at one moment."""

    kind: str  # "file" | "dir"
    mode: int
    data: bytes = b""
    entries: tuple[tuple[str, int], ...] = ()  # a directory's (name, object), sorted

    def entry(self, name: str) -> int | None:
        return dict(self.entries).get(name)

    def with_entry(self, name: str, obj: int | None) -> Node:
        entries = dict(self.entries)
        if obj is None:
            del entries[name]
        else:
            entries[name] = obj
        return replace(self, entries=tuple(sorted(entries.items())))


@dataclass(frozen=True)
class Syscall:
    index: int  # position among the calls that touch the store
    name: str
    summary: str  # the call with store-relative paths, for reports
    mutates: bool  # changed what the kernel holds
    durable: bool  # an fsync/fdatasync of a store object
    position: int  # its position among every traced call of the child


@dataclass
class _OpenFile:
    obj: int
    append: bool
    offset: int = 0


@dataclass(frozen=True)
class _Where:
    parent: int | None  # None: the path is the store root itself
    name: str
    obj: int | None  # what the name holds now (None: nothing)


Tree = dict[str, tuple[str, int, bytes]]  # relative path ("" = the root) -> (kind, mode, content)
BEFORE = -1  # the call index of "before the first call"


class Replay:
    """The store tree as the traced calls change it, with every object's history."""

    def __init__(self, root: Path, umask: int) -> None:
        self.root = os.path.realpath(root)
        self.umask = umask
        self.history: dict[int, list[tuple[int, Node]]] = {}
        self.syncs: dict[int, list[int]] = {}
        self.names: dict[int, str] = {}  # a path each object had (for reports)
        self.fds: dict[int, _OpenFile] = {}
        self.calls: list[Syscall] = []
        self.raw_names: list[str] = []  # every traced call of the child, in order
        self._index = BEFORE
        self._changed = self._synced = False
        self._load(Path(self.root), "")

    # -- objects ---------------------------------------------------------------------------------
    def _load(self, path: Path, rel: str) -> int:
        st = path.lstat()
        obj = len(self.history)
        self.history[obj] = []
        self.names[obj] = rel
        if stat.S_ISDIR(st.st_mode):
            entries = tuple(sorted((child.name, self._load(child, f"{rel}/{child.name}".lstrip("/")))
                                   for child in path.iterdir()))
            node = Node("dir", stat.S_IMODE(st.st_mode), entries=entries)
        elif stat.S_ISREG(st.st_mode):
            node = Node("file", stat.S_IMODE(st.st_mode), path.read_bytes())
        else:
            raise HarnessError(f"{rel}: the baseline holds a {stat.filemode(st.st_mode)} entry; only files and "
                               "directories are modelled")
        self.history[obj].append((BEFORE, node))
        return obj

    def now(self, obj: int) -> Node:
        return self.history[obj][-1][1]

    def _set(self, obj: int, node: Node) -> None:
        history = self.history[obj]
        if history and history[-1][0] == self._index:
            history[-1] = (self._index, node)  # one call is one atomic change (a rename: unlink + link)
        else:
            history.append((self._index, node))
        self._changed = True

    def _new(self, node: Node, name: str) -> int:
        obj = len(self.history)
        self.history[obj] = [(self._index, node)]
        self.names[obj] = name
        self._changed = True
        return obj

    def _link(self, parent: int, name: str, obj: int | None) -> None:
        self._set(parent, self.now(parent).with_entry(name, obj))
        if obj is not None:
            self.names[obj] = f"{self.names[parent]}/{name}".lstrip("/")

    # -- resolving paths -------------------------------------------------------------------------
    def _relative(self, path: str) -> list[str] | None:
        path = os.path.normpath(path)
        if path == self.root:
            return []
        if path.startswith(self.root + "/"):
            return path[len(self.root) + 1:].split("/")
        return None

    def _walk(self, start: int, parts: list[str]) -> _Where | None:
        if not parts:
            return _Where(None, "", start) if start == 0 else None
        obj = start
        for part in parts[:-1]:
            if part in ("", ".", ".."):
                raise HarnessError(f"path component {part!r}: the store never uses one; not modelled")
            child = self.now(obj).entry(part)
            if child is None or self.now(child).kind != "dir":
                return _Where(None, parts[-1], None)  # fails with ENOENT (the handlers refuse a success)
            obj = child
        return _Where(obj, parts[-1], self.now(obj).entry(parts[-1]))

    def _resolve(self, dirfd_arg: str | None, name: bytes) -> _Where | None:
        """Where (dirfd, name) points inside the store, or None when it is outside."""
        path = os.fsdecode(name)
        if path.startswith("/") or dirfd_arg is None:
            parts = self._relative(path)
            return None if parts is None else self._walk(0, parts)
        fd, base = fd_arg(dirfd_arg)
        if fd is not None and fd in self.fds:
            return self._walk(self.fds[fd].obj, [p for p in path.split("/") if p])
        if base is None:
            return None
        if fd is not None and self._relative(base) is not None:
            raise HarnessError(f"descriptor {fd} names {base} in the store but was never seen opened")
        parts = self._relative(os.path.join(base, path))
        return None if parts is None else self._walk(0, parts)

    @staticmethod
    def _existing(where: _Where) -> int:
        if where.obj is None:
            raise HarnessError(f"a call on {where.name} succeeded but the model holds no such entry")
        return where.obj

    def _store_fd(self, arg: str) -> _OpenFile | None:
        fd, path = fd_arg(arg)
        if fd is not None and fd in self.fds:
            return self.fds[fd]
        if path is not None and self._relative(path.removesuffix("(deleted)")) is not None:
            raise HarnessError(f"descriptor {fd} names {path} in the store but was never seen opened")
        return None

    # -- applying one call -----------------------------------------------------------------------
    def apply(self, call: RawCall) -> None:
        handler = getattr(self, f"_do_{call.name}", None)
        if handler is None:
            raise HarnessError(f"strace line {call.line}: {call.name} is traced but not modelled")
        self._index = len(self.calls)
        self._changed = self._synced = False
        self.raw_names.append(call.name)
        result = ret_value(call.ret)
        touched = handler(call.args, result)
        if touched:
            self.calls.append(Syscall(self._index, call.name, self._summary(call), self._changed, self._synced,
                                      len(self.raw_names) - 1))
        elif self._changed:
            raise HarnessError(f"strace line {call.line}: {call.name} changed the model but was not counted")

    def _summary(self, call: RawCall) -> str:
        def show(arg: str) -> str:
            match = _STRING.fullmatch(arg)
            if match:
                data = hex_bytes(match.group(1))
                text = data[:48].decode("utf-8", "replace").replace("\n", "\\n")
                return f'"{text}"' + (f"...({len(data)} bytes)" if len(data) > 48 else "")
            fd = _FD.fullmatch(arg)
            if fd and fd.group(2) is not None:
                path = decoration_path(fd.group(2))
                if path is not None:
                    parts = self._relative(path.removesuffix("(deleted)"))
                    shown = "/".join(parts) if parts is not None else path
                    return f"{fd.group(1)}<{shown or '.'}>"
            return arg[:60] + ("..." if len(arg) > 60 else "")
        ret = call.ret.split("<")[0].strip() if "<" in call.ret else call.ret
        return f"{call.name}({', '.join(show(a) for a in call.args)}) = {ret}"

    def _open_at(self, dirfd: str | None, name: str, flags: str, mode: int, result: int | None) -> bool:
        where = self._resolve(dirfd, string_arg(name))
        if where is None:
            if result is not None and result >= 0:
                self.fds.pop(result, None)  # a descriptor outside the store reuses this number
            return False
        if result is None or result < 0:
            return True
        obj, names = where.obj, set(flags.split("|"))
        if obj is None:
            if "O_CREAT" not in names or where.parent is None:
                raise HarnessError(f"open of a missing {where.name} succeeded without O_CREAT")
            obj = self._new(Node("file", mode & ~self.umask & 0o7777), where.name)
            self._link(where.parent, where.name, obj)
        elif "O_TRUNC" in names and names & {"O_WRONLY", "O_RDWR"} and self.now(obj).data:
            self._set(obj, replace(self.now(obj), data=b""))
        self.fds[result] = _OpenFile(obj, "O_APPEND" in names)
        return True

    def _do_openat(self, args: list[str], result: int | None) -> bool:
        return self._open_at(args[0], args[1], args[2], int_arg(args[3]) if len(args) > 3 else 0, result)

    def _do_open(self, args: list[str], result: int | None) -> bool:
        return self._open_at(None, args[0], args[1], int_arg(args[2]) if len(args) > 2 else 0, result)

    def _do_creat(self, args: list[str], result: int | None) -> bool:
        return self._open_at(None, args[0], "O_WRONLY|O_CREAT|O_TRUNC", int_arg(args[1]), result)

    def _do_openat2(self, args: list[str], result: int | None) -> bool:
        flags = re.search(r"flags=([\w|]+)", args[2])
        mode = re.search(r"mode=(\d+)", args[2])
        return self._open_at(args[0], args[1], flags.group(1) if flags else "O_RDONLY",
                             int_arg(mode.group(1)) if mode else 0, result)

    def _do_close(self, args: list[str], result: int | None) -> bool:
        fd, _ = fd_arg(args[0])
        return fd is not None and self.fds.pop(fd, None) is not None

    def _do_close_range(self, args: list[str], result: int | None) -> bool:
        first, last = int(args[0]), int(args[1])
        closed = [fd for fd in self.fds if first <= fd <= last]
        for fd in closed:
            del self.fds[fd]
        return bool(closed)

    def _dup(self, old: str, new: int | None) -> bool:
        fd, _ = fd_arg(old)
        if new is None or new < 0:
            return fd in self.fds
        if fd is not None and fd in self.fds:
            self.fds[new] = self.fds[fd]  # the same open file description: one shared offset
            return True
        self.fds.pop(new, None)
        return False

    def _do_dup(self, args: list[str], result: int | None) -> bool:
        return self._dup(args[0], result)

    def _do_dup2(self, args: list[str], result: int | None) -> bool:
        return self._dup(args[0], result)

    def _do_dup3(self, args: list[str], result: int | None) -> bool:
        return self._dup(args[0], result)

    def _do_fcntl(self, args: list[str], result: int | None) -> bool:
        if args[1].startswith("F_DUPFD"):
            return self._dup(args[0], result)
        return self._store_fd(args[0]) is not None

    def _write_at(self, handle: _OpenFile, data: bytes, offset: int | None, result: int | None) -> None:
        if result is None or result < 0:
            return
        node = self.now(handle.obj)
        position = offset if offset is not None else (len(node.data) if handle.append else handle.offset)
        chunk = data[:result]
        content = node.data[:position].ljust(position, b"\0") + chunk + node.data[position + len(chunk):]
        if offset is None:
            handle.offset = position + len(chunk)
        self._set(handle.obj, replace(node, data=content))

    def _do_write(self, args: list[str], result: int | None) -> bool:
        handle = self._store_fd(args[0])
        if handle is not None:
            self._write_at(handle, string_arg(args[1]), None, result)
        return handle is not None

    def _do_pwrite64(self, args: list[str], result: int | None) -> bool:
        handle = self._store_fd(args[0])
        if handle is not None:
            self._write_at(handle, string_arg(args[1]), int(args[3]), result)
        return handle is not None

    def _do_writev(self, args: list[str], result: int | None) -> bool:
        handle = self._store_fd(args[0])
        if handle is not None:
            self._write_at(handle, iov_bytes(args[1]), None, result)
        return handle is not None

    def _do_pwritev(self, args: list[str], result: int | None) -> bool:
        handle = self._store_fd(args[0])
        if handle is not None:
            self._write_at(handle, iov_bytes(args[1]), int(args[3]), result)
        return handle is not None

    _do_pwritev2 = _do_pwritev

    def _unsupported(self, args: list[str], result: int | None) -> bool:
        if self._store_fd(args[0]) is not None:
            raise HarnessError("a store file was written by a call the replay does not model (fallocate, "
                               "copy_file_range or sendfile)")
        return False

    _do_fallocate = _do_copy_file_range = _do_sendfile = _unsupported

    def _resize(self, obj: int, length: int) -> None:
        node = self.now(obj)
        self._set(obj, replace(node, data=node.data[:length].ljust(length, b"\0")))

    def _do_ftruncate(self, args: list[str], result: int | None) -> bool:
        handle = self._store_fd(args[0])
        if handle is not None and result == 0:
            self._resize(handle.obj, int(args[1]))
        return handle is not None

    def _do_truncate(self, args: list[str], result: int | None) -> bool:
        where = self._resolve(None, string_arg(args[0]))
        if where is not None and result == 0:
            self._resize(self._existing(where), int(args[1]))
        return where is not None

    def _sync(self, args: list[str], result: int | None) -> bool:
        handle = self._store_fd(args[0])
        if handle is not None and result == 0:
            self.syncs.setdefault(handle.obj, []).append(self._index)
            self._synced = True
        return handle is not None

    _do_fsync = _do_fdatasync = _sync

    def _rename(self, src: _Where | None, dst: _Where | None, flags: str, result: int | None) -> bool:
        if src is None and dst is None:
            return False
        if result != 0:
            return True
        if src is None or dst is None or src.parent is None or dst.parent is None or src.obj is None:
            raise HarnessError("a rename across the store boundary, of the root, or of a missing entry")
        if "RENAME_EXCHANGE" in flags:
            self._link(src.parent, src.name, dst.obj)
            self._link(dst.parent, dst.name, src.obj)
        elif (src.parent, src.name) != (dst.parent, dst.name):
            self._link(src.parent, src.name, None)
            self._link(dst.parent, dst.name, src.obj)
        return True

    def _do_rename(self, args: list[str], result: int | None) -> bool:
        return self._rename(self._resolve(None, string_arg(args[0])), self._resolve(None, string_arg(args[1])), "",
                            result)

    def _do_renameat(self, args: list[str], result: int | None) -> bool:
        return self._rename(self._resolve(args[0], string_arg(args[1])), self._resolve(args[2], string_arg(args[3])),
                            args[4] if len(args) > 4 else "", result)

    _do_renameat2 = _do_renameat

    def _remove(self, where: _Where | None, result: int | None) -> bool:
        if where is not None and result == 0:
            if where.parent is None or where.obj is None:
                raise HarnessError("the store root, or a missing entry, was removed")
            self._link(where.parent, where.name, None)
        return where is not None

    def _do_unlink(self, args: list[str], result: int | None) -> bool:
        return self._remove(self._resolve(None, string_arg(args[0])), result)

    _do_rmdir = _do_unlink

    def _do_unlinkat(self, args: list[str], result: int | None) -> bool:
        return self._remove(self._resolve(args[0], string_arg(args[1])), result)

    def _make_dir(self, where: _Where | None, mode: int, result: int | None) -> bool:
        if where is not None and result == 0:
            if where.parent is None:
                raise HarnessError("mkdir of the store root")
            obj = self._new(Node("dir", mode & ~self.umask & 0o7777), where.name)
            self._link(where.parent, where.name, obj)
        return where is not None

    def _do_mkdir(self, args: list[str], result: int | None) -> bool:
        return self._make_dir(self._resolve(None, string_arg(args[0])), int_arg(args[1]), result)

    def _do_mkdirat(self, args: list[str], result: int | None) -> bool:
        return self._make_dir(self._resolve(args[0], string_arg(args[1])), int_arg(args[2]), result)

    def _chmod(self, obj: int, mode: int, result: int | None) -> None:
        if result == 0:
            self._set(obj, replace(self.now(obj), mode=mode & 0o7777))

    def _do_fchmod(self, args: list[str], result: int | None) -> bool:
        handle = self._store_fd(args[0])
        if handle is not None:
            self._chmod(handle.obj, int_arg(args[1]), result)
        return handle is not None

    def _do_chmod(self, args: list[str], result: int | None) -> bool:
        where = self._resolve(None, string_arg(args[0]))
        if where is not None and result == 0:
            self._chmod(self._existing(where), int_arg(args[1]), result)
        return where is not None

    def _do_fchmodat(self, args: list[str], result: int | None) -> bool:
        where = self._resolve(args[0], string_arg(args[1]))
        if where is not None and result == 0:
            self._chmod(self._existing(where), int_arg(args[2]), result)
        return where is not None

    def _hard_link(self, src: _Where | None, dst: _Where | None, result: int | None) -> bool:
        if src is None and dst is None:
            return False
        if result == 0:
            if src is None or dst is None or dst.parent is None or src.obj is None:
                raise HarnessError("a hard link across the store boundary")
            self._link(dst.parent, dst.name, src.obj)
        return True

    def _do_link(self, args: list[str], result: int | None) -> bool:
        return self._hard_link(self._resolve(None, string_arg(args[0])), self._resolve(None, string_arg(args[1])),
                               result)

    def _do_linkat(self, args: list[str], result: int | None) -> bool:
        return self._hard_link(self._resolve(args[0], string_arg(args[1])), self._resolve(args[2], string_arg(args[3])),
                               result)

    def _do_symlink(self, args: list[str], result: int | None) -> bool:
        if self._resolve(None, string_arg(args[1])) is not None:
            raise HarnessError("the store made a symlink: not modelled")
        return False

    def _do_symlinkat(self, args: list[str], result: int | None) -> bool:
        if self._resolve(args[1], string_arg(args[2])) is not None:
            raise HarnessError("the store made a symlink: not modelled")
        return False

    def _do_flock(self, args: list[str], result: int | None) -> bool:
        return self._store_fd(args[0]) is not None

    # -- states ----------------------------------------------------------------------------------
    def kernel_at(self, obj: int, after: int) -> Node | None:
        """What the kernel held for `obj` once call `after` returned (None: not created yet)."""
        found = None
        for index, node in self.history[obj]:
            if index > after:
                break
            found = node
        return found

    def last_sync(self, obj: int, after: int) -> int | None:
        synced = [index for index in self.syncs.get(obj, []) if index <= after]
        return synced[-1] if synced else None

    def durable_at(self, obj: int, after: int) -> Node:
        """What a power cut after call `after` leaves of `obj`: its state at its last fsync; never
        fsynced: as it was in the baseline, or as created (an empty file, an empty directory)."""
        synced = self.last_sync(obj, after)
        node = self.kernel_at(obj, synced) if synced is not None else None
        return node if node is not None else self.history[obj][0][1]

    def pending(self, obj: int, after: int) -> list[Node]:
        """`obj`'s states between its durable one and the kernel's, oldest first (its un-synced changes)."""
        synced = self.last_sync(obj, after)
        floor = synced if synced is not None else self.history[obj][0][0]
        return [node for index, node in self.history[obj] if floor < index <= after]

    def tree(self, pick: Callable[[int], Node | None]) -> Tree:
        out: Tree = {}

        def walk(obj: int, rel: str, depth: int) -> None:
            node = pick(obj)
            if node is None or depth > 32:
                raise HarnessError(f"{rel or '.'}: an entry names an object that does not exist in this state")
            out[rel] = (node.kind, node.mode, node.data)
            for name, child in node.entries:
                walk(child, f"{rel}/{name}".lstrip("/"), depth + 1)

        walk(0, "", 0)
        return out


# -- trees on disk ---------------------------------------------------------------------------------

def read_tree(root: Path) -> Tree:
    out: Tree = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        rel = str(path.relative_to(root)) if path != root else ""
        if stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode), b"")
        elif stat.S_ISREG(st.st_mode):
            out[rel] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
        else:
            out[rel] = ("other", stat.S_IMODE(st.st_mode), b"")
    return out


def digest(tree: Tree) -> str:
    h = hashlib.sha256()
    for rel in sorted(tree):
        kind, mode, data = tree[rel]
        h.update(f"{rel}\0{kind}\0{mode:o}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def tree_difference(expected: Tree, actual: Tree) -> list[str]:
    return [f"{rel or '.'}: expected {expected.get(rel, ('absent',))[:2]}, found {actual.get(rel, ('absent',))[:2]}"
            + (" (content differs)" if rel in expected and rel in actual and expected[rel][2] != actual[rel][2] else "")
            for rel in sorted(set(expected) | set(actual)) if expected.get(rel) != actual.get(rel)]


def materialize(tree: Tree, root: Path) -> Path:
    root.mkdir(parents=True)
    for rel in sorted(tree):  # parents sort before their children
        kind, mode, data = tree[rel]
        path = root / rel if rel else root
        if kind == "dir" and rel:
            path.mkdir()
        elif kind == "file":
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)
        os.chmod(path, mode)
    return root


# -- crash states ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class CrashState:
    model: str  # "crash" | "power" | "reorder"
    after: int  # the last call that ran (BEFORE: none)
    detail: str = ""

    def label(self, calls: list[Syscall]) -> str:
        where = "before the first call" if self.after == BEFORE else f"after #{self.after} {calls[self.after].summary}"
        return f"{self.model} {where}" + (f" [{self.detail}]" if self.detail else "")


@dataclass
class DistinctState:
    tree: Tree
    labels: list[CrashState] = field(default_factory=list)


def crash_points(replay: Replay) -> list[int]:
    """Every boundary where the kernel's or the disk's state changes."""
    return [BEFORE] + [call.index for call in replay.calls if call.mutates or call.durable]


def crash_states(replay: Replay, *, reorder: bool = False) -> dict[str, DistinctState]:
    states: dict[str, DistinctState] = {}

    def add(tree: Tree, label: CrashState) -> None:
        states.setdefault(digest(tree), DistinctState(tree)).labels.append(label)

    objects = list(replay.history)
    for after in crash_points(replay):
        kernel = {obj: replay.kernel_at(obj, after) for obj in objects}
        durable = {obj: replay.durable_at(obj, after) for obj in objects}
        add(replay.tree(kernel.get), CrashState("crash", after))
        add(replay.tree(durable.get), CrashState("power", after))
        if reorder:
            for obj in objects:
                for label, tree in _reorderings(replay, obj, after, kernel, durable):
                    add(tree, label)
    return states


def _reorderings(replay: Replay, obj: int, after: int, kernel: dict[int, Node | None],
                 durable: dict[int, Node]) -> Iterable[tuple[CrashState, Tree]]:
    pending = replay.pending(obj, after)
    if not pending:
        return
    name = replay.names[obj] or "."
    previous = durable[obj]
    for count, node in enumerate(pending, 1):
        kept = f"only {name} kept {count}/{len(pending)} un-synced changes"
        yield CrashState("reorder", after, kept), replay.tree({**durable, obj: node}.get)
        grown = node.data[len(previous.data):]
        if node.kind == "file" and node.data.startswith(previous.data) and len(grown) > 1:
            torn = replace(node, data=previous.data + grown[: len(grown) // 2])  # an append cut short
            yield CrashState("reorder", after, kept + ", the last one torn"), replay.tree({**durable, obj: torn}.get)
        previous = node
    lost = {**kernel, obj: durable[obj]}
    yield CrashState("reorder", after, f"all persisted except {name}'s un-synced changes"), replay.tree(lost.get)


# -- checking one state ----------------------------------------------------------------------------

ALLOWED_INCOMPLETE = frozenset({"dangling-intent", "unsealed"})


@dataclass
class Outcome:
    exit_code: int | None  # the read-only verify's exit code (None: it raised)
    first: str  # the verifier's first finding, or the error
    checks: list[str]  # the check of every finding
    problems: list[str]  # why the state fails the requirement (empty: it passes)

    @property
    def unsealed(self) -> bool:
        return "unsealed" in self.checks


def audit(root: Path, seed: bytes) -> VerifyReport:
    """`audit verify --seed --public-key`, through the API, on a store no writer has reopened."""
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        return verify_store(store, options=VerifyOptions(seed=seed, public_key=SIGNING.verifier))


def first_finding(report: VerifyReport) -> str:
    findings = report.failures + report.incomplete
    return findings[0].describe() if findings else ""


def audit_problems(report: VerifyReport) -> list[str]:
    code = report.exit_code
    if code not in (0, 6):
        return [f"audit verify exit {code}: {first_finding(report)}"]
    strays = [f for f in report.failures + report.incomplete
              if f.category != INCOMPLETE or f.check not in ALLOWED_INCOMPLETE]
    return [f"audit verify exit {code} with a finding that is not an unfinished change: {f.describe()}" for f in strays]


def check_state(root: Path, seed: bytes, session: str, allowed: list[Any], *, reconcile: bool = True) -> Outcome:
    before = digest(read_tree(root))
    try:
        report = audit(root, seed)
    except Exception as exc:  # a verifier that crashes on a crash state is a finding, not a harness error
        return Outcome(None, f"{type(exc).__name__}: {exc}", [], [f"audit verify raised {type(exc).__name__}: {exc}"])
    outcome = Outcome(report.exit_code, first_finding(report), [f.check for f in report.failures + report.incomplete],
                      audit_problems(report))
    if digest(read_tree(root)) != before:
        outcome.problems.append("the read-only audit changed the store")
    if reconcile:
        outcome.problems += reconcile_problems(root, seed, session, allowed)
    return outcome


def reconcile_problems(root: Path, seed: bytes, session: str, allowed: list[Any]) -> list[str]:
    """The next writer settles the crash; then the session reads as before or after, and verifies."""
    try:
        with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
            store.put("other", "probe", 1)  # a writer: reconciles the store log
            if session in {info.key for info in store.scan_sessions()[0]}:
                with store.open_session(session):
                    pass  # the session's writer: reconciles its log, journal and leftovers
            seen = state_of(store, session)
            report = verify_store(store, options=VerifyOptions(seed=seed, public_key=SIGNING.verifier))
    except Exception as exc:  # recovery that crashes on a crash state is a finding too
        return [f"reconciling raised {type(exc).__name__}: {exc}"]
    problems = [] if seen in allowed else [f"after reconciling, a mixed state: {summary_of(seen)}"]
    if not report.ok:
        problems.append(f"after reconciling, verify exit {report.exit_code}: {first_finding(report)}")
    return problems


# -- one operation, end to end ---------------------------------------------------------------------

@dataclass
class Failure:
    labels: list[str]  # every crash point that produced this tree
    exit_code: int | None
    first: str
    problems: list[str]

    def describe(self) -> str:
        shown = self.labels if len(self.labels) <= 4 else [
            *self.labels[:2], f"... {len(self.labels) - 3} more crash points with the same tree ...", self.labels[-1]]
        return "; ".join(self.problems) + "".join(f"\n      at {label}" for label in shown)


@dataclass
class OpReport:
    op: str
    syscalls: int  # calls that touched the store
    mutating: int  # of which changed what the kernel holds
    distinct: int  # distinct crash states checked
    exit0: int = 0
    exit6: int = 0
    unsealed: int = 0
    failures: list[Failure] = field(default_factory=list)


@dataclass
class TracedOp:
    op: str
    replay: Replay
    allowed: list[Any]
    final: Tree  # the real tree the child left


@dataclass
class Sweep:
    report: OpReport
    traced: TracedOp
    states: dict[str, DistinctState]
    outcomes: dict[str, Outcome]


def trace_operation(baseline: Path, work: Path, op_name: str) -> TracedOp:
    """Run `op_name` in a child under strace on a copy of the baseline; replay what it did, and
    prove the replay right: replaying every call must rebuild exactly the tree the child left."""
    root = work / "traced" / "store"
    shutil.copytree(baseline, root)
    trace_file = work / "trace.txt"
    replay = Replay(root, current_umask())
    done = run_traced(root, op_name, trace_file)
    if done.returncode != 0:
        raise HarnessError(f"the traced child failed ({done.returncode}): {done.stderr.strip().splitlines()[-1:]}")
    for call in parse_strace(trace_file.read_text()):
        replay.apply(call)
    final = read_tree(root)
    last = len(replay.calls) - 1
    rebuilt = replay.tree(lambda obj: replay.kernel_at(obj, last))
    if rebuilt != final:
        raise HarnessError("replaying the trace does not rebuild the child's tree: "
                           + "; ".join(tree_difference(final, rebuilt)[:5]))
    allowed = allowed_states(baseline, work, op_name)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        allowed.append(state_of(store, OPERATIONS[op_name][1]))
    return TracedOp(op_name, replay, allowed, final)


def sweep(baseline: Path, work: Path, op_name: str, *, reorder: bool = False, reconcile: bool = True,
          keep: Callable[[DistinctState], bool] | None = None, traced: TracedOp | None = None) -> Sweep:
    """Check every distinct crash state of one operation (or those `keep` selects): read-only
    verify, then (with `reconcile`) the next writer."""
    traced = traced or trace_operation(baseline, work, op_name)
    replay, seed, session = traced.replay, baseline_seed(baseline), OPERATIONS[op_name][1]
    states = {key: state for key, state in crash_states(replay, reorder=reorder).items() if keep is None or keep(state)}
    report = OpReport(op_name, len(replay.calls), sum(c.mutates for c in replay.calls), len(states))
    outcomes: dict[str, Outcome] = {}
    for number, key in enumerate(sorted(states)):
        root = materialize(states[key].tree, work / "states" / f"s{number}" / "store")
        outcome = outcomes[key] = check_state(root, seed, session, traced.allowed, reconcile=reconcile)
        shutil.rmtree(root.parent)
        report.exit0 += outcome.exit_code == 0
        report.exit6 += outcome.exit_code == 6
        report.unsealed += outcome.unsealed
        if outcome.problems:
            labels = [label.label(replay.calls) for label in states[key].labels]
            report.failures.append(Failure(labels, outcome.exit_code, outcome.first, outcome.problems))
    report.failures.sort(key=lambda f: f.labels[0])
    return Sweep(report, traced, states, outcomes)


def reorder_only(state: DistinctState) -> bool:
    """A tree only a reordering produces (the crash and power-cut trees are checked anyway)."""
    return all(label.model == "reorder" for label in state.labels)


def state_for_cli(outcomes: dict[str, Outcome]) -> str:
    """The state to run the real command on: one with an unfinished change if there is one."""
    return min(outcomes, key=lambda key: (outcomes[key].exit_code != 6, outcomes[key].exit_code != 0, key))


def cli_verify(tree: Tree, work: Path, baseline: Path) -> tuple[int, dict[str, Any]]:
    """`securestore audit verify --json --seed --public-key` (the real command) on one crash state."""
    from tests.support.stores import run_cli

    root = materialize(tree, work / "cli" / "store")
    public = work / "cli" / "audit.pub"
    public.write_text(SIGNING.verifier.text() + "\n")
    done = run_cli("--root", str(root), "audit", "verify", "--json", "--seed", str(seed_path(baseline)),
                   "--public-key", str(public))
    try:
        body: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        body = {"error": done.stderr.strip()}
    return done.returncode, body


# -- a real kill -9, to check the replay against the kernel ----------------------------------------

def kill_after(baseline: Path, work: Path, op_name: str, traced: TracedOp, after: int) -> Tree:
    """Run the operation again and SIGKILL it (strace fault injection) on entry to the first
    traced call after store call `after`: the kernel's state after that call, for real."""
    target = traced.replay.calls[after].position + 1
    names = traced.replay.raw_names
    if target >= len(names):
        raise HarnessError(f"store call #{after} is the child's last traced call: nothing to kill it at")
    name = names[target]
    when = names[: target + 1].count(name)
    root = work / "killed" / "store"
    shutil.copytree(baseline, root)
    done = run_traced(root, op_name, work / "killed.txt", inject=f"{name}:signal=KILL:when={when}")
    if done.returncode != -9 and done.returncode != 137:
        raise HarnessError(f"the child was not killed at {name} #{when} (exit {done.returncode})")
    return read_tree(root)


def shape(tree: Tree) -> dict[str, tuple[str, int, int]]:
    """A tree up to what differs between two runs of the same operation (random temp names,
    nonces, times, pids): each path's kind, mode and number of lines."""
    return {re.sub(r"\.tmp-[0-9a-f]+", ".tmp-*", rel): (kind, mode, data.count(b"\n"))
            for rel, (kind, mode, data) in tree.items()}
