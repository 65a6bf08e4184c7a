"""SecureStoreSession through the OpenAI Agents SDK's real Runner with a scripted model: the
Session contract, one writer per session, secrets, orphan tool calls, caps, crashes.

Run as a script, this file is the child process of the crash and lock tests:
    test_openai_agents.py ROOT hold|run|pause
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the repository root

import pytest
from agents import Agent, FunctionTool, RunConfig, Runner, SQLiteSession, function_tool, set_tracing_disabled
from agents.memory import Session, SessionSettings
from agents.memory.session import _session_accepts_wrapper
from agents.testing import ScriptedModel, assistant_message, function_call

from securestore import Limits, LimitExceededError, LockHeldError, SecureStore, StoreConfig, UsageError, verify_store
from securestore import aio
from securestore.integrations.openai_agents import Repair, SecureStoreSession
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.pg_stores import all_stored_bytes, cancel_inside_a_write
from tests.support.stores import REPO

pytestmark = pytest.mark.both_backends  # each test with a store runs on a directory and on PostgreSQL

set_tracing_disabled(True)  # the trace exporter would try to reach OpenAI

API_KEY = "sk-proj-" + "Zq3vR8tYw1" * 5  # made up, in a vendor format the detector knows
PASSWORD = "Vx7-quartz-Lumen-42"
NO_LOCK_WAIT = StoreConfig(lock_timeout_seconds=0)


@function_tool
def lookup(ticket: str) -> str:
    """Look up a ticket."""
    return f"ticket {ticket}: the deploy failed; OPENAI_API_KEY={API_KEY}"


def scripted(*texts: str, tool_first: bool = True, call_id: str = "call_1") -> ScriptedModel:
    steps: list[Any] = [[function_call("lookup", {"ticket": "4711"}, call_id=call_id)]] if tool_first else []
    return ScriptedModel(steps + [[assistant_message(text)] for text in texts])


@function_tool(name_override="lookup")
def plain_lookup(ticket: str) -> str:
    """Look up a ticket."""
    return f"ticket {ticket}: the deploy failed"


def agent(model: ScriptedModel, tool: Any = lookup) -> Agent[Any]:
    return Agent(name="support", instructions="help", model=model, tools=[tool])


def open_sync(root: Path | str, config: StoreConfig = NO_LOCK_WAIT) -> SecureStore:
    return SecureStore(root, config, master_key=MASTER_KEY, environ=KEYS)


@pytest.fixture
def sync_store(root: Path | str) -> Iterator[SecureStore]:
    with open_sync(root) as handle:
        yield handle


def kinds(items: list[Any]) -> list[str]:
    return [item.get("type") or item["role"] for item in items]


def disk_bytes(root: Path | str) -> bytes:
    """Every byte the store keeps: each file under its root, or each row on PostgreSQL (names included)."""
    return all_stored_bytes(root)


def child_env() -> dict[str, str]:
    """A child interpreter's environment: no SECURESTORE_ settings, no OpenAI key, the repository
    on the path. Unlike tests.support.stores.child_env it keeps the default bytecode cache: a
    private one would compile the whole SDK (and openai) from source again, ~20 s."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SECURESTORE_") and k != "OPENAI_API_KEY"}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def without_ids(items: list[Any]) -> list[Any]:
    return [{k: v for k, v in item.items() if k != "id"} for item in items]


# -- the Session contract ---------------------------------------------------------------------------

def test_runs_store_what_sqlite_session_stores_in_the_same_order(root: Path | str, tmp_path: Path) -> None:
    async def conversation(session: Session) -> tuple[list[Any], list[Any]]:
        model = scripted("The DB is down.", "You asked about 4711.")
        await Runner.run(agent(model, plain_lookup), "what's up with 4711?", session=session)
        await Runner.run(agent(model, plain_lookup), "what did I ask?", session=session)
        model.assert_complete()
        return await session.get_items(), list(model.last_call.input)

    async def main() -> None:
        async with await aio.open_store(root, NO_LOCK_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            async with SecureStoreSession("t-1", store) as ours:
                assert isinstance(ours, Session) and _session_accepts_wrapper(ours)
                stored, seen = await conversation(ours)
            reference, reference_seen = await conversation(SQLiteSession("t-1", str(tmp_path / "sdk.db")))
            assert kinds(stored) == ["user", "function_call", "function_call_output", "message", "user", "message"]
            assert without_ids(stored) == without_ids(reference)
            assert without_ids(seen) == without_ids(reference_seen)  # the model got the same history
            assert (await store.verify()).ok

    asyncio.run(main())


def test_a_streamed_run_persists_like_a_plain_run(sync_store: SecureStore) -> None:
    async def main() -> None:
        async with SecureStoreSession("streamed", sync_store) as session:
            result = Runner.run_streamed(agent(scripted("Done.")), "stream please", session=session)
            async for _ in result.stream_events():
                pass
            assert result.final_output == "Done."
            assert kinds(await session.get_items()) == ["user", "function_call", "function_call_output", "message"]

    asyncio.run(main())
    assert verify_store(sync_store).ok


def test_limit_none_zero_negative_n_and_session_settings(sync_store: SecureStore) -> None:
    async def main() -> None:
        items = [{"role": "user", "content": f"m{i}"} for i in range(5)]
        async with SecureStoreSession("limits", sync_store) as session:
            await session.add_items(items[:2])
            await session.add_items(items[2:])
            assert await session.get_items() == items
            assert await session.get_items(None) == items
            assert await session.get_items(2) == items[3:]  # the latest N, oldest first
            assert await session.get_items(0) == []
            assert await session.get_items(-1) == items  # as SQLiteSession: unlimited
            assert await session.get_items(99) == items
            session.session_settings = SessionSettings(limit=3)
            assert await session.get_items() == items[2:]  # None falls back to the settings
            assert await session.get_items(1) == items[4:]  # an explicit limit wins
            assert await session.get_items(0) == []

    asyncio.run(main())


def test_the_runner_bounds_history_by_session_settings_and_run_config(sync_store: SecureStore) -> None:
    async def main() -> None:
        async with SecureStoreSession("bounded", sync_store, session_settings=SessionSettings(limit=2)) as session:
            await session.add_items([{"role": "user", "content": f"old {i}"} for i in range(6)])
            model = scripted("a", "b", tool_first=False)
            await Runner.run(agent(model), "new", session=session)
            assert [item["content"] for item in model.last_call.input] == ["old 4", "old 5", "new"]
            await Runner.run(agent(model), "newer", session=session,
                             run_config=RunConfig(session_settings=SessionSettings(limit=1)))
            assert kinds(model.last_call.input) == ["message", "user"]  # the last stored item + the new input
            assert len(await session.get_items(-1)) == 10  # bounded reads, nothing dropped from the store

    asyncio.run(main())


def test_an_empty_session(sync_store: SecureStore) -> None:
    async def main() -> None:
        async with SecureStoreSession("empty", sync_store) as session:
            assert await session.pop_item() is None
            assert await session.get_items() == []
            await session.clear_session()
            await session.add_items([])
        assert await SecureStoreSession("never-written", sync_store).add_items([]) is None
        assert [s.key for s in sync_store.list_sessions().sessions] == ["empty"]  # [] creates nothing

    asyncio.run(main())


def test_pop_item_and_clear_session(sync_store: SecureStore) -> None:
    async def main() -> None:
        async with SecureStoreSession("pop", sync_store) as session:
            await Runner.run(agent(scripted("Done.")), "hi", session=session)
            popped = await session.pop_item()
            assert popped is not None and popped["type"] == "message"
            assert kinds(await session.get_items()) == ["user", "function_call", "function_call_output"]
            await session.clear_session()
            assert await session.get_items() == []
            model = scripted("fresh", tool_first=False)
            await Runner.run(agent(model), "again", session=session)
            assert kinds(model.last_call.input) == ["user"]  # nothing of the cleared history
        assert verify_store(sync_store).ok

    asyncio.run(main())


def test_a_new_store_handle_sees_the_history_after_a_restart(root: Path | str) -> None:
    async def first() -> None:
        async with await aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as store:
            async with SecureStoreSession("restart", store) as session:
                await Runner.run(agent(scripted("The DB is down.")), "what's up?", session=session)

    async def second() -> None:
        with open_sync(root) as store:  # the sync handle, as another program would open it
            async with SecureStoreSession("restart", store) as session:
                model = scripted("You asked what's up.", tool_first=False)
                await Runner.run(agent(model), "what did I ask?", session=session)
                assert kinds(model.last_call.input) == ["user", "function_call", "function_call_output", "message",
                                                        "user"]
                assert model.last_call.input[0]["content"] == "what's up?"
            assert verify_store(store).ok

    asyncio.run(first())
    asyncio.run(second())


def test_a_closed_session_refuses_use_and_releases_its_lock(sync_store: SecureStore) -> None:
    async def main() -> None:
        session = SecureStoreSession("closing", sync_store)
        await session.add_items([{"role": "user", "content": "hi"}])
        await session.close()
        await session.close()  # idempotent
        with pytest.raises(UsageError, match="closed"):
            await session.get_items()
        async with SecureStoreSession("closing", sync_store) as again:  # the lock was released
            assert await again.get_items() == [{"role": "user", "content": "hi"}]

    asyncio.run(main())


# -- secrets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("resolve", [False, True])
def test_what_the_model_sees_of_a_secret_and_nothing_reaches_the_disk(root: Path | str, resolve: bool) -> None:
    async def main() -> None:
        with open_sync(root) as store:
            async with SecureStoreSession("secrets", store, resolve_secrets=resolve) as session:
                model = scripted("The deploy key leaked.", "Rotate it.")
                await Runner.run(agent(model), f"my db password is {PASSWORD}", session=session)
                await Runner.run(agent(model), "what now?", session=session)
                seen = json.dumps(model.last_call.input)
                if resolve:  # the values, for the model only
                    assert API_KEY in seen and PASSWORD in seen and "[secret:" not in seen
                else:  # references in place of both values
                    assert API_KEY not in seen and PASSWORD not in seen
                    assert seen.count("[secret:vault:") == 2
                    assert API_KEY not in json.dumps(await session.pop_item())  # pop follows the setting too
            stored = json.dumps(store.read_items("secrets"))
            assert API_KEY not in stored and PASSWORD not in stored and "[secret:vault:" in stored
            assert verify_store(store).ok
        on_disk = disk_bytes(root)
        assert b"[secret:vault:" in on_disk  # the scan sees the references stored in their place
        assert API_KEY.encode() not in on_disk and PASSWORD.encode() not in on_disk
        assert json.dumps(API_KEY).encode() not in on_disk

    asyncio.run(main())


def test_resolving_secrets_needs_a_master_key(root: Path | str) -> None:
    with SecureStore(root, NO_LOCK_WAIT, environ=KEYS) as store:
        with pytest.raises(UsageError, match="master key"):
            SecureStoreSession("s", store, resolve_secrets=True)


# Secrets that only the structured rules catch (free text would store them in clear) in JSON text.
JSON_PW = "Tr0ub4dor-9xq2-LLm7"
JSON_SHAPES = {
    "nested": json.dumps({"creds": {"user": "bob", "pass": JSON_PW}}),
    "list_pair": json.dumps({"vars": [["DB_PASSWORD", JSON_PW]]}),
    "name_value": json.dumps({"name": "DB_PASSWORD", "value": JSON_PW}),
    "escaped_key": '{"pass\\u0077ord": "%s"}' % JSON_PW,
}
ONE_REF = re.compile(r"\[secret:vault:[^\]]+\]")


def json_carriers(text: str) -> list[Any]:
    """`text` as each item field that holds JSON text: call arguments, custom tool input, outputs."""
    return [{"type": "function_call", "call_id": "c1", "name": "configure", "arguments": text},
            {"type": "function_call_output", "call_id": "c1", "output": text},
            {"type": "custom_tool_call", "call_id": "c2", "name": "raw", "input": text},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": text}]},
            {"type": "mcp_call", "id": "m1", "name": "configure", "server_label": "ops", "arguments": text}]


def json_fields(item: dict[str, Any]) -> Any:
    value = item.get("arguments", item.get("input", item.get("output")))
    return value[0]["text"] if isinstance(value, list) else value


def assert_not_on_disk(root: Path | str, *values: str) -> None:
    on_disk = disk_bytes(root)
    assert b"[secret:vault:" in on_disk  # the scan sees the references stored in their place
    for value in values:
        assert value.encode() not in on_disk and json.dumps(value).encode() not in on_disk


@pytest.mark.parametrize("shape", JSON_SHAPES)
def test_a_secret_in_json_arguments_or_outputs_is_vaulted_with_the_whole_string(root: Path | str, shape: str) -> None:
    text = JSON_SHAPES[shape]

    async def main() -> None:
        with open_sync(root) as store:
            async with SecureStoreSession("json", store) as session:
                await session.add_items(json_carriers(text) + [ASK])
                seen = await session.get_items()
                assert [json_fields(item) for item in seen[:5]] == [seen[0]["arguments"]] * 5  # one secret, one ref
                assert ONE_REF.fullmatch(seen[0]["arguments"]) and JSON_PW not in json.dumps(seen)
            async with SecureStoreSession("json", store, resolve_secrets=True) as session:
                assert [json_fields(item) for item in (await session.get_items())[:5]] == [text] * 5  # exact string
                assert (await session.pop_item()) == ASK
            assert verify_store(store).ok
        assert_not_on_disk(root, JSON_PW)

    asyncio.run(main())


def test_json_text_without_a_secret_and_plain_text_are_kept_as_written(sync_store: SecureStore) -> None:
    async def main() -> None:
        async with SecureStoreSession("plain", sync_store) as session:
            items = [CALL, {**OUTPUT, "output": json.dumps({"user": "bob", "vars": [["HOME", "/root"]]})},
                     {**CALL, "call_id": "c2", "arguments": "not json {\"password\": 1"},
                     {**OUTPUT, "call_id": "c2", "output": f"done; OPENAI_API_KEY={API_KEY}"}]
            await session.add_items(items)
            stored = await session.get_items()
            assert stored[:3] == items[:3]
            # Not JSON: the free-text rules still take the key out, and only the key.
            output = stored[3]["output"]
            assert output.startswith("done; OPENAI_API_KEY=[secret:vault:") and API_KEY not in output

    asyncio.run(main())


@pytest.mark.parametrize("resolve", [False, True])
def test_a_runner_tool_call_with_a_secret_in_its_json_arguments(root: Path | str, resolve: bool) -> None:
    received: list[str] = []

    async def configure(_: Any, arguments: str) -> str:
        received.append(arguments)
        return "configured"

    tool = FunctionTool(name="configure", description="Configure.", strict_json_schema=False,
                        params_json_schema={"type": "object", "additionalProperties": True}, on_invoke_tool=configure)
    texts = list(JSON_SHAPES.values())

    async def main() -> None:
        model = ScriptedModel([[function_call("configure", text, call_id=f"c{n}") for n, text in enumerate(texts)],
                               [assistant_message("Configured.")], [assistant_message("Done.")]])
        with open_sync(root) as store:
            async with SecureStoreSession("run", store, resolve_secrets=resolve) as session:
                configurer = Agent(name="ops", model=model, tools=[tool])
                await Runner.run(configurer, "set the db password", session=session)
                await Runner.run(configurer, "anything else?", session=session)
                model.assert_complete()
            arguments = [item["arguments"] for item in model.last_call.input if item.get("type") == "function_call"]
            if resolve:  # the exact strings, for the model only
                assert arguments == texts
            else:  # one reference per arguments string
                assert len(arguments) == 4 and all(ONE_REF.fullmatch(a) for a in arguments)
                assert JSON_PW not in json.dumps(model.last_call.input)
            assert sorted(received) == sorted(texts)  # the tool itself got the values
            assert JSON_PW not in json.dumps(store.read_items("run")) and verify_store(store).ok
        assert_not_on_disk(root, JSON_PW)

    asyncio.run(main())


# -- one writer per session ---------------------------------------------------------------------------

def test_two_runners_on_one_session_in_one_process_get_lock_held_error(sync_store: SecureStore) -> None:
    async def run(name: str, session: SecureStoreSession) -> str:
        model = scripted(f"answer from {name}")
        await Runner.run(agent(model), f"question from {name}", session=session)
        return name

    async def main() -> None:
        first, second = SecureStoreSession("shared", sync_store), SecureStoreSession("shared", sync_store)
        outcomes = await asyncio.gather(run("A", first), run("B", second), return_exceptions=True)
        errors = [o for o in outcomes if isinstance(o, BaseException)]
        winners = [o for o in outcomes if isinstance(o, str)]
        assert len(errors) == 1 and isinstance(errors[0], LockHeldError) and len(winners) == 1
        assert "shared" in str(errors[0]) and "in use by another runner" in str(errors[0])
        loser = "B" if winners == ["A"] else "A"
        winner_session = first if winners == ["A"] else second
        await run(winners[0], winner_session)  # the winner keeps the lock for its next run
        stored = json.dumps(await winner_session.get_items())
        assert stored.count(f"question from {winners[0]}") == 2 and f"from {loser}" not in stored
        await first.close()
        await second.close()
        async with SecureStoreSession("shared", sync_store) as third:  # free once the holder closed
            assert len(await third.get_items()) == 8

    asyncio.run(main())
    assert verify_store(sync_store).ok


def test_a_runner_in_another_process_holding_the_session_blocks_this_one(root: Path | str) -> None:
    child = spawn(root, "hold")
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"

        async def main() -> None:
            with open_sync(root) as store:
                session = SecureStoreSession("crash", store)
                model = scripted("never")
                with pytest.raises(LockHeldError) as raised:
                    await Runner.run(agent(model), "hello", session=session)
                assert f"pid {child.pid}" in str(raised.value)
                assert not model.calls  # refused before the model was asked anything
                await session.close()

        asyncio.run(main())
    finally:
        child.communicate("", timeout=60)
    with open_sync(root) as store:
        assert store.read_items("crash") == [{"role": "user", "content": "held"}]
        assert verify_store(store).ok


# -- cancellation, caps ------------------------------------------------------------------------------

def test_a_cancelled_add_items_completes_and_the_outcome_is_recorded(root: Path | str) -> None:
    async def main() -> None:
        async with await aio.open_store(root, NO_LOCK_WAIT, master_key=MASTER_KEY, environ=KEYS) as store:
            async with SecureStoreSession("cancel", store) as session:
                batch = [{"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
                         {"type": "function_call_output", "call_id": "c1", "output": "ok"}]
                outcome, note = await cancel_inside_a_write(store, root, session.add_items(batch))
                assert (outcome.operation, outcome.session, outcome.completed) == ("append_items", "cancel", True)
                assert "completed" in note
                assert await session.get_items() == batch  # the whole batch, durable
            assert (await store.verify()).ok

    asyncio.run(main())


def test_an_item_over_the_value_cap_is_refused_whole(root: Path | str) -> None:
    config = StoreConfig(lock_timeout_seconds=0, limits=Limits(max_value_bytes=4096))

    async def main() -> None:
        with open_sync(root, config) as store:
            async with SecureStoreSession("caps", store) as session:
                await session.add_items([{"role": "user", "content": "small"}])
                with pytest.raises(LimitExceededError, match="exceeds 4096 bytes"):
                    await session.add_items([{"role": "user", "content": "fits"},
                                             {"role": "user", "content": "x" * 5000}])
                assert await session.get_items() == [{"role": "user", "content": "small"}]  # none of the batch
                model = scripted("never", tool_first=False)
                with pytest.raises(LimitExceededError):
                    await Runner.run(agent(model), "y" * 5000, session=session)
                assert await session.get_items() == [{"role": "user", "content": "small"}]
            assert verify_store(store).ok

    asyncio.run(main())


# -- orphan tool calls -------------------------------------------------------------------------------

CALL = {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{\"ticket\": \"1\"}"}
OUTPUT = {"type": "function_call_output", "call_id": "c1", "output": "fine"}
ASK = {"role": "user", "content": "and now?"}


def test_an_orphan_tool_call_is_left_out_of_reads_reported_and_kept_on_disk(
        sync_store: SecureStore, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with SecureStoreSession("orphan", sync_store) as session:
            reasoning = {"type": "reasoning", "id": "rs_1", "summary": []}
            await session.add_items([{"role": "user", "content": "q"}])
            await session.add_items([reasoning, CALL])  # the write of its output failed (SDK #4615)
            await session.add_items([ASK])
            with caplog.at_level(logging.INFO, "securestore.integrations.openai_agents"):
                history = await session.get_items()
            assert history == [{"role": "user", "content": "q"}, ASK]  # call and its reasoning left out
            assert session.last_repairs == [Repair("reasoning", "reasoning", None, 1),
                                            Repair("orphan_call", "function_call", "c1", 2)]
            assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.WARNING]
            assert "c1" in caplog.text and "unchanged" in caplog.text
            assert len(sync_store.read_items("orphan")) == 4  # never rewritten
            model = scripted("answered", tool_first=False)
            await Runner.run(agent(model), "go on", session=session)
            assert "function_call" not in kinds(model.last_call.input)
        assert verify_store(sync_store).ok

    asyncio.run(main())


def test_a_call_and_its_output_in_one_batch_or_later_batches_are_kept(sync_store: SecureStore) -> None:
    async def main() -> None:
        async with SecureStoreSession("pairs", sync_store) as session:
            await session.add_items([CALL, OUTPUT])  # the SDK's tool step: one batch
            second = {**CALL, "call_id": "c2"}
            await session.add_items([second])
            await session.add_items([{**OUTPUT, "call_id": "c2"}])  # an approved call: output in a later batch
            assert await session.get_items() == [CALL, OUTPUT, second, {**OUTPUT, "call_id": "c2"}]
            assert session.last_repairs == []
            await session.add_items([{**CALL, "call_id": "c3"}])  # retried under the same id: one output
            await session.add_items([{**CALL, "call_id": "c3"}, {**OUTPUT, "call_id": "c3"}])
            assert await session.get_items(3) == [{**CALL, "call_id": "c3"}, {**OUTPUT, "call_id": "c3"}]
            assert session.last_repairs == [Repair("orphan_call", "function_call", "c3", 4)]

    asyncio.run(main())


def test_pairs_cut_by_a_limit_and_outputs_without_a_call_are_left_out(
        sync_store: SecureStore, caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with SecureStoreSession("cut", sync_store) as session:
            await session.add_items([ASK, CALL, OUTPUT, ASK])
            with caplog.at_level(logging.INFO, "securestore.integrations.openai_agents"):
                assert await session.get_items(2) == [ASK]  # the window starts on the output
                assert session.last_repairs == [Repair("orphan_output", "function_call_output", "c1", 2)]
                assert caplog.records == []  # a cut pair is not damage
                await session.add_items([{**OUTPUT, "call_id": "gone"}])
                assert await session.get_items() == [ASK, CALL, OUTPUT, ASK]
            assert session.last_repairs == [Repair("orphan_output", "function_call_output", "gone", 4)]
            assert [r.levelno for r in caplog.records] == [logging.WARNING]

    asyncio.run(main())


def test_a_call_waiting_for_approval_is_left_out_until_its_output_is_stored(
        sync_store: SecureStore, caplog: pytest.LogCaptureFixture) -> None:
    @function_tool(needs_approval=True)
    def deploy(env: str) -> str:
        """Deploy."""
        return f"deployed {env}"

    async def main() -> None:
        model = ScriptedModel([[function_call("deploy", {"env": "prod"}, call_id="c9")],
                               [assistant_message("Deployed.")], [assistant_message("Next.")]])
        approver = Agent(name="ops", model=model, tools=[deploy])
        async with SecureStoreSession("approval", sync_store) as session:
            with caplog.at_level(logging.INFO, "securestore.integrations.openai_agents"):
                interrupted = await Runner.run(approver, "deploy prod", session=session)
                assert interrupted.interruptions
                assert kinds(await session.get_items()) == ["user"]
                assert session.last_repairs[0].kind == "orphan_call"
                assert {r.levelno for r in caplog.records} == {logging.INFO}  # trailing: may be pending
            state = interrupted.to_state()
            for item in interrupted.interruptions:
                state.approve(item)
            resumed = await Runner.run(approver, state, session=session)
            assert resumed.final_output == "Deployed."
            assert kinds(await session.get_items()) == ["user", "function_call", "function_call_output", "message"]
            assert session.last_repairs == []
            await Runner.run(approver, "next", session=session)
            assert kinds(model.last_call.input) == ["user", "function_call", "function_call_output", "message", "user"]

    asyncio.run(main())


CLIENT_CALLS = {  # every call type the client answers, as the SDK writes it (or the API's form)
    "custom_tool_call": ({"type": "custom_tool_call", "call_id": "x", "name": "raw", "input": "i"},
                         {"type": "custom_tool_call_output", "call_id": "x", "output": "o"}),
    "computer_call": ({"type": "computer_call", "call_id": "x", "id": "cu", "action": {"type": "screenshot"},
                       "pending_safety_checks": [], "status": "completed"},
                      {"type": "computer_call_output", "call_id": "x", "output": {"type": "computer_screenshot"}}),
    "apply_patch_call": ({"type": "apply_patch_call", "call_id": "x", "status": "completed", "operation": {}},
                         {"type": "apply_patch_call_output", "call_id": "x", "status": "completed"}),
    "local_shell_call": ({"type": "local_shell_call", "call_id": "x", "id": "ls", "status": "completed",
                          "action": {"type": "exec", "command": ["ls"], "env": {}}},
                         {"type": "local_shell_call_output", "call_id": "x", "output": "a b"}),
    "local_shell_call_api_form": ({"type": "local_shell_call", "call_id": "x", "id": "ls", "status": "completed",
                                   "action": {"type": "exec", "command": ["ls"], "env": {}}},
                                  {"type": "local_shell_call_output", "id": "x", "output": "a b"}),
    "shell_call": ({"type": "shell_call", "call_id": "x", "status": "completed", "action": {"commands": ["ls"]}},
                   {"type": "shell_call_output", "call_id": "x", "output": []}),
    "tool_search_call": ({"type": "tool_search_call", "call_id": "x", "arguments": {}, "execution": "client"},
                         {"type": "tool_search_output", "call_id": "x", "tools": [], "execution": "client"}),
    "anonymous_tool_search": ({"type": "tool_search_call", "arguments": {}, "execution": "server"},
                              {"type": "tool_search_output", "tools": [], "execution": "server"}),
}


@pytest.mark.parametrize("kind", CLIENT_CALLS)
def test_every_client_answered_call_type_is_paired(sync_store: SecureStore, kind: str) -> None:
    call, output = CLIENT_CALLS[kind]

    async def main() -> None:
        async with SecureStoreSession("types", sync_store) as session:
            await session.add_items([call, output, call, ASK])  # a pair, then an orphan call
            assert await session.get_items() == [call, output, ASK]
            assert [(r.kind, r.index) for r in session.last_repairs] == [("orphan_call", 2)]
            await session.clear_session()
            await session.add_items([output, ASK])  # an output with no call before it
            assert await session.get_items() == [ASK]
            assert [(r.kind, r.index) for r in session.last_repairs] == [("orphan_output", 0)]

    asyncio.run(main())


@pytest.mark.parametrize("bad_id", [7, "", None, "missing"])
def test_a_call_or_output_without_a_string_call_id_pairs_with_nothing(sync_store: SecureStore, bad_id: Any) -> None:
    call = {k: v for k, v in {**CALL, "call_id": bad_id}.items() if v != "missing"}
    output = {k: v for k, v in {**OUTPUT, "call_id": bad_id}.items() if v != "missing"}

    async def main() -> None:
        async with SecureStoreSession("ids", sync_store) as session:
            await session.add_items([call, output, ASK])
            assert await session.get_items() == [ASK]
            assert session.last_repairs == [Repair("orphan_call", "function_call", None, 0),
                                            Repair("orphan_output", "function_call_output", None, 1)]

    asyncio.run(main())


def test_anonymous_tool_searches_pair_in_order(sync_store: SecureStore) -> None:
    call, output = CLIENT_CALLS["anonymous_tool_search"]

    async def main() -> None:
        async with SecureStoreSession("search", sync_store) as session:
            reasoning = {"type": "reasoning", "id": "rs_1", "summary": []}
            # Two searches, one output: it answers the one right before it (as the SDK pairs them).
            await session.add_items([reasoning, call, call, output, ASK])
            assert await session.get_items() == [call, output, ASK]
            assert [(r.kind, r.index) for r in session.last_repairs] == [("reasoning", 0), ("orphan_call", 1)]

    asyncio.run(main())


# -- the example ------------------------------------------------------------------------------------
# Directory only: the example program makes its store (and key files) in the directory it is given.

def test_the_example_runs_without_an_api_key_and_continues_in_a_named_store(tmp_path: Path) -> None:
    example = [sys.executable, str(REPO / "examples" / "openai_agents_example.py")]

    def start(argv: list[str]) -> subprocess.Popen[str]:
        return subprocess.Popen(example + argv, env=child_env(), stdout=subprocess.PIPE,  # noqa: S603
                                stderr=subprocess.STDOUT, text=True)

    def finished(run: subprocess.Popen[str], items: int) -> None:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output
        assert f"stored conversation ({items} items" in output and "[secret:vault:" in output

    # Its own temporary store and a named one are independent: they run side by side.
    with start([]) as own, start([str(tmp_path / "store")]) as named:
        finished(own, 6)
        finished(named, 6)
    with start([str(tmp_path / "store")]) as again:
        finished(again, 12)  # the named store continues


# -- crashes -----------------------------------------------------------------------------------------

def spawn(root: Path | str, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, str(root), mode], stdin=subprocess.PIPE,  # noqa: S603
                            stdout=subprocess.PIPE, text=True, env=child_env(), cwd=REPO)


def batches_of(lines: list[str]) -> tuple[list[list[Any]], list[Any] | None]:
    """The batches the child was told were stored, and the one it was writing (if any)."""
    acked: list[list[Any]] = []
    writing = None
    for line in lines:
        word, _, payload = line.partition(" ")
        if word == "begin":
            writing = json.loads(payload)
        elif word == "ack":
            acked.append(json.loads(payload))
            writing = None
    return acked, writing


def check_after_kill(root: Path | str, lines: list[str], before: list[Any]) -> list[Any]:
    acked, writing = batches_of(lines)
    expected = before + [item for batch in acked for item in batch]
    with open_sync(root) as store:
        stored = store.read_items("crash", resolve=True)  # the tool output's secret, as the child wrote it
        # Every acknowledged batch, in order; the one being written is there whole or not at all.
        assert stored == expected or (writing is not None and stored == expected + writing)
        assert verify_store(store).ok
    return stored


@pytest.mark.crash
def test_a_runner_killed_mid_run_loses_no_acknowledged_add_items(root: Path | str) -> None:
    # kill -9 wherever the free-running child happens to be, after at least 12 acknowledged writes
    child = spawn(root, "run")
    assert child.stdout is not None
    lines: list[str] = []
    while sum(line.startswith("ack ") for line in lines) < 12:
        line = child.stdout.readline()
        assert line, "the child exited early"
        lines.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)
    lines += [line.strip() for line in child.stdout.read().splitlines()]  # acks still in the pipe
    child.wait(60)
    stored = check_after_kill(root, lines, [])
    # ...then a child killed exactly between two steps of a run: the tool step stored, the
    # final message not yet (the killed child's lock is taken over: its holder is dead)
    child = spawn(root, "pause")
    assert child.stdout is not None
    lines = []
    while not lines or lines[-1] != "paused":
        line = child.stdout.readline()
        assert line, "the child exited early"
        lines.append(line.strip())
    os.kill(child.pid, signal.SIGKILL)
    child.wait(60)
    after = check_after_kill(root, lines, stored)
    assert kinds(after[-3:]) == ["user", "function_call", "function_call_output"]


async def _child(root: str, mode: str) -> None:
    store = SecureStore(root, StoreConfig(lock_timeout_seconds=30), master_key=MASTER_KEY, environ=KEYS)
    if mode == "hold":
        session = SecureStoreSession("crash", store)
        await session.add_items([{"role": "user", "content": "held"}])
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.read)
        await session.close()
        return

    class Acknowledging(SecureStoreSession):
        async def add_items(self, items: list[Any], *, wrapper: Any = None) -> None:
            print("begin", json.dumps(items), flush=True)
            await super().add_items(items, wrapper=wrapper)
            print("ack", json.dumps(items), flush=True)  # only once the write returned: durable
            if mode == "pause" and items[-1].get("type") == "function_call_output":
                print("paused", flush=True)
                await asyncio.to_thread(sys.stdin.read)  # killed here, between two steps

    session = Acknowledging("crash", store)
    for turn in range(100_000):
        model = scripted(f"done {turn}", call_id=f"call-{turn}")
        await Runner.run(agent(model), f"turn {turn}", session=session)


if __name__ == "__main__":
    asyncio.run(_child(sys.argv[1], sys.argv[2]))
