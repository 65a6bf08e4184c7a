"""SecureStoreSaver and secrets that hide in corners: a credential-named state field written
through pending writes, bytes in state, typed values under credential-named keys, rewrites
(retention, prune, copy) that cannot re-arm every reference, and writes stored before their
checkpoint. Every test that stores a secret scans every byte the store keeps for it (files or
rows: each test runs on a directory and on PostgreSQL)."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import logging
import uuid
from pathlib import Path
from typing import Any, TypedDict

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.graph import END, START, StateGraph

import securestore
from securestore import IntegrityError, SecureStore, UsageError, verify_store
from securestore.errors import KeyMaterialError, SecretUnavailableError
from securestore.integrations.langgraph import JsonStateSerializer, Retention, SecureStoreSaver
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.pg_stores import all_stored

pytestmark = pytest.mark.both_backends

TOKEN = "ghp_" + "Zq7X" * 9  # a GitHub token shape the detectors find
PASSWORD = "Tr0ub4dor-9xq2-LLm7"  # found only by the key it is stored under
DEPLOY = "dt-value-123456-deploy"


def open_store(root: Path | str, *, master: bool = True, environ: dict[str, str] | None = None) -> SecureStore:
    return securestore.open_store(root, master_key=MASTER_KEY if master else None, environ=environ or KEYS)


def assert_nowhere_on_disk(root: Path | str, *secrets: str) -> None:
    """No secret, nor its base64 or JSON-escaped form, in any byte the store keeps: any file
    under a directory store's root, or any row of a PostgreSQL store (names included)."""
    stored = all_stored(root)
    assert any(b"[secret:" in data for data in stored.values())  # the scan sees the references stored
    for path, data in stored.items():
        for secret in secrets:
            raw = secret.encode()
            for form in (raw, base64.b64encode(raw)[:-4] or base64.b64encode(raw), secret.encode("unicode_escape")):
                assert form not in data, f"{secret[:4]}... found in {path}"


def cfg(thread: str, **extra: Any) -> Any:
    return {"configurable": {"thread_id": thread, "checkpoint_ns": "", **extra}}


def put(saver: SecureStoreSaver, config: Any, values: dict[str, Any], step: int, meta: Any = None) -> Any:
    checkpoint = empty_checkpoint()
    checkpoint["channel_values"] = values
    checkpoint["channel_versions"] = {name: step + 1 for name in values}
    return saver.put(config, checkpoint, {"source": "loop", "step": step, **(meta or {})}, {})


# -- F1: a credential-named channel's pending write ---------------------------------------------
class Login(TypedDict, total=False):
    question: str
    password: str


def login_graph(saver: SecureStoreSaver) -> Any:
    def login(state: Login) -> dict[str, Any]:
        return {"password": PASSWORD}

    def done(state: Login) -> dict[str, Any]:
        return {"question": "ok"}

    builder = StateGraph(Login)
    builder.add_node("login", login)
    builder.add_node("done", done)
    builder.add_edge(START, "login")
    builder.add_edge("login", "done")
    builder.add_edge("done", END)
    return builder.compile(checkpointer=saver)


def test_a_credential_named_state_field_is_vaulted_in_its_pending_write(root: Path | str) -> None:
    with open_store(root) as store:
        graph = login_graph(SecureStoreSaver(store))
        graph.invoke({"question": "hi"}, {"configurable": {"thread_id": "t"}})
        with store.open_session("langgraph:t") as session:
            stored = [entry for item in session.items() if item.get("lg") == "writes" for entry in item["writes"]]
        written = [entry for entry in stored if "password" in entry["w"]]
        assert written and all(set(entry) == {"idx", "w"} for entry in written)  # the channel is the key
        assert all(entry["w"]["password"].startswith("[secret:vault:") for entry in written)
        resolved = SecureStoreSaver(store, resolve_secrets=True)
        assert login_graph(resolved).get_state({"configurable": {"thread_id": "t"}}).values["password"] == PASSWORD
        assert verify_store(store).ok
    assert_nowhere_on_disk(root, PASSWORD)


def test_writes_in_the_old_list_format_and_dunder_channels_still_load(root: Path | str) -> None:
    with open_store(root) as store:
        saver = SecureStoreSaver(store)
        stored = put(saver, cfg("old"), {"s": 1}, 0)
        with store.open_session("langgraph:old") as session:
            session.append_items([{"lg": "writes", "v": 1, "ns": "", "id": stored["configurable"]["checkpoint_id"],
                                   "task": "t0", "path": "", "at": 0, "writes": [[0, "s", "old-form"]]}])
        saver.put_writes(stored, [("__start__", {"x": 1}), ("__password__", PASSWORD), ("s", "new-form")], "t1")
        pending = SecureStoreSaver(store, resolve_secrets=True).get_tuple(stored).pending_writes
        assert sorted(pending) == [("t0", "s", "old-form"), ("t1", "__password__", PASSWORD),
                                   ("t1", "__start__", {"x": 1}), ("t1", "s", "new-form")]
    assert_nowhere_on_disk(root, PASSWORD)


# -- F2: bytes in state, metadata and writes ----------------------------------------------------
def test_bytes_that_are_text_are_scanned_everywhere_and_binary_round_trips(root: Path | str) -> None:
    values = {"blob": TOKEN.encode(), "form": bytearray(b"password=" + PASSWORD.encode()), "bin": b"\x00\xff\xfe"}
    with open_store(root) as store:
        saver = SecureStoreSaver(store)
        stored = put(saver, cfg("b"), values, 0, meta={"note": b"token " + TOKEN.encode()})
        saver.put_writes(stored, [("blob", b"key " + TOKEN.encode())], "task")
        loaded = SecureStoreSaver(store, resolve_secrets=True).get_tuple(stored)
        assert loaded.checkpoint["channel_values"] == values
        assert type(loaded.checkpoint["channel_values"]["form"]) is bytearray
        assert loaded.metadata["note"] == b"token " + TOKEN.encode()
        assert loaded.pending_writes == [("task", "blob", b"key " + TOKEN.encode())]
        plain = saver.get_tuple(stored).checkpoint["channel_values"]
        assert plain["blob"].startswith(b"[secret:vault:") and plain["bin"] == b"\x00\xff\xfe"
    assert_nowhere_on_disk(root, TOKEN, PASSWORD)


# -- F4: tagged values under credential-named keys ----------------------------------------------
TAGGED: dict[str, Any] = {
    "password": PASSWORD.encode(), "token": (PASSWORD,), "api_key": uuid.UUID(int=99),
    "client_secret": decimal.Decimal("3.14159265358979323846"), "auth_token": 2**200,
    "secret": {"when": dt.datetime(2024, 1, 1), "items": {PASSWORD}},
    "pairs": {"password": b"x" + PASSWORD.encode(), 2: "x"}, "header": {"name": "X-Api-Key", "value": (PASSWORD,)},
    "listed": ["password", (PASSWORD,)],
}


def test_tagged_values_under_credential_keys_load_as_references_or_values(root: Path | str) -> None:
    with open_store(root) as store:
        put(SecureStoreSaver(store), cfg("k"), {"s": TAGGED}, 0)
        plain = SecureStoreSaver(store).get_tuple(cfg("k")).checkpoint["channel_values"]["s"]
        for key in ("password", "token", "api_key", "client_secret", "auth_token", "secret"):
            assert plain[key].startswith("[secret:vault:"), key  # one reference per value
        assert plain["header"]["value"].startswith("[secret:vault:") and plain["listed"][1].startswith("[secret:")
        assert plain["pairs"]["password"].startswith("[secret:vault:")  # a map-form (non-string key) dict
        resolved = SecureStoreSaver(store, resolve_secrets=True).get_tuple(cfg("k"))
        assert resolved.checkpoint["channel_values"]["s"] == TAGGED
    assert_nowhere_on_disk(root, PASSWORD)


class Vaulted(TypedDict, total=False):
    password: bytes
    turns: int


@pytest.mark.parametrize("resolve", [False, True])
def test_a_thread_with_bytes_under_a_password_field_stays_resumable(root: Path | str, resolve: bool) -> None:
    seen: list[Any] = []

    def node(state: Vaulted) -> dict[str, Any]:
        seen.append(state.get("password"))
        return {"password": PASSWORD.encode(), "turns": state.get("turns", 0) + 1}

    builder = StateGraph(Vaulted)
    builder.add_node("n", node)
    builder.add_edge(START, "n")
    builder.add_edge("n", END)
    with open_store(root) as store:
        graph = builder.compile(checkpointer=SecureStoreSaver(store, resolve_secrets=resolve))
        for turn in range(3):  # each run loads the previous checkpoint, the password field included
            graph.invoke({"turns": turn}, {"configurable": {"thread_id": "r"}})
        assert graph.get_state({"configurable": {"thread_id": "r"}}).values["turns"] == 3
        later = seen[1:]
        assert len(later) == 2
        assert all(value == PASSWORD.encode() for value in later) if resolve else all(
            isinstance(value, str) and value.startswith("[secret:vault:") for value in later)
    assert_nowhere_on_disk(root, PASSWORD)


def test_loading_degrades_per_value_and_never_revives_a_planted_name() -> None:
    codec = JsonStateSerializer()
    damaged = {"a": {"~lg": "bytes", "v": "AAAA[secret:vault:abc]"}, "b": {"~lg": "[secret:vault:def]", "v": "x"},
               "c": {"~lg": 1, "json": "[secret:vault:ghi]"}, "d": {"~lg": "uuid", "v": str(uuid.UUID(int=1))}}
    assert codec.from_json(damaged) == {"a": "AAAA[secret:vault:abc]", "b": "[secret:vault:def]",
                                        "c": "[secret:vault:ghi]", "d": uuid.UUID(int=1)}
    with pytest.raises(UsageError):
        codec.from_json({"~lg": "msg", "type": "os.system", "data": {}})
    with pytest.raises(IntegrityError):
        codec.from_json({"~lg": "planted.Boom", "data": {}})


# -- F3: a rewrite never turns a live reference into text --------------------------------------
def secret_thread(store: SecureStore, *, env_ref: bool = False) -> SecureStoreSaver:
    saver = SecureStoreSaver(store)
    config = cfg("t")
    for step in range(3):
        value: dict[str, Any] = {"password": PASSWORD}
        if env_ref and step == 2:
            value["deploy_token"] = securestore.Secret.from_env("DEPLOY_TOKEN")
        config = put(saver, config, {"s": value}, step)
    return saver


def resolved_value(store: SecureStore) -> Any:
    return SecureStoreSaver(store, resolve_secrets=True).get_tuple(cfg("t")).checkpoint["channel_values"]["s"]


def test_prune_or_copy_without_the_master_key_is_refused_and_changes_nothing(root: Path | str) -> None:
    with open_store(root) as store:
        secret_thread(store)
    with open_store(root, master=False) as nokey:
        saver = SecureStoreSaver(nokey)
        for rewrite in (lambda: saver.prune(["t"]), lambda: saver.apply_retention("t", Retention(keep_last=1)),
                        lambda: saver.copy_thread("t", "copy")):
            with pytest.raises(KeyMaterialError, match="refused: this store handle has no master key") as caught:
                rewrite()
            assert len(str(caught.value).splitlines()) == 1 and PASSWORD not in str(caught.value)
        assert len(list(saver.list(cfg("t")))) == 3 and saver.thread_ids() == ["t"]
    with open_store(root) as store:
        assert resolved_value(store) == {"password": PASSWORD}
        SecureStoreSaver(store).prune(["t"])  # with the key it works, and the secret survives it
        assert resolved_value(store) == {"password": PASSWORD}
        assert len(list(SecureStoreSaver(store).list(cfg("t")))) == 1 and verify_store(store).ok
    assert_nowhere_on_disk(root, PASSWORD)


def test_one_unresolvable_reference_refuses_the_rewrite_instead_of_losing_the_others(root: Path | str) -> None:
    with_env = {**KEYS, "DEPLOY_TOKEN": DEPLOY}
    with open_store(root) as store:
        saver = secret_thread(store, env_ref=True)
        with pytest.raises(SecretUnavailableError, match="DEPLOY_TOKEN is not set"):
            saver.apply_retention("t", Retention(keep_last=1))
    with open_store(root, environ=with_env) as store:
        assert resolved_value(store) == {"password": PASSWORD, "deploy_token": DEPLOY}
        assert SecureStoreSaver(store).apply_retention("t", Retention(keep_last=1)) == 2
        assert resolved_value(store) == {"password": PASSWORD, "deploy_token": DEPLOY}
        SecureStoreSaver(store).copy_thread("t", "t2")
        copied = SecureStoreSaver(store, resolve_secrets=True).get_tuple(cfg("t2"))
        assert copied.checkpoint["channel_values"]["s"] == {"password": PASSWORD, "deploy_token": DEPLOY}
    assert_nowhere_on_disk(root, PASSWORD, DEPLOY)


def test_retention_inside_put_is_skipped_with_a_warning_when_it_would_lose_secrets(
        root: Path | str, caplog: pytest.LogCaptureFixture) -> None:
    with open_store(root) as store:
        secret_thread(store, env_ref=True)
        # keep_last=2 keeps the checkpoint holding the env reference: it would be rewritten as text
        saver = SecureStoreSaver(store, retention=Retention(keep_last=2, every=1))
        with caplog.at_level(logging.WARNING, logger="securestore.integrations.langgraph"):
            put(saver, saver.get_tuple(cfg("t")).config, {"s": {"n": 4}}, 3)
        assert "retention skipped" in caplog.text and PASSWORD not in caplog.text
        assert len(list(saver.list(cfg("t")))) == 4  # the put is stored, nothing was rewritten
    with open_store(root, environ={**KEYS, "DEPLOY_TOKEN": DEPLOY}) as store:
        history = list(SecureStoreSaver(store, resolve_secrets=True).list(cfg("t")))
        assert history[1].checkpoint["channel_values"]["s"] == {"password": PASSWORD, "deploy_token": DEPLOY}
    assert_nowhere_on_disk(root, PASSWORD, DEPLOY)


# -- F8: writes stored before their checkpoint survive a rewrite ---------------------------------
def test_a_rewrite_keeps_writes_that_arrived_before_their_checkpoint(root: Path | str) -> None:
    with open_store(root) as store:
        saver = SecureStoreSaver(store)
        checkpoints = []
        for step in range(3):
            checkpoint = empty_checkpoint()
            checkpoint["channel_values"] = {"s": step}
            checkpoint["channel_versions"] = {"s": step + 1}
            checkpoints.append(checkpoint)
        first = saver.put(cfg("e"), checkpoints[0], {"source": "loop", "step": 0}, {})
        second = saver.put(first, checkpoints[1], {"source": "loop", "step": 1}, {})
        early = cfg("e", checkpoint_id=checkpoints[2]["id"])
        saver.put_writes(early, [("s", "early"), ("password", PASSWORD)], "task-A")
        assert saver.apply_retention("e", Retention(keep_last=1)) == 1
        saver.put(second, checkpoints[2], {"source": "loop", "step": 2}, {})
        pending = SecureStoreSaver(store, resolve_secrets=True).get_tuple(early).pending_writes
        assert pending == [("task-A", "s", "early"), ("task-A", "password", PASSWORD)]
        assert verify_store(store).ok
    assert_nowhere_on_disk(root, PASSWORD)
