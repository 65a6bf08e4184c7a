"""`securestore pg-setup` and the writer role (issue 13): a store that runs as a login role granted
the writer can do its job and nothing more; the audit rows only grow, even for the owner; no
secret reaches the server's log; the CLI takes a URL for --root and never prints its password."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support.pg_stores import fresh_database
from tests.support.stores import cli_in_process
from tests.support.postgres import PostgresServer, make_server, remove_server

SECRETS = ("sk-proj-Zq8vN2xLm4Tr7Yb1Kc9Wd3Fg6Hj0Pa5Se", "hunter2-correct-horse-battery", "AKIAZ7Q2R4T6V8X0B1C3")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    # Every statement and its parameters in the log: what a DBA with log access would see.
    started = make_server(settings={"log_statement": "all", "log_min_error_statement": "info",
                                    "log_connections": "on"})
    try:
        yield started
    finally:
        remove_server(started)


def cli(tmp_path: Path, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """The CLI run in this process (its `main`, with this environment), output captured."""
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "data"), XDG_CONFIG_HOME=str(tmp_path / "config"))
    env.pop("SECURESTORE_ROOT", None)
    done = cli_in_process(argv, env)
    if check:
        assert done.returncode == 0, (argv, done.stdout, done.stderr)
    return done


def login_url(admin_url: str, role: str, password: str = "app-login-pw") -> str:
    """The same database, connecting as `role` (made a login role here)."""
    with psycopg.connect(admin_url, autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone() is None:
            connection.execute(f'CREATE ROLE "{role}" LOGIN')
    return admin_url.replace("postgres@", f"{role}:{password}@")


def test_pg_setup_is_idempotent_and_recorded(server: PostgresServer, tmp_path: Path) -> None:
    url = fresh_database(server)
    login_url(url, "app_one")
    first = json.loads(cli(tmp_path, "pg-setup", url, "--grant-writer-to", "app_one", "--json").stdout)
    again = json.loads(cli(tmp_path, "pg-setup", url, "--json").stdout)
    assert first["created_roles"] == ["securestore_owner", "securestore_writer"] or first["created_roles"] == []
    assert first["granted_to"] == ["app_one"] and again["created_roles"] == []
    with psycopg.connect(url) as connection:
        history = connection.execute("SELECT session_role, actions FROM securestore.setup_history ORDER BY id").fetchall()
        member = connection.execute("SELECT pg_has_role('app_one', 'securestore_writer', 'MEMBER')").fetchone()
    assert [row[0] for row in history] == ["postgres", "postgres"]
    assert "granted securestore_writer to app_one" in history[0][1]
    assert member == (True,)


def test_a_store_runs_as_the_writer_role_through_the_cli(server: PostgresServer, tmp_path: Path) -> None:
    admin = fresh_database(server)
    url = login_url(admin, "app_two")
    cli(tmp_path, "pg-setup", admin, "--grant-writer-to", "app_two")
    init = cli(tmp_path, "--root", url, "init", "--seed-out", str(tmp_path / "seed"), "--json")
    assert json.loads(init.stdout)["root"].startswith("postgresql://app_two@127.0.0.1:")
    cli(tmp_path, "--root", url, "session", "append", "chat-1", json.dumps({"role": "user", "content": "hello"}))
    cli(tmp_path, "--root", url, "put", "chat-1", "ext.state", '{"step": 2}')
    assert json.loads(cli(tmp_path, "--root", url, "get", "chat-1", "ext.state").stdout) == {"step": 2}
    cli(tmp_path, "--root", url, "sessions", "delete", "chat-1")
    verified = cli(tmp_path, "--root", url, "audit", "verify", "--seed", str(tmp_path / "seed"))
    assert "result: OK" in verified.stdout
    doctor = cli(tmp_path, "--root", url, "doctor", "--json", check=False)
    findings = {f["check"]: f for f in json.loads(doctor.stdout)["findings"]}
    assert findings["role"]["status"] == "ok" and findings["guards"]["status"] == "ok", findings
    assert findings["audit"]["status"] == "ok", findings
    everything = init.stdout + init.stderr + verified.stdout + verified.stderr + doctor.stdout + doctor.stderr
    assert "app-login-pw" not in everything


def test_the_writer_cannot_rewrite_the_audit_rows(server: PostgresServer, tmp_path: Path) -> None:
    admin = fresh_database(server)
    url = login_url(admin, "app_three")
    cli(tmp_path, "pg-setup", admin, "--grant-writer-to", "app_three")
    cli(tmp_path, "--root", url, "init", "--seed-out", str(tmp_path / "seed"))
    cli(tmp_path, "--root", url, "put", "chat-1", "ext.state", '{"step": 1}')
    attacks = [
        "UPDATE securestore.audit_records SET data = 'x'",
        "DELETE FROM securestore.audit_records",
        "TRUNCATE securestore.audit_records",
        "UPDATE securestore.nodes SET size = 0 WHERE audit",
        "DELETE FROM securestore.nodes WHERE audit",
        "ALTER TABLE securestore.audit_records DISABLE TRIGGER ALL",
        "DROP TRIGGER audit_records_append_only ON securestore.audit_records",
        "CREATE TABLE securestore.planted (x int)",
        "DELETE FROM securestore.setup_history",
    ]
    with psycopg.connect(url, autocommit=True) as connection:
        for attack in attacks:
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                connection.execute(attack)  # type: ignore[arg-type]
        # The writer may still append: that is its job.
        assert connection.execute("SELECT count(*) FROM securestore.audit_records").fetchone()[0] > 0  # type: ignore[index]
        for privilege in ("UPDATE", "DELETE", "TRUNCATE"):
            granted = connection.execute("SELECT has_table_privilege(current_user, 'securestore.audit_records', %s)",
                                         (privilege,)).fetchone()
            assert granted == (False,), privilege
    # The owner's grants allow UPDATE and DELETE; the triggers refuse them all the same.
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute("SET ROLE securestore_owner")
        for attack in attacks[:5]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only|audit file"):
                connection.execute(attack)  # type: ignore[arg-type]
    assert "result: OK" in cli(tmp_path, "--root", url, "audit", "verify", "--seed", str(tmp_path / "seed")).stdout


def test_no_secret_reaches_the_server_log(server: PostgresServer, tmp_path: Path) -> None:
    admin = fresh_database(server)
    url = login_url(admin, "app_four")
    cli(tmp_path, "pg-setup", admin, "--grant-writer-to", "app_four")
    cli(tmp_path, "--root", url, "init", "--seed-out", str(tmp_path / "seed"))
    items = [{"role": "user", "content": f"my key is {SECRETS[0]}"},
             {"role": "tool", "content": {"password": SECRETS[1], "aws_access_key_id": SECRETS[2]}}]
    cli(tmp_path, "--root", url, "session", "append", "chat-1", json.dumps(items[0]))
    cli(tmp_path, "--root", url, "session", "append", "chat-1", json.dumps(items[1]))
    cli(tmp_path, "--root", url, "session", "append", "chat-1", json.dumps({"role": "user", "content": "plain-marker-7"}))
    cli(tmp_path, "--root", url, "put", "chat-1", "ext.creds", json.dumps({"api_key": SECRETS[0]}))
    refused = cli(tmp_path, "--root", url, "put", "__proto__", "ext.creds", json.dumps({"token": SECRETS[1]}),
                  check=False)
    assert refused.returncode != 0
    shown = cli(tmp_path, "--root", url, "session", "items", "chat-1").stdout
    assert "[secret:vault:" in shown
    log = server.log.read_text(errors="replace")
    # The log does hold every statement's parameters (bytea ones in hex): a value that is not a secret is there.
    assert "INSERT INTO" in log and b"plain-marker-7".hex() in log
    for secret in SECRETS + ("app-login-pw",):
        assert secret not in log and secret.encode().hex() not in log
        assert secret not in refused.stderr + shown
