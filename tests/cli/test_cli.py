"""The CLI contract: commands, exit codes, one-line errors without tracebacks or secrets. The
tests marked `both_backends` run against a directory and against a PostgreSQL URL in
$SECURESTORE_ROOT: the same commands, the same outputs and exit codes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.support.keys import KEYS, MASTER_KEY
from tests.support.pg_stores import set_up_database
from tests.support.raw_tree import raw_tree, session_path
from tests.support.stores import make_store, run_cli, run_cli_here
from tests.support.corpus import secret_corpus
from securestore import SecureStore
from securestore.backends.local.layout import slot_file
from securestore.core.policy import encode_name


def seed_file(env: dict[str, str]) -> str:
    root = env["SECURESTORE_ROOT"]
    if root.startswith("postgresql://"):  # beside the database's name, in the test's own directory
        return str(Path(env["CLI_TEST_DIR"]) / "cli.seed")
    return str(Path(root).parent / "cli.seed")


@pytest.fixture
def cli_root(tmp_path: Path, backend: str, request: pytest.FixtureRequest) -> Path | str:
    """Where `init` makes the store: a new directory, or a database set up by pg-setup."""
    if backend == "postgres":
        return set_up_database(request.getfixturevalue("pg_server"))
    return tmp_path / "store"


@pytest.fixture
def env(cli_root: Path | str, tmp_path: Path) -> dict[str, str]:
    return {"SECURESTORE_ROOT": str(cli_root), "SECURESTORE_MASTER_KEY": MASTER_KEY, "CLI_TEST_DIR": str(tmp_path)}


def _one_line_error(result) -> None:  # noqa: ANN001
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("securestore: error: ")
    assert "Traceback" not in result.stderr


@pytest.mark.both_backends
def test_full_round_trip(cli_root: Path | str, env: dict[str, str]) -> None:
    assert run_cli("init", "--seed-out", seed_file(env), env=env).returncode == 0
    secret = secret_corpus()[0].secret
    value = json.dumps({"role": "tool", "content": f"AWS_ACCESS_KEY_ID={secret}"})
    assert run_cli("put", "sess-1", "agent.transcript", value, env=env).returncode == 0
    got = run_cli("get", "sess-1", "agent.transcript", env=env)
    assert got.returncode == 0 and secret not in got.stdout and "[secret:vault:" in got.stdout
    resolved = run_cli("get", "sess-1", "agent.transcript", "--resolve", env=env)
    assert json.loads(resolved.stdout) == json.loads(value)
    listing = run_cli("sessions", "list", "--json", env=env)
    assert [s["key"] for s in json.loads(listing.stdout)["sessions"]] == ["sess-1"]
    verify = run_cli("audit", "verify", "--json", env=env)
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True
    assert run_cli("audit", "verify", "sess-1", env=env).returncode == 0
    assert run_cli("sessions", "delete", "sess-1", env=env).returncode == 0
    assert json.loads(run_cli("sessions", "list", "--json", env=env).stdout)["sessions"] == []
    assert run_cli("audit", "verify", env=env).returncode == 0


@pytest.mark.both_backends
def test_put_reads_stdin(cli_root: Path | str, env: dict[str, str]) -> None:
    run_cli("init", "--seed-out", seed_file(env), env=env)
    assert run_cli("put", "s", "slot", "-", env=env, stdin=b'{"from": "stdin"}').returncode == 0
    assert json.loads(run_cli("get", "s", "slot", env=env).stdout) == {"from": "stdin"}


def test_root_flag_overrides_environment(tmp_path: Path) -> None:
    root = tmp_path / "elsewhere"
    assert run_cli("--root", str(root), "init", "--seed-out", str(root.parent / "elsewhere.seed")).returncode == 0
    assert (root / "store.json").exists()


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["put", "s", "slot", '{"__proto__": {"admin": true}}'], 3, "prototype"),
        (["put", "s", "slot", "[1, 2"], 3, "not valid JSON"),
        (["put", "s", "slot", "1" + "0" * 30], 3, "out of range"),
        (["put", "../../etc", "__class__", "1"], 3, "reserved"),
        (["get", "missing", "slot"], 4, "does not exist"),
        (["sessions", "delete", "missing"], 4, "does not exist"),
        (["frobnicate"], 2, "invalid choice"),
        (["put", "only-one-arg"], 2, "required"),
    ],
)
@pytest.mark.both_backends
def test_exit_codes_and_one_line_errors(env: dict[str, str], args: list[str], code: int, words: str) -> None:
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    result = run_cli_here(*args, env=env)
    assert result.returncode == code, result.stderr
    _one_line_error(result)
    assert words in result.stderr


@pytest.mark.both_backends
def test_integrity_failure_exits_1_and_names_the_record(cli_root: Path | str, env: dict[str, str]) -> None:
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    run_cli_here("put", "sess", "slot", '{"a": 1}', env=env)
    raw, slot = raw_tree(cli_root), f"{session_path('sess')}/state/{slot_file(encode_name('slot'))}"
    raw.write(slot, raw.read(slot).replace(b"1", b"2"))
    result = run_cli_here("audit", "verify", env=env)
    assert result.returncode == 1
    assert "data-mismatch" in result.stdout and "seq" in result.stdout
    as_json = json.loads(run_cli_here("audit", "verify", "--json", env=env).stdout)
    assert as_json["ok"] is False and as_json["failures"][0]["check"] == "data-mismatch"


def test_unsafe_store_is_an_integrity_error(cli_root: Path | str, env: dict[str, str]) -> None:
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    os.chmod(cli_root, 0o777)
    result = run_cli_here("sessions", "list", env=env)
    assert result.returncode == 1
    _one_line_error(result)


@pytest.mark.both_backends
def test_secrets_never_reach_stderr(env: dict[str, str]) -> None:
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    secret = secret_corpus()[3].secret
    for args in (["put", f"user-{secret}", "slot", "1"],
                 ["put", "sess", "slot", json.dumps({secret: 1})],
                 ["put", "sess", "slot", json.dumps({"x": secret, "__proto__": 1})]):
        result = run_cli_here(*args, env=env)
        assert result.returncode == 3
        assert secret not in result.stderr and secret not in result.stdout


@pytest.mark.both_backends
def test_missing_master_key_drops_values(env: dict[str, str]) -> None:
    env = {name: value for name, value in env.items() if name != "SECURESTORE_MASTER_KEY"}
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    secret = secret_corpus()[5].secret
    assert run_cli_here("put", "s", "slot", json.dumps(f"token {secret}"), env=env).returncode == 0
    assert "[secret:redacted:" in run_cli_here("get", "s", "slot", env=env).stdout
    result = run_cli_here("get", "s", "slot", "--resolve", env=env)
    assert result.returncode == 4 and "dropped" in result.stderr


def test_master_key_file_must_be_private_and_outside_the_root(tmp_path: Path, cli_root: Path) -> None:
    key_file = tmp_path / "keys" / "master.key"
    key_file.parent.mkdir(mode=0o700)
    assert run_cli_here("--root", str(cli_root), "init", "--generate-master-key", str(key_file),
                   "--seed-out", str(tmp_path / "seed")).returncode == 0
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    ok = run_cli_here("--root", str(cli_root), "--master-key-file", str(key_file), "put", "s", "x", '"v"')
    assert ok.returncode == 0
    key_file.chmod(0o644)
    loose = run_cli_here("--root", str(cli_root), "--master-key-file", str(key_file), "put", "s", "x", '"v"')
    assert loose.returncode == 4 and "lets others read it" in loose.stderr
    fresh = tmp_path / "fresh"
    result = run_cli_here("--root", str(fresh), "init", "--generate-master-key", str(fresh / "master.key"),
                     "--seed-out", str(tmp_path / "fresh.seed"))
    assert result.returncode == 4 and "outside the store root" in result.stderr
    assert not fresh.exists()  # refused before anything was created


def test_demo_runs_and_verifies() -> None:
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    assert "secret values found in clear in any stored byte: 0" in result.stdout
    assert "result: OK" in result.stdout
    assert "seq 3 (line 4" in result.stdout and "failed the mac check" in result.stdout  # the edit, located
    assert "exit 5: " in result.stdout  # the cut tail, against the anchor
    assert "0600" in result.stdout and "0700" in result.stdout
    assert "[secret:vault:" in result.stdout and "[secret:env:DEMO_DEPLOY_TOKEN]" in result.stdout


def test_python_dash_m_and_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0 and "audit" in result.stdout


@pytest.mark.both_backends
def test_principal_is_recorded_and_must_not_be_a_credential(cli_root: Path | str, env: dict[str, str]) -> None:
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    assert run_cli_here("--principal", "agent:support-bot", "put", "s", "x", "1", env=env).returncode == 0
    log = raw_tree(cli_root).read(f"{session_path('s')}/audit/log.jsonl").decode()
    assert '"principal":"agent:support-bot"' in log
    secret = secret_corpus()[3].secret
    result = run_cli_here("--principal", f"bot {secret}", "put", "s", "x", "1", env=env)
    assert result.returncode == 2 and "credential" in result.stderr
    assert secret not in result.stderr


@pytest.mark.both_backends
def test_lock_timeout_bounds_the_wait_for_a_held_session(cli_root: Path | str, env: dict[str, str]) -> None:
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    assert run_cli_here("put", "s", "x", "1", env=env).returncode == 0
    with SecureStore(cli_root, master_key=MASTER_KEY, environ=KEYS) as store, store.open_session("s"):
        blocked = run_cli_here("put", "s", "x", "2", "--lock-timeout", "0.25", env=env)
        assert blocked.returncode == 4, blocked.stderr
        _one_line_error(blocked)
        assert 'session "s" is held by' in blocked.stderr and "waited 0.25 s" in blocked.stderr
    for value, words in (("nan", "a finite number"), ("-1", "greater than or equal to 0"),
                         ("601", "less than or equal to 600")):
        rejected = run_cli_here("--lock-timeout", value, "put", "s", "x", "3", env=env)
        assert rejected.returncode == 2 and f"--lock-timeout rejected: Input should be {words}" in rejected.stderr
    assert json.loads(run_cli_here("get", "s", "x", env=env).stdout) == 1


@pytest.mark.both_backends
def test_session_commands(cli_root: Path | str, env: dict[str, str]) -> None:
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    secret = secret_corpus()[0].secret
    assert run_cli_here("session", "append", "chat", '{"role": "user", "content": "hi"}', env=env).returncode == 0
    assert run_cli_here("session", "append", "chat", json.dumps({"role": "tool", "content": f"key={secret}"}),
                   env=env).returncode == 0
    assert run_cli_here("session", "append", "chat", "-", env=env, stdin=b'{"role": "assistant"}').returncode == 0
    items = json.loads(run_cli_here("session", "items", "chat", "--json", env=env).stdout)
    assert [i["role"] for i in items] == ["user", "tool", "assistant"]
    assert secret not in json.dumps(items)
    latest = json.loads(run_cli_here("session", "items", "chat", "--limit", "1", "--json", env=env).stdout)
    assert latest == [{"role": "assistant"}]
    resolved = run_cli_here("session", "items", "chat", "--resolve", env=env).stdout.splitlines()
    assert json.loads(resolved[1])["content"] == f"key={secret}"
    show = json.loads(run_cli_here("session", "show", "chat", "--json", env=env).stdout)
    assert (show["items"], show["revisions"], show["lock_holder"]) == (3, 1, None)
    assert "items     3" in run_cli_here("session", "show", "chat", env=env).stdout
    history = json.loads(run_cli_here("session", "history", "chat", "--json", env=env).stdout)
    assert [r["rev"] for r in history] == [1] and history[0]["key"] == "chat"
    bad = run_cli_here("session", "append", "chat", "[1, 2]", env=env)
    assert bad.returncode == 3 and "not a JSON object" in bad.stderr
    assert run_cli_here("session", "items", "chat", "--limit", "-1", env=env).returncode == 2
    assert run_cli_here("session", "show", "missing", env=env).returncode == 4
    assert run_cli_here("audit", "verify", env=env).returncode == 0


# A password no detector recognizes: what the CLI must not echo does not depend on detection.
PASSWORD = "hunter2-Correct-Horse-9"


@pytest.mark.both_backends
def test_put_and_append_read_a_value_file(tmp_path: Path, env: dict[str, str]) -> None:
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    secret = secret_corpus()[0].secret
    value = {"role": "tool", "content": f"AWS_ACCESS_KEY_ID={secret} password={PASSWORD}"}
    value_file = tmp_path / "value.json"
    value_file.write_text(json.dumps(value))
    stored = run_cli_here("put", "s", "slot", f"@{value_file}", env=env)
    assert stored.returncode == 0, stored.stderr
    assert json.loads(run_cli_here("get", "s", "slot", "--resolve", env=env).stdout) == value
    assert secret not in run_cli_here("get", "s", "slot", env=env).stdout  # vaulted like any other input
    appended = run_cli_here("session", "append", "chat", f"@{value_file}", env=env)
    assert appended.returncode == 0, appended.stderr
    assert json.loads(run_cli_here("session", "items", "chat", "--resolve", "--json", env=env).stdout) == [value]
    for result in (stored, appended):
        assert secret not in result.stdout + result.stderr and PASSWORD not in result.stdout + result.stderr


def _symlink(tmp_path: Path) -> str:
    (tmp_path / "real.json").write_text("1")
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    return str(tmp_path / "link.json")


def _fifo(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "fifo")  # a writer could feed anything, or never finish
    return str(tmp_path / "fifo")


def _foreign(tmp_path: Path) -> str:
    path = tmp_path / "theirs.json"
    path.write_text("1")
    os.chown(path, 65534, 65534)  # the tests run as root: another user's file
    return str(path)


def _too_large(tmp_path: Path) -> str:
    path = tmp_path / "large.json"
    path.write_text('"' + "a" * (2 * 1024 * 1024) + '"')  # past twice max_value_bytes, the stdin cap
    return str(path)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (_symlink, "symbolic link"),
        (_fifo, "a FIFO, socket or device"),
        (_foreign, "owned by uid 65534"),
        (_too_large, "cap"),
        (lambda tmp_path: str(tmp_path), "a directory"),
        (lambda tmp_path: str(tmp_path / "missing.json"), "does not exist"),
        (lambda tmp_path: "", "needs a file name"),
    ],
    ids=["symlink", "fifo", "foreign", "too-large", "directory", "missing", "empty"],
)
def test_value_file_refusals(tmp_path: Path, env: dict[str, str], make, words: str) -> None:  # noqa: ANN001
    run_cli_here("init", "--seed-out", seed_file(env), env=env)
    path = make(tmp_path)
    for args in (["put", "s", "slot", f"@{path}"], ["session", "append", "s", f"@{path}"]):
        result = run_cli_here(*args, env=env)
        assert result.returncode == 2, result.stderr
        _one_line_error(result)
        assert words in result.stderr
    assert run_cli_here("get", "s", "slot", env=env).returncode == 4  # nothing was written


def test_help_says_secrets_belong_on_stdin_or_in_a_file() -> None:
    for args in (["put", "--help"], ["session", "append", "--help"], ["--help"]):
        shown = " ".join(run_cli_here(*args).stdout.split())
        assert "standard input (-) or in a file (@FILE), never on the command line" in shown


@pytest.mark.parametrize("kind", ["real-format", "undetectable"])
@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["sessions", "list", "--limit", "{}"], "invalid int value"),
        (["session", "items", "s", "--limit", "{}"], "invalid int value"),
        (["maintain", "--prune-after-days", "{}"], "invalid float value"),
        (["maintain", "--max-sessions", "{}"], "invalid int value"),
        (["sessions", "list", "--order", "{}"], "invalid choice"),
        (["{}"], "invalid choice"),
        (["sessions", "list", "--json={}"], "takes no value"),
        (["put", "s", "slot", "1", "{}"], "unrecognized arguments"),
        (["session", "append", "s", '{{"a": 1}}', '{{"password": "{}"}}'], "unrecognized arguments"),
        (["init", "--generate={}", "--seed-out", "x"], "ambiguous option: --generate could match"),
        (["--principal", "x" * 300 + "{}", "put", "s", "x", "1"], "--principal rejected"),
        (["--lock-timeout", "{}", "put", "s", "x", "1"], "invalid float value"),
        # These two reach an open store.
        (["sessions", "list", "--cursor", "{}"], "cursor"),
        (["audit", "prove", "s", "{}"], "must be a number"),
    ],
)
def test_errors_never_echo_a_value_the_user_passed(env: dict[str, str], kind: str, args: list[str],
                                                   words: str) -> None:
    secret = secret_corpus()[3].secret if kind == "real-format" else PASSWORD
    if words in ("cursor", "must be a number"):
        run_cli_here("init", "--seed-out", seed_file(env), env=env)
    result = run_cli_here(*[arg.format(secret) for arg in args], env=env)
    assert result.returncode == 2, result.stderr
    _one_line_error(result)
    assert words in result.stderr
    assert secret not in result.stderr + result.stdout


def test_principal_holding_a_credential_is_refused_without_echo(env: dict[str, str]) -> None:
    from securestore.core.secrets import contains_secret

    # Credentials recognizable on their own (a bare 40-character AWS secret needs its context).
    recognizable = [p for p in secret_corpus() if contains_secret(f"agent {p.secret}")][:6]
    assert len(recognizable) == 6
    for planted in recognizable:
        result = run_cli_here("--principal", f"agent {planted.secret}", "put", "s", "x", "1", env=env)
        assert result.returncode == 2 and "--principal rejected" in result.stderr, (planted.name, result.stderr)
        _one_line_error(result)
        assert planted.secret not in result.stderr + result.stdout


def test_internal_errors_show_no_message(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pydantic import BaseModel, ValidationError

    from securestore import cli
    from securestore.errors import InvalidValueError

    def fails_like_int_parsing(args: object) -> int:
        raise ValueError(f"invalid literal for int() with base 10: '{PASSWORD}'")

    monkeypatch.setattr(cli, "run", fails_like_int_parsing)
    assert cli.main(["sessions", "list"]) == 4
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error (ValueError at test_cli.py:" in err and PASSWORD not in err

    class Model(BaseModel):
        count: int

    try:
        Model(count=PASSWORD)  # type: ignore[arg-type]
    except ValidationError as exc:
        pydantic_text = str(exc)
    assert f"input_value='{PASSWORD}'" in pydantic_text

    def fails_with_pydantic_text(args: object) -> int:
        raise InvalidValueError(f"metadata rejected: {pydantic_text}")

    monkeypatch.setattr(cli, "run", fails_with_pydantic_text)
    assert cli.main(["sessions", "list"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("securestore: error: metadata rejected") and PASSWORD not in err


def test_commands_read_only_the_environment_main_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """main() reads the environment once and passes it down: no command looks at os.environ
    behind it (the store root, the per-user default, the signing key all come from the mapping)."""
    from securestore import cli
    from tests.support.keys import KEYS

    monkeypatch.setenv("SECURESTORE_ROOT", str(tmp_path / "from-os-environ"))
    for name, value in KEYS.items():  # a signing key the commands must not find
        monkeypatch.setenv(name, value)
    given = tmp_path / "from-the-mapping"
    assert cli.main(["sessions", "list"], environ={"SECURESTORE_ROOT": str(given)}) == 4
    assert f"no store at {given}" in capsys.readouterr().err

    assert cli.main(["sessions", "list"], environ={"XDG_DATA_HOME": str(tmp_path / "xdg")}) == 4
    assert str(tmp_path / "xdg") in capsys.readouterr().err

    make_store(given)  # its signing key is configured, never kept in a key directory
    no_key_dir = {"SECURESTORE_KEY_DIR": str(tmp_path / "keys")}
    assert cli.main(["--root", str(given), "audit", "public-key"], environ=no_key_dir) == 4
    assert "no audit signing key for store" in capsys.readouterr().err
    assert cli.main(["--root", str(given), "audit", "public-key"], environ={**no_key_dir, **KEYS}) == 0
    assert capsys.readouterr().out.startswith("test.audit+")
