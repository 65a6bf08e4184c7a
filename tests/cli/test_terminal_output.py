"""What reaches a terminal: text an attacker stored or planted (metadata through the API or a
legacy import, directory names, a lock file's host) is shown escaped, one row per session and
one line per error, and `--json` parses back to the exact values without carrying the raw
characters a terminal would act on. Most tests run the CLI in this process (run_cli_here: the text
it prints, before any encoding, so a raw surrogate is seen too); test_forged_lock_host runs it in a
new interpreter, through a real stdout and stderr."""

from __future__ import annotations

import ast
import fcntl
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import orjson

from tests.support.keys import KEYS, MASTER_KEY
from tests.support.stores import REPO, make_store, run_cli, run_cli_here, session_dir
from securestore import SecureStore
from securestore.cli.render import dump_json, format_verify, terminal_safe
from securestore.api.verify import VerifyReport

# One sample of each class, each placed to forge or hide something.
SAMPLES = {
    "osc52": "copy\x1b]52;c;ZXZpbA==\x07 me",  # writes the terminal's clipboard
    "rows": "one\ntwo\tcolumns",  # forges a listing row and a column
    "hide": "x\r\x1b[1A\x1b[2Kresult: OK",  # rewrites the line above
    "c0": "nul\x00 bs\x08 vt\x0b ff\x0c us\x1f",
    "c1": "del\x7f csi\x9b2J osc\x9d0;t\x9c nel\x85",
    "bidi": "\u202eevil\u202c \u202a\u202b\u202d \u2066\u2067\u2068\u2069 \u061c\u200e\u200f",
    "separators": "line\u2028para\u2029end",
}
EVERY_CLASS = " | ".join(SAMPLES.values())
# Written independently of render.py: what must never reach a terminal raw. Newline and tab are
# checked by counting rows and columns instead (the output's own layout uses them).
RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\u2028\u2029\ud800-\udfff]")
# run_cli reads text with universal newlines, which turns a raw CR into a newline: the row
# counts catch it (run_cli_here keeps a raw CR, which RAW catches). These visible escapes prove
# the characters were shown, not dropped.
VISIBLE = ("\\x1b]52;c;", "\\x0a", "\\x09", "\\x0d", "\\x00", "\\x7f", "\\x9b", "\\u202e", "\\u2066", "\\u2028")


def cli_env(root: Path) -> dict[str, str]:
    return {"SECURESTORE_ROOT": str(root), "SECURESTORE_MASTER_KEY": MASTER_KEY}


def assert_no_raw(result: subprocess.CompletedProcess[str]) -> None:
    for stream in (result.stdout, result.stderr):
        assert not RAW.findall(stream), RAW.findall(stream)


def rows(text: str) -> list[str]:
    assert text.endswith("\n") or not text
    return text.split("\n")[:-1]


def json_output(result: subprocess.CompletedProcess[str], exit_code: int = 0) -> Any:
    assert result.returncode == exit_code, result.stderr
    assert_no_raw(result)
    assert "\t" not in result.stdout
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess[str]) -> None:
    assert result.stderr.startswith("securestore: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert_no_raw(result)


def hostile_metadata() -> dict[str, Any]:
    return {"title": EVERY_CLASS, "workspace": EVERY_CLASS, "agent": EVERY_CLASS, "model": EVERY_CLASS,
            "labels": dict(SAMPLES)}


def test_api_metadata_is_escaped_everywhere(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    item, value = {"role": "user", "content": EVERY_CLASS}, {"note": EVERY_CLASS}
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        with store.create_session("all", metadata=hostile_metadata()) as session:
            session.append_items([item])
            session.slot("x").put(value)
        for name, text in SAMPLES.items():
            store.create_session(f"class-{name}", metadata={"title": text, "workspace": text}).close()
        store.create_session("key\u2028row", metadata={"title": "plain"}).close()  # keys may hold U+2028
    env = cli_env(root)
    titles = {"all": EVERY_CLASS, "key\u2028row": "plain"} | {f"class-{n}": t for n, t in SAMPLES.items()}

    listing = run_cli_here("sessions", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert_no_raw(listing)
    assert len(rows(listing.stdout)) == len(titles)  # one row per session
    assert all(row.count("\t") == 3 for row in rows(listing.stdout))  # key, items, updated, title
    assert all(escape in listing.stdout for escape in VISIBLE) and "key\\u2028row\t" in listing.stdout
    assert {s["key"]: s["title"] for s in json_output(run_cli_here("sessions", "list", "--json", env=env))["sessions"]} \
        == titles

    show = run_cli_here("session", "show", "all", env=env)
    assert show.returncode == 0 and len(rows(show.stdout)) == 13, show.stdout  # 13 fields, one line each
    assert_no_raw(show)
    assert rows(show.stdout)[-1] == "lock      free" and all(escape in show.stdout for escape in VISIBLE)
    assert json_output(run_cli_here("session", "show", "all", "--json", env=env))["metadata"] == hostile_metadata()

    history = run_cli_here("session", "history", "all", env=env)
    assert_no_raw(history)
    assert len(rows(history.stdout)) == 1 and history.stdout.count("\t") == 2
    assert json_output(run_cli_here("session", "history", "all", "--json", env=env))[0]["metadata"] == hostile_metadata()

    items = run_cli_here("session", "items", "all", env=env)
    assert_no_raw(items)
    assert [json.loads(line) for line in rows(items.stdout)] == [item]
    assert json_output(run_cli_here("session", "items", "all", "--json", env=env)) == [item]
    assert json_output(run_cli_here("get", "all", "x", env=env)) == value

    for command in (["index", "rebuild"], ["audit", "seal"], ["audit", "verify"], ["maintain"]):
        result = run_cli_here(*command, env=env)
        assert result.returncode == 0, result.stderr
        assert_no_raw(result)


def test_legacy_import_metadata_is_escaped(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    env = cli_env(root)
    entries = {"legacy:all": {"label": EVERY_CLASS, "cwd": EVERY_CLASS, "agent": EVERY_CLASS, "model": EVERY_CLASS}}
    entries |= {f"legacy:{name}": {"label": text, "cwd": text, "messages": [{"role": "user", "content": text}]}
                for name, text in SAMPLES.items()}
    source = tmp_path / "sessions.json"
    source.write_text(json.dumps(entries))

    inspect = run_cli_here("migrate", "inspect", str(source), env=env)
    assert inspect.returncode == 0 and "state: ready" in inspect.stdout
    assert_no_raw(inspect)
    imported = run_cli_here("migrate", "run", str(source), env=env)
    assert imported.returncode == 0 and "imported 8 sessions" in imported.stdout, imported.stderr
    assert_no_raw(imported)

    listing = run_cli_here("sessions", "list", env=env)
    assert_no_raw(listing)
    assert len(rows(listing.stdout)) == 8 and all(row.count("\t") == 3 for row in rows(listing.stdout))
    assert all(escape in listing.stdout for escape in VISIBLE)
    listed = json_output(run_cli_here("sessions", "list", "--json", env=env))["sessions"]
    assert {s["key"]: (s["title"], s["workspace"]) for s in listed} == {key: (e["label"], e["cwd"])
                                                                      for key, e in entries.items()}
    show = run_cli_here("session", "show", "legacy:all", env=env)
    assert_no_raw(show)
    assert len(rows(show.stdout)) == 12  # no labels line: 12 fields, one line each
    shown = json_output(run_cli_here("session", "show", "legacy:all", "--json", env=env))["metadata"]
    assert (shown["title"], shown["workspace"], shown["agent"], shown["model"]) == (EVERY_CLASS,) * 4
    items = run_cli_here("session", "items", "legacy:hide", env=env)
    assert_no_raw(items)
    assert [json.loads(line)["content"] for line in rows(items.stdout)] == [SAMPLES["hide"]]


def test_planted_file_names_in_a_legacy_directory(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    env = cli_env(root)
    source = tmp_path / "legacy"
    source.mkdir()
    planted = "x\x1b]52;c;ZXZpbA==\x07\nrefused y: forged\u202e.json"
    (source / planted).write_text('{"broken": ')
    (source / "fine.json").write_text(json.dumps({"title": "ok"}))
    inspect = run_cli_here("migrate", "inspect", str(source), env=env)
    assert inspect.returncode == 0
    assert_no_raw(inspect)
    refused = [row for row in rows(inspect.stdout) if row.startswith("refused ")]
    assert len(refused) == 1  # the planted name did not add a row of its own
    assert refused[0].startswith("refused x\\x1b]52;c;ZXZpbA==\\x07\\x0arefused y: forged\\u202e.json: not valid JSON")
    as_json = json_output(run_cli_here("migrate", "inspect", str(source), "--json", env=env))
    assert as_json["rejected"][0]["source"] == planted


def test_planted_directory_names_in_verify_maintain_and_errors(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    env = cli_env(root)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.create_session("victim").close()
    hide = "x\r\x1b[1A\x1b[2Kresult: OK\n"  # would erase verify's verdict and print its own
    os.mkdir(root / "sessions" / hide, 0o700)
    os.mkdir(bytes(root / "sessions") + b"/y\x9b2J\xff", 0o700)  # not UTF-8; 0x9b is an 8-bit CSI
    inner = "p\x1b]52;c;ZXZpbA==\x07\nforged\u202e"
    os.mkdir(session_dir(root, "victim") / inner, 0o755)

    verify = run_cli_here("audit", "verify", env=env)
    assert verify.returncode == 1
    assert_no_raw(verify)
    lines = rows(verify.stdout)
    assert [line for line in lines if line.startswith("result: ")] == [lines[-1]]
    assert lines[-1].startswith("result: TAMPERED")
    as_json = json_output(run_cli_here("audit", "verify", "--json", env=env), exit_code=1)
    logs = {failure["log"] for failure in as_json["failures"]}
    assert {f"sessions/{hide}", "sessions/y\udc9b2J\udcff"} <= logs

    maintain = run_cli_here("maintain", env=env)
    assert maintain.returncode == 0
    assert_no_raw(maintain)
    assert len(rows(maintain.stderr)) == 1 and "\\x1b]52;c;" in maintain.stderr and "\\u202e" in maintain.stderr
    skipped = json_output(run_cli_here("maintain", "--json", env=env))["skipped"]
    assert len(skipped) == 1 and inner in skipped[0]

    (session_dir(root, "victim") / "state" / f"z{inner}").symlink_to("/etc/passwd")
    error = run_cli_here("session", "show", "victim", env=env)
    assert error.returncode == 1
    one_line_error(error)
    assert "\\x1b]52;c;" in error.stderr and "symbolic link" in error.stderr


def test_forged_lock_host(tmp_path: Path) -> None:
    root = make_store(tmp_path / "store")
    env = cli_env(root)
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        store.create_session("locked").close()
    host = "h\x1b]52;c;ZXZpbA==\x07\r\nlock      free\t\u202e\x9b"
    lock = session_dir(root, "locked") / "lock"
    lock.write_bytes(orjson.dumps({"pid": 1, "host": host, "start_time": 0, "boot_id": "b", "acquired_ms": 0}))

    show = run_cli("session", "show", "locked", env=env)
    assert show.returncode == 0
    assert_no_raw(show)
    assert len(rows(show.stdout)) == 8 and rows(show.stdout)[-1].startswith("lock      pid 1 on h")
    holder = json_output(run_cli("session", "show", "locked", "--json", env=env))["lock_holder"]
    assert holder.startswith("pid 1 on h")

    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a live holder: the writer waits out its lock timeout
        blocked = run_cli("put", "locked", "x", "1", "--lock-timeout", "0.2", env=env)
    finally:
        os.close(fd)
    assert blocked.returncode == 4
    one_line_error(blocked)
    assert "held by pid 1 on h" in blocked.stderr and "waited 0.2 s" in blocked.stderr


def test_format_verify_escapes_every_line() -> None:
    report = VerifyReport(warnings=list(SAMPLES.values()), anchors=[EVERY_CLASS])
    text = format_verify(report)
    assert not RAW.findall(text) and "\t" not in text
    # data, anchors, one line per warning, result: no field added or hid a line
    assert len(text.split("\n")) == 3 + len(SAMPLES)
    assert text.split("\n")[-1].startswith("result: OK")


def test_terminal_safe_and_dump_json() -> None:
    for text in SAMPLES.values():
        shown = terminal_safe(text)
        assert not RAW.findall(shown) and "\n" not in shown and "\t" not in shown
        assert terminal_safe(shown) == shown  # a second pass changes nothing
    plain = "plain text, a \\ backslash, ünïcödé and 漢字"
    assert terminal_safe(plain) == plain
    assert terminal_safe("\x1b\u202e\udcff") == "\\x1b\\u202e\\udcff"
    everything = "".join(map(chr, [*range(0xD800), *range(0xE000, 0x3_0000)]))
    for indent in (True, False):
        out = dump_json({"all": everything, "lone": "\udc9b"}, indent=indent)
        assert not RAW.findall(out) and "\t" not in out
        assert json.loads(out) == {"all": everything, "lone": "\udc9b"}
    assert dump_json({"a": "\x1b\x7f\x85\u202e\u2029"}, indent=False) == '{"a":"\\u001b\\u007f\\u0085\\u202e\\u2029"}'
    assert dump_json({"a": "ascii\x7f"}, indent=False) == '{"a":"ascii\\u007f"}'  # DEL is ASCII too


def _writes_outside(path: Path, allowed: set[str]) -> list[str]:
    """Calls of print() or .write() in functions other than the allowed output helpers."""
    tree = ast.parse(path.read_text())
    found: list[str] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call) and name not in allowed:
                callee = child.func
                if (isinstance(callee, ast.Name) and callee.id == "print") or \
                        (isinstance(callee, ast.Attribute) and callee.attr == "write"):
                    found.append(f"{path.name}:{child.lineno} in {name}")
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_output_leaves_only_through_the_escaping_helpers() -> None:
    # A line added later with a bare print() would bypass the escaping: keep one exit.
    allowed = {"console.py": {"say", "row", "print_json"}, "demo.py": {"_say"},
               "migrate.py": {"show"}, "audit.py": {"_write_out"}}
    for path in sorted((REPO / "securestore" / "cli").rglob("*.py")):
        assert _writes_outside(path, allowed.get(path.name, set())) == []
