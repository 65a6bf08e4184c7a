"""The first run, as a new user types it: `init` with no flags makes the store and its keys, and
every later command (and `open_store`) finds them by store id, with no flag and no variable.
The first test runs each command in a new interpreter, as a user would; the others run the CLI in
this process (run_cli_here, the same `main` with the same environment)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

import securestore
from securestore import KeyMaterialError
from securestore.api import KEY_DIR_ENV
from tests.support.stores import all_bytes, run_cli, run_cli_here

PASSWORD = "hunter2-" + "Qx7" * 6  # a credential field's value: vaulted, never on disk in clear


@pytest.fixture
def user(tmp_path: Path) -> dict[str, str]:
    """A new user's environment: a data home and a config home, and no key configured."""
    return {"XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "SECURESTORE_AUDIT_SIGNING_KEY": "", KEY_DIR_ENV: ""}


def _ok(result) -> str:  # noqa: ANN001
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def test_init_with_no_flags_then_put_get_append_list_verify_with_no_flags(user: dict[str, str], tmp_path: Path) -> None:
    init = run_cli("init", env=user)
    seed = _ok(init)
    assert seed.startswith("securestore-audit-seed-v1 ") and seed.count("\n") == 1  # stdout: the seed, only
    assert "give the audit verification seed to your auditor" in init.stderr
    store_id = seed.split()[1]
    keys = tmp_path / "config" / "securestore" / "keys" / store_id
    assert str(keys) in init.stderr
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert sorted(p.name for p in keys.iterdir()) == ["audit-signing.key", "audit-signing.pub", "master.key"]
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in keys.iterdir())
    root = tmp_path / "data" / "securestore"
    assert (root / "store.json").exists()

    _ok(run_cli("put", "s", "slot", json.dumps({"password": PASSWORD}), env=user))
    assert json.loads(_ok(run_cli("get", "s", "slot", env=user)))["password"].startswith("[secret:vault:")
    assert json.loads(_ok(run_cli("get", "s", "slot", "--resolve", env=user))) == {"password": PASSWORD}
    _ok(run_cli("session", "append", "s", '{"role": "user", "content": "hi"}', env=user))
    assert _ok(run_cli("sessions", "list", env=user)).startswith("s\t1 items")
    verify = _ok(run_cli("audit", "verify", env=user))
    assert "signatures checked with the public key kept in the store's key directory" in verify
    assert "MACs not checked: an auditor runs this with --seed" in verify
    seed_file = tmp_path / "auditor.seed"
    seed_file.write_text(seed)
    seed_file.chmod(0o600)
    assert "MACs checked with the seed" in _ok(run_cli("audit", "verify", "--seed", str(seed_file), env=user))
    assert PASSWORD.encode() not in all_bytes(root)


def test_open_store_finds_the_keys_init_made(tmp_path: Path) -> None:
    environ = {KEY_DIR_ENV: str(tmp_path / "keys")}
    root = tmp_path / "store"
    store_id = securestore.init_store(root, seed_out=str(tmp_path / "seed"), environ=environ)
    with securestore.open_store(root, environ=environ) as store:
        assert store.store_id == store_id and store.has_master_key
        store.put("s", "creds", {"password": PASSWORD})
        assert store.get("s", "creds", resolve=True) == {"password": PASSWORD}
        assert securestore.verify_store(store).ok
    with securestore.open_store(root, environ={KEY_DIR_ENV: str(tmp_path / "elsewhere")}) as store:
        with pytest.raises(KeyMaterialError, match="signing key"):  # no key found: nothing written
            store.put("s", "creds", {"n": 1})


def test_configured_keys_override_the_key_directory(user: dict[str, str], tmp_path: Path) -> None:
    from tests.support.keys import MASTER_KEY, SIGNING_KEY

    configured = {**user, "SECURESTORE_AUDIT_SIGNING_KEY": SIGNING_KEY, "SECURESTORE_MASTER_KEY": MASTER_KEY}
    _ok(run_cli_here("init", env=configured))
    assert not (tmp_path / "config" / "securestore" / "keys").exists()  # nothing to keep: both were given
    _ok(run_cli_here("put", "s", "slot", json.dumps({"password": PASSWORD}), env=configured))
    assert json.loads(_ok(run_cli_here("get", "s", "slot", "--resolve", env=configured))) == {"password": PASSWORD}


def test_a_key_directory_inside_the_root_is_refused_and_nothing_is_written(user: dict[str, str],
                                                                           tmp_path: Path) -> None:
    root = tmp_path / "store"
    result = run_cli_here("--root", str(root), "init", env={**user, KEY_DIR_ENV: str(root / "keys")})
    assert result.returncode == 4 and "inside the store root" in result.stderr
    assert not (root / "store.json").exists() and not (root / "keys").exists()


def test_a_key_directory_others_can_read_is_refused(user: dict[str, str], tmp_path: Path) -> None:
    seed = _ok(run_cli_here("init", env=user))
    keys = tmp_path / "config" / "securestore" / "keys" / seed.split()[1]
    keys.chmod(0o755)
    result = run_cli_here("get", "s", "slot", env=user)
    assert result.returncode == 4
    assert f"refused key directory {keys}: mode 0755, expected 0700" in result.stderr


def test_a_failed_init_leaves_no_key_directory(user: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "data" / "securestore"
    root.mkdir(parents=True, mode=0o700)
    (root / "unrelated").write_text("x")
    result = run_cli_here("init", env=user)
    assert result.returncode != 0 and "not empty" in result.stderr
    keys = tmp_path / "config" / "securestore" / "keys"
    assert not keys.exists() or list(keys.iterdir()) == []


def test_global_options_after_the_subcommand_and_the_version(user: dict[str, str], tmp_path: Path) -> None:
    root = tmp_path / "elsewhere"
    _ok(run_cli_here("init", "--root", str(root), env=user))
    _ok(run_cli_here("put", "s", "slot", "1", "--root", str(root), env=user))
    assert _ok(run_cli_here("get", "s", "slot", "--root", str(root), env=user)).strip() == "1"
    # Given before the subcommand, it is not undone by the subcommand's own (absent) copy.
    assert _ok(run_cli_here("--root", str(root), "get", "s", "slot", env=user)).strip() == "1"
    assert _ok(run_cli_here("--version", env=user)).strip() == f"securestore {securestore.VERSION}"


def test_errors_name_the_key_typed_quoted_and_escaped(user: dict[str, str]) -> None:
    _ok(run_cli_here("init", env=user))
    missing = run_cli_here("get", 'my "chat"', "slot", env=user)
    assert missing.returncode == 4
    assert 'session "my \\"chat\\"" does not exist' in missing.stderr
    _ok(run_cli_here("put", "s", "slot", "1", env=user))
    result = run_cli_here("get", "s", "other", env=user)
    assert 'session "s" has no slot "other"' in result.stderr
    assert "k-" not in result.stderr and "k-" not in missing.stderr  # never the encoded directory name


@pytest.mark.parametrize("command", [
    ["put", "s", "slot", "2"], ["get", "s", "slot"], ["session", "append", "s", "{}"], ["session", "show", "s"],
    ["session", "items", "s"], ["session", "history", "s"], ["sessions", "list"], ["audit", "verify"],
    ["audit", "seal"], ["audit", "public-key"], ["index", "rebuild"], ["maintain"], ["sessions", "delete", "s"],
])
def test_every_command_that_prints_prints_json(user: dict[str, str], command: list[str]) -> None:
    init = json.loads(_ok(run_cli_here("init", "--json", env=user)))
    assert init["seed"].startswith("securestore-audit-seed-v1 ") and init["key_directory"]
    _ok(run_cli_here("put", "s", "slot", "1", env=user))
    json.loads(_ok(run_cli_here(*command, "--json", env=user)))


def test_a_key_home_others_can_write_is_refused_at_init_and_later(user: dict[str, str], tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    shared.chmod(0o777)  # anyone may rename entries here: a key directory could be hidden or swapped
    unsafe = {**user, KEY_DIR_ENV: str(shared / "keys")}
    result = run_cli_here("init", env=unsafe)
    assert result.returncode == 4 and f"{shared} is writable by others (mode 0777)" in result.stderr
    assert not (shared / "keys").exists() and not (tmp_path / "data" / "securestore" / "store.json").exists()

    shared.chmod(0o1777)  # sticky, like /tmp: only the owner renames an entry
    seed = _ok(run_cli_here("init", env=unsafe))
    shared.chmod(0o777)
    result = run_cli_here("get", "s", "slot", env=unsafe)
    assert result.returncode == 4 and "writable by others" in result.stderr
    assert (shared / "keys" / seed.split()[1]).is_dir()  # refused, not removed


def test_configured_keys_work_whatever_the_unused_key_home_looks_like(user: dict[str, str], tmp_path: Path) -> None:
    from tests.support.keys import MASTER_KEY, SIGNING_KEY

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o700)
    shared.chmod(0o777)
    configured = {**user, KEY_DIR_ENV: str(shared / "keys"), "SECURESTORE_AUDIT_SIGNING_KEY": SIGNING_KEY,
                  "SECURESTORE_MASTER_KEY": MASTER_KEY}
    _ok(run_cli_here("init", env=configured))  # no key directory is made, so its parents do not matter
    _ok(run_cli_here("put", "s", "slot", "1", env={**configured, "SECURESTORE_MASTER_KEY": ""}))
    assert not (shared / "keys").exists()
