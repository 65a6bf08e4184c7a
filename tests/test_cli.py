"""The CLI contract: commands, exit codes, one-line errors without tracebacks or secrets."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import MASTER_KEY, run_cli, session_dir
from corpus import secret_corpus
from securestore.layout import slot_file
from securestore.policy import encode_name


def seed_file(env: dict[str, str]) -> str:
    return str(Path(env["SECURESTORE_ROOT"]).parent / "cli.seed")


@pytest.fixture
def cli_root(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def env(cli_root: Path) -> dict[str, str]:
    return {"SECURESTORE_ROOT": str(cli_root), "SECURESTORE_MASTER_KEY": MASTER_KEY}


def _one_line_error(result) -> None:  # noqa: ANN001
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("securestore: error: ")
    assert "Traceback" not in result.stderr


def test_full_round_trip(cli_root: Path, env: dict[str, str]) -> None:
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


def test_put_reads_stdin(cli_root: Path, env: dict[str, str]) -> None:
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
def test_exit_codes_and_one_line_errors(env: dict[str, str], args: list[str], code: int, words: str) -> None:
    run_cli("init", "--seed-out", seed_file(env), env=env)
    result = run_cli(*args, env=env)
    assert result.returncode == code, result.stderr
    _one_line_error(result)
    assert words in result.stderr


def test_integrity_failure_exits_1_and_names_the_record(cli_root: Path, env: dict[str, str]) -> None:
    run_cli("init", "--seed-out", seed_file(env), env=env)
    run_cli("put", "sess", "slot", '{"a": 1}', env=env)
    slot = session_dir(cli_root, "sess") / "state" / slot_file(encode_name("slot"))
    slot.write_bytes(slot.read_bytes().replace(b"1", b"2"))
    result = run_cli("audit", "verify", env=env)
    assert result.returncode == 1
    assert "data-mismatch" in result.stdout and "seq" in result.stdout
    as_json = json.loads(run_cli("audit", "verify", "--json", env=env).stdout)
    assert as_json["ok"] is False and as_json["failures"][0]["check"] == "data-mismatch"


def test_unsafe_store_is_an_integrity_error(cli_root: Path, env: dict[str, str]) -> None:
    run_cli("init", "--seed-out", seed_file(env), env=env)
    os.chmod(cli_root, 0o777)
    result = run_cli("sessions", "list", env=env)
    assert result.returncode == 1
    _one_line_error(result)


def test_secrets_never_reach_stderr(env: dict[str, str]) -> None:
    run_cli("init", "--seed-out", seed_file(env), env=env)
    secret = secret_corpus()[3].secret
    for args in (["put", f"user-{secret}", "slot", "1"],
                 ["put", "sess", "slot", json.dumps({secret: 1})],
                 ["put", "sess", "slot", json.dumps({"x": secret, "__proto__": 1})]):
        result = run_cli(*args, env=env)
        assert result.returncode == 3
        assert secret not in result.stderr and secret not in result.stdout


def test_missing_master_key_drops_values(cli_root: Path) -> None:
    env = {"SECURESTORE_ROOT": str(cli_root)}
    run_cli("init", "--seed-out", seed_file(env), env=env)
    secret = secret_corpus()[5].secret
    assert run_cli("put", "s", "slot", json.dumps(f"token {secret}"), env=env).returncode == 0
    assert "[secret:redacted:" in run_cli("get", "s", "slot", env=env).stdout
    result = run_cli("get", "s", "slot", "--resolve", env=env)
    assert result.returncode == 4 and "dropped" in result.stderr


def test_master_key_file_must_be_private_and_outside_the_root(tmp_path: Path, cli_root: Path) -> None:
    key_file = tmp_path / "keys" / "master.key"
    key_file.parent.mkdir(mode=0o700)
    assert run_cli("--root", str(cli_root), "init", "--generate-master-key", str(key_file),
                   "--seed-out", str(tmp_path / "seed")).returncode == 0
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    ok = run_cli("--root", str(cli_root), "--master-key-file", str(key_file), "put", "s", "x", '"v"')
    assert ok.returncode == 0
    key_file.chmod(0o644)
    loose = run_cli("--root", str(cli_root), "--master-key-file", str(key_file), "put", "s", "x", '"v"')
    assert loose.returncode == 4 and "lets others read it" in loose.stderr
    fresh = tmp_path / "fresh"
    result = run_cli("--root", str(fresh), "init", "--generate-master-key", str(fresh / "master.key"),
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


def test_principal_is_recorded_and_must_not_be_a_credential(cli_root: Path, env: dict[str, str]) -> None:
    run_cli("init", "--seed-out", seed_file(env), env=env)
    assert run_cli("--principal", "agent:support-bot", "put", "s", "x", "1", env=env).returncode == 0
    log = (session_dir(cli_root, "s") / "audit" / "log.jsonl").read_text()
    assert '"principal":"agent:support-bot"' in log
    secret = secret_corpus()[3].secret
    result = run_cli("--principal", f"bot {secret}", "put", "s", "x", "1", env=env)
    assert result.returncode == 2 and "credential" in result.stderr
    assert secret not in result.stderr


def test_session_commands(cli_root: Path, env: dict[str, str]) -> None:
    run_cli("init", "--seed-out", seed_file(env), env=env)
    secret = secret_corpus()[0].secret
    assert run_cli("session", "append", "chat", '{"role": "user", "content": "hi"}', env=env).returncode == 0
    assert run_cli("session", "append", "chat", json.dumps({"role": "tool", "content": f"key={secret}"}),
                   env=env).returncode == 0
    assert run_cli("session", "append", "chat", "-", env=env, stdin=b'{"role": "assistant"}').returncode == 0
    items = json.loads(run_cli("session", "items", "chat", "--json", env=env).stdout)
    assert [i["role"] for i in items] == ["user", "tool", "assistant"]
    assert secret not in json.dumps(items)
    latest = json.loads(run_cli("session", "items", "chat", "--limit", "1", "--json", env=env).stdout)
    assert latest == [{"role": "assistant"}]
    resolved = run_cli("session", "items", "chat", "--resolve", env=env).stdout.splitlines()
    assert json.loads(resolved[1])["content"] == f"key={secret}"
    show = json.loads(run_cli("session", "show", "chat", "--json", env=env).stdout)
    assert (show["items"], show["revisions"], show["lock_holder"]) == (3, 1, None)
    assert "items     3" in run_cli("session", "show", "chat", env=env).stdout
    history = json.loads(run_cli("session", "history", "chat", "--json", env=env).stdout)
    assert [r["rev"] for r in history] == [1] and history[0]["key"] == "chat"
    bad = run_cli("session", "append", "chat", "[1, 2]", env=env)
    assert bad.returncode == 3 and "not a JSON object" in bad.stderr
    assert run_cli("session", "items", "chat", "--limit", "-1", env=env).returncode == 2
    assert run_cli("session", "show", "missing", env=env).returncode == 4
    assert run_cli("audit", "verify", env=env).returncode == 0
