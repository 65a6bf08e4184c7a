"""Redaction looks at the key as well as the value: a string under a credential-named key is a
secret whatever its format (issue 9, High: `{"password": "..."}` and kin reached the disk)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.support.keys import KEYS
from tests.support.stores import all_bytes
from securestore import SecureStore
from securestore.core.secrets.credential_keys import is_credential_key

# Format-free values: no detector recognises these by their shape alone.
PLAIN = "correcthorsebatterystaple"
SHORT = "hunter2"


def _credentials() -> dict[str, object]:
    """Real-world shapes that carry credentials in fields (all values fake)."""
    docker_auth = base64.b64encode(b"deploy:" + SHORT.encode()).decode()
    return {
        "login": {"username": "admin", "password": PLAIN, "passwd": SHORT + "a", "pwd": SHORT + "b"},
        "sts": {"Credentials": {"AccessKeyId": "ASIA" + "Q" * 16, "SecretAccessKey": "wJalrXUtnFEMIK7MDENGbPxRfiCY" + "z" * 12,
                                "SessionToken": "FwoGZXIvYXdzE" + "t" * 40, "Expiration": "2026-11-21T18:00:00Z"}},
        "oauth": {"client_id": "web-app", "client_secret": "cs-" + PLAIN, "access_token": "at-" + PLAIN,
                  "refresh_token": "rt-" + PLAIN, "id_token": "it-" + PLAIN, "token_type": "Bearer"},
        "docker": {"auths": {"registry.example.com": {"auth": docker_auth}}},
        "headers": {"X-Api-Key": "xk-" + PLAIN, "Authorization": "Basic " + docker_auth, "Accept": "application/json"},
        "gcp": {"type": "service_account", "private_key_id": "0123abcd", "private_key": "pk-" + PLAIN,
                "client_email": "svc@proj.iam.example.com"},
        "kubeconfig": {"users": [{"name": "ci", "user": {"token": "kt-" + PLAIN}}]},
        "api": {"api_key": "ak-" + PLAIN, "apiKey": "ak2-" + PLAIN, "secret": "s-" + PLAIN,
                "credentials": ["c1-" + PLAIN, "c2-" + PLAIN]},
        "azure": {"AccountKey": "azk-" + PLAIN, "connectionString": "cn-" + PLAIN},
    }


SECRET_VALUES = [SHORT + "a", SHORT + "b", PLAIN, "wJalrXUtnFEMIK7MDENGbPxRfiCY", "FwoGZXIvYXdzE", "cs-", "at-", "rt-",
                 "it-", "xk-", "pk-", "kt-", "ak-", "ak2-", "s-" + PLAIN, "c1-", "c2-", "azk-", "cn-",
                 base64.b64encode(b"deploy:" + SHORT.encode()).decode()]


def test_strings_under_credential_keys_never_reach_the_disk_and_resolve_back(store: SecureStore, root: Path) -> None:
    value = _credentials()
    store.put("sess", "creds", value)
    raw = all_bytes(root)
    leaked = [needle for needle in SECRET_VALUES if needle.encode() in raw]
    assert leaked == []
    stored = store.get("sess", "creds")
    assert stored["login"]["password"].startswith("[secret:vault:")
    # Everything under a credential-named key is treated as a credential, even its metadata.
    assert stored["sts"]["Credentials"]["Expiration"].startswith("[secret:vault:")
    assert stored["oauth"]["token_type"] == "Bearer" and stored["oauth"]["client_id"] == "web-app"
    assert stored["headers"]["Accept"] == "application/json"
    assert store.get("sess", "creds", resolve=True) == value


def test_the_same_rule_holds_for_transcripts_metadata_and_without_a_master_key(root: Path) -> None:
    with SecureStore(root, environ=KEYS) as store:  # no master key: values are dropped, fingerprints kept
        with store.create_session("s", metadata={"labels": {"db_password": PLAIN}}) as session:
            session.append_items([{"role": "tool", "content": "ok", "auth": SHORT}])
            with session.turn():
                session.append_items([{"role": "tool", "api_token": "tk-" + PLAIN}])
            assert session.items()[0]["auth"].startswith("[secret:redacted:")
            assert session.metadata["labels"]["db_password"].startswith("[secret:redacted:")
    raw = all_bytes(root)
    assert PLAIN.encode() not in raw and SHORT.encode() not in raw


@pytest.mark.parametrize("kept", ["", "   ", "****", "xxxxxxxx", "${DB_PASSWORD}", "<your-token>", "{{ secret }}",
                                  "none", "keyring", "$TOKEN"])
def test_empty_and_obvious_stand_ins_are_kept(store: SecureStore, kept: str) -> None:
    store.put("sess", "s", {"password": kept})
    assert store.get("sess", "s") == {"password": kept}


def test_booleans_numbers_and_null_under_credential_keys_are_kept(store: SecureStore) -> None:
    value = {"password": True, "token": None, "secret": 0, "api_key": False}
    store.put("sess", "s", value)
    assert store.get("sess", "s") == value


def test_keys_that_only_resemble_credential_names_are_left_alone(store: SecureStore) -> None:
    value = {"token_count": "512", "next_token": "cursor-" + PLAIN, "password_hint": "first pet",
             "max_tokens": "1024", "secret_name": "db-creds", "AccessKeyId": "an id, not a secret",
             "oauth": "enabled", "PWD": "/home/alice/project"}
    store.put("sess", "s", value)
    assert store.get("sess", "s") == value


@pytest.mark.parametrize("key", ["password", "DB_PASSWORD", "adminPassword", "passwd", "pwd", "secret", "client_secret",
                                 "client-secret", "token", "access_token", "refresh_token", "id_token", "session_token",
                                 "SessionToken", "api_key", "apikey", "apiKey", "X-Api-Key", "Authorization", "auth",
                                 "private_key", "secret_access_key", "SecretAccessKey", "credentials", "github_token"])
def test_credential_names_are_recognised_case_and_separator_insensitively(key: str) -> None:
    assert is_credential_key(key)


@pytest.mark.parametrize("key", ["password_confirm", "passwordConfirmation", "password2", "password_1", "api_key_2",
                                 "secret_value", "tokenValue", "private_key_pem", "password_old", "smtp.pass",
                                 "passwords", "api_keys", "secrets", "PassWord", "passPhrase", "passwort", "contraseña",
                                 "mot_de_passe", "senha", "пароль", "密码", "ｐａｓｓｗｏｒｄ", "p\u0430ssword",
                                 "pass\u200bword", "pass\u00adword", "x" * 200 + "_password", "PGPASSWORD"])
def test_spellings_the_review_found_are_credentials(store: SecureStore, root: Path, key: str) -> None:
    store.put("sess", "s", {key: SHORT + "-" + PLAIN})
    assert PLAIN.encode() not in all_bytes(root)
    assert store.get("sess", "s", resolve=True) == {key: SHORT + "-" + PLAIN}


def test_nested_values_and_name_value_pairs_under_credential_names(store: SecureStore, root: Path) -> None:
    value = {
        "password": {"value": "n1-" + PLAIN},
        "credentials": {"pw": "n2-" + PLAIN, "more": [["n3-" + PLAIN]]},
        "token": [["n4-" + PLAIN]],
        "har": {"headers": [{"name": "X-Api-Key", "value": "n5-" + PLAIN}, {"name": "Accept", "value": "text/html"}]},
        "env": [{"name": "DB_PASSWORD", "value": "n6-" + PLAIN}, {"name": "LOG_LEVEL", "value": "debug"}],
        "pairs": [["Authorization", "n7-" + PLAIN], ["Accept", "text/html"]],
    }
    store.put("sess", "s", value)
    assert PLAIN.encode() not in all_bytes(root)
    stored = store.get("sess", "s")
    assert stored["har"]["headers"][1] == {"name": "Accept", "value": "text/html"}
    assert stored["env"][1] == {"name": "LOG_LEVEL", "value": "debug"} and stored["pairs"][1] == ["Accept", "text/html"]
    assert store.get("sess", "s", resolve=True) == value


def test_bare_pass_beside_a_user_and_named_tokens_are_credentials(store: SecureStore, root: Path) -> None:
    value = {"smtp": {"user": "bob", "pass": "p1-" + PLAIN}, "tokens": {"github": "p2-" + PLAIN},
             "tokenizer": {"tokens": ["hello", "world"]}, "result": {"pass": "yes-it-did"}}
    store.put("sess", "s", value)
    assert PLAIN.encode() not in all_bytes(root)
    stored = store.get("sess", "s")
    assert stored["tokenizer"] == {"tokens": ["hello", "world"]}  # tokenizer output, not credentials
    assert stored["result"] == {"pass": "yes-it-did"}  # no user beside it: not a password
    assert store.get("sess", "s", resolve=True) == value


@pytest.mark.parametrize("secret", ["$Kq7vR2mZ" + PLAIN, "<" + PLAIN + "&x>", "{{" + PLAIN + "}}x{{y}}",
                                    "[secret-" + PLAIN + "]", "<Kq7vR2mZ" + PLAIN + ">", "{{Kq7vR2" + PLAIN + "}}"])
def test_secrets_shaped_like_stand_ins_are_still_redacted(store: SecureStore, root: Path, secret: str) -> None:
    store.put("sess", "s", {"password": secret})
    assert PLAIN.encode() not in all_bytes(root)
