"""SecureStoreSaver under LangGraph's real runtime (StateGraph + a fake chat model, no network):
sync and async runs, reopen and resume, secrets in state, the serializer's allowlist, retention,
concurrent writers, caps and a kill -9 between two steps."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypedDict

import orjson
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, AnyMessage, HumanMessage, ToolMessage
from langgraph.channels.delta import DeltaChannel
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages

import securestore
from securestore import (
    IntegrityError,
    InvalidValueError,
    LimitExceededError,
    Limits,
    LockHeldError,
    SecureStore,
    StoreConfig,
    UsageError,
    aio,
    verify_store,
)
from securestore.integrations.langgraph import JsonStateSerializer, Retention, SecureStoreSaver
from securestore.core.policy import encode_name
from tests.support.keys import KEYS, MASTER_KEY
from tests.support.pg_stores import all_stored, cancel_inside_a_write

pytestmark = pytest.mark.both_backends  # each test with a store runs on a directory and on PostgreSQL

REPO = Path(__file__).resolve().parents[2]
TOKEN = "ghp_" + "Zq7X" * 9  # a GitHub token shape the detectors find
PASSWORD = "correct-horse-battery-staple-42"


class ChatState(TypedDict, total=False):
    messages: Annotated[list[AnyMessage], add_messages]
    profile: dict[str, Any]


def build_graph(saver: SecureStoreSaver, seen: list[list[Any]] | None = None) -> Any:
    """START -> bot (fake model) -> tool -> END; `seen` records what the bot was given."""
    model = GenericFakeChatModel(messages=itertools.cycle([AIMessage(content="let me check"), "done"]))

    def bot(state: ChatState) -> dict[str, Any]:
        if seen is not None:
            seen.append([m.content for m in state["messages"]])
        return {"messages": [model.invoke(state["messages"])]}

    async def abot(state: ChatState) -> dict[str, Any]:
        if seen is not None:
            seen.append([m.content for m in state["messages"]])
        return {"messages": [await model.ainvoke(state["messages"])]}

    def tool(state: ChatState) -> dict[str, Any]:
        return {"messages": [ToolMessage(content=f"{len(state['messages'])} messages so far", tool_call_id="call-1")]}

    builder = StateGraph(ChatState)
    from langchain_core.runnables import RunnableLambda
    builder.add_node("bot", RunnableLambda(bot, afunc=abot))
    builder.add_node("tool", tool)
    builder.add_edge(START, "bot")
    builder.add_edge("bot", "tool")
    builder.add_edge("tool", END)
    return builder.compile(checkpointer=saver)


def cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def open_store(root: Path | str, config: StoreConfig | None = None) -> SecureStore:
    return securestore.open_store(root, config, master_key=MASTER_KEY, environ=KEYS)


def files_under(root: Path | str) -> Iterator[tuple[str, bytes]]:
    """Every place the store keeps bytes (files, or rows on PostgreSQL), names included."""
    yield from all_stored(root).items()


def assert_not_stored(root: Path | str, *values: str) -> None:
    """No value in any byte the store keeps; the references stored in their place are seen."""
    stored = dict(files_under(root))
    assert any(b"[secret:vault:" in data for data in stored.values())  # the scan reads what was written
    for path, data in stored.items():
        for value in values:
            assert value.encode() not in data, path


# -- a real graph, sync and async ---------------------------------------------------------------
def test_a_sync_graph_checkpoints_reopens_resumes_and_shows_its_history(root: Path | str) -> None:
    with open_store(root) as store:
        graph = build_graph(SecureStoreSaver(store))
        out = graph.invoke({"messages": [HumanMessage(content="hi")]}, cfg("t1"))
        assert [type(m).__name__ for m in out["messages"]] == ["HumanMessage", "AIMessage", "ToolMessage"]
    with open_store(root) as store:  # a new handle: everything came from disk
        saver = SecureStoreSaver(store)
        graph = build_graph(saver)
        state = graph.get_state(cfg("t1"))
        assert [m.content for m in state.values["messages"]] == ["hi", "let me check", "2 messages so far"]
        out = graph.invoke({"messages": [HumanMessage(content="again")]}, cfg("t1"))
        assert len(out["messages"]) == 6 and out["messages"][-1].content == "5 messages so far"
        history = list(graph.get_state_history(cfg("t1")))
        assert len(history) == 8  # 4 checkpoints per invoke: input, bot, tool, end
        assert [h.metadata["step"] for h in history[:4]] == [6, 5, 4, 3]
        assert history[0].values["messages"][-1].content == "5 messages so far"
        ids = [h.config["configurable"]["checkpoint_id"] for h in history]
        assert ids == sorted(ids, reverse=True)
        assert [t for t in saver.thread_ids()] == ["t1"]
        assert verify_store(store).ok


def test_an_async_graph_uses_the_async_methods_and_resumes_from_a_new_handle(root: Path | str) -> None:
    async def main() -> None:
        async with await aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as store:
            graph = build_graph(SecureStoreSaver(store))
            await graph.ainvoke({"messages": [HumanMessage(content="hi")]}, cfg("a1"))
            await graph.ainvoke({"messages": [HumanMessage(content="more")]}, cfg("a1"))
        async with await aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as store:
            saver = SecureStoreSaver(store)
            graph = build_graph(saver)
            state = await graph.aget_state(cfg("a1"))
            assert len(state.values["messages"]) == 6
            await graph.ainvoke({"messages": [HumanMessage(content="third")]}, cfg("a1"))
            history = [h async for h in graph.aget_state_history(cfg("a1"))]
            assert len(history) == 12
            assert history[0].values["messages"][-1].content == "8 messages so far"
            assert not store.interrupted
            assert (await store.verify()).ok

    asyncio.run(main())


def test_a_cancelled_aput_completes_in_its_thread_and_is_recorded(root: Path | str) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    async def main() -> None:
        async with await aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as store:
            saver = SecureStoreSaver(store)
            config: Any = {"configurable": {"thread_id": "cx", "checkpoint_ns": ""}}
            first = await saver.aput(config, empty_checkpoint(), {}, {})
            checkpoint = empty_checkpoint()
            outcome, note = await cancel_inside_a_write(store, root, saver.aput(first, checkpoint, {}, {}))
            assert (outcome.operation, outcome.session, outcome.completed, outcome.error) == (
                "langgraph.put", "langgraph:cx", True, None)
            assert "completed" in note
            latest = await saver.aget_tuple({"configurable": {"thread_id": "cx"}})
            assert latest is not None and latest.checkpoint["id"] == checkpoint["id"]  # durable, whole
            assert (await store.verify()).ok

    asyncio.run(main())


def test_list_none_pages_the_listing_index_and_skips_foreign_sessions(root: Path | str) -> None:
    with open_store(root) as store:
        saver = SecureStoreSaver(store)
        graph = build_graph(saver)
        for thread in ("x", "y"):
            graph.invoke({"messages": [HumanMessage(content=thread)]}, cfg(thread))
        store.put("not-a-thread", "ext.x", 1)  # another user of the store
        every = list(saver.list(None))
        assert {t.config["configurable"]["thread_id"] for t in every} == {"x", "y"} and len(every) == 8
        assert len(list(saver.list(None, limit=5))) == 5
        assert len(list(saver.list(None, filter={"source": "input"}))) == 2
        assert saver.thread_ids() == ["y", "x"]  # most recently written first


def test_special_writes_overwrite_and_regular_ones_are_idempotent(root: Path | str) -> None:
    with open_store(root) as store:
        saver = SecureStoreSaver(store)
        from langgraph.checkpoint.base import empty_checkpoint
        stored = saver.put({"configurable": {"thread_id": "w", "checkpoint_ns": ""}}, empty_checkpoint(), {}, {})
        saver.put_writes(stored, [("a", 1), ("__interrupt__", "first")], "task", "p")
        saver.put_writes(stored, [("a", 2), ("__interrupt__", "second")], "task", "p")
        pending = saver.get_tuple(stored).pending_writes
        assert pending == [("task", "__interrupt__", "second"), ("task", "a", 1)]


# -- secrets in state ---------------------------------------------------------------------------
def run_secret_conversation(store: SecureStore, *, resolve: bool = False) -> None:
    graph = build_graph(SecureStoreSaver(store, resolve_secrets=resolve))
    graph.invoke({"messages": [HumanMessage(content=f"my token is {TOKEN}")], "profile": {"password": PASSWORD}},
                 cfg("s1"))


def test_secrets_in_state_come_back_as_references_by_default_and_never_reach_the_disk(root: Path | str) -> None:
    with open_store(root) as store:
        run_secret_conversation(store)
        seen: list[list[Any]] = []
        graph = build_graph(SecureStoreSaver(store), seen)
        state = graph.get_state(cfg("s1"))
        assert state.values["messages"][0].content.startswith("my token is [secret:vault:")
        assert state.values["profile"]["password"].startswith("[secret:vault:")
        graph.invoke({"messages": [HumanMessage(content="go on")]}, cfg("s1"))
        assert TOKEN not in repr(seen) and "[secret:vault:" in seen[-1][0]  # the model got the reference
        assert verify_store(store).ok
    assert_not_stored(root, TOKEN, PASSWORD)


def test_resolve_secrets_gives_the_graph_the_values_back_in_memory_only(root: Path | str) -> None:
    with open_store(root) as store:
        run_secret_conversation(store)
        seen: list[list[Any]] = []
        graph = build_graph(SecureStoreSaver(store, resolve_secrets=True), seen)
        state = graph.get_state(cfg("s1"))
        assert state.values["messages"][0].content == f"my token is {TOKEN}"
        assert state.values["profile"] == {"password": PASSWORD}
        graph.invoke({"messages": [HumanMessage(content="go on")]}, cfg("s1"))
        assert seen[-1][0] == f"my token is {TOKEN}"
        assert verify_store(store).ok
    assert_not_stored(root, TOKEN, PASSWORD)


# -- the serializer: only listed types are revived ---------------------------------------------
def test_a_planted_payload_naming_a_class_is_never_imported_or_called(root: Path | str, tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "planted_mod.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n"
        "class Boom:\n    def __init__(self, *a, **k):\n        pathlib.Path("
        f"{str(marker)!r}).write_text('called')\n")
    sys.path.insert(0, str(tmp_path))
    try:
        with open_store(root) as store:
            saver = SecureStoreSaver(store)
            from langgraph.checkpoint.base import empty_checkpoint
            good = saver.put({"configurable": {"thread_id": "p", "checkpoint_ns": ""}}, empty_checkpoint(), {}, {})
            planted = [
                {"~lg": "msg", "type": "planted_mod.Boom", "data": {}},
                {"~lg": "obj", "name": "planted_mod.Boom", "data": {}},
                {"~lg": "planted_mod.Boom", "data": {}},
                {"~lg": "msg", "type": "os.system", "data": {"content": "touch " + str(marker)}},
            ]
            lc_constructor = {"lc": 1, "type": "constructor", "id": ["planted_mod", "Boom"], "kwargs": {}}
            for index, value in enumerate(planted):
                with store.open_session(saver.session_key("p")) as session:  # the store's audited write path
                    session.append_items([{
                        "lg": "checkpoint", "v": 1, "ns": "", "id": f"zz-{index}", "parent": None, "ts": "",
                        "run": None, "values": ["x"], "delta": [],
                        "checkpoint": {"v": 1, "id": f"zz-{index}", "ts": "", "channel_versions": {},
                                       "versions_seen": {}, "updated_channels": None,
                                       "channel_values": {"x": value}},
                        "metadata": {}}])
                with pytest.raises((UsageError, IntegrityError)) as caught:
                    saver.get_tuple(cfg("p"))
                assert "planted_mod" not in sys.modules and not marker.exists()
                assert len(str(caught.value).splitlines()) == 1
            # a LangChain "lc constructor" dict is plain data here: it loads as the dict it is
            loaded = saver.codec.from_json({"x": lc_constructor})
            assert loaded == {"x": lc_constructor}
            assert saver.get_tuple(good) is not None  # the good checkpoint is still readable by id
        with pytest.raises(IntegrityError):  # msgpack bytes are never decoded
            saver.codec.loads_typed(JsonPlusSerializer().dumps_typed(HumanMessage(content="x")))
        assert "planted_mod" not in sys.modules and not marker.exists()
    finally:
        sys.path.remove(str(tmp_path))


@dataclass
class Ticket:
    number: int
    tags: tuple[str, ...]


@dataclass
class Unregistered:
    x: int


def test_the_serializer_round_trips_what_langgraph_stores_and_refuses_the_rest() -> None:
    import datetime as dt
    import uuid
    from langgraph.checkpoint.serde.types import _DeltaSnapshot
    from langgraph.types import Interrupt, Send
    codec = JsonStateSerializer(allowed_types=[Ticket])
    value = {
        "messages": [HumanMessage(content="hi", id="1"), AIMessage(content="", tool_calls=[
            {"name": "f", "args": {"a": 1}, "id": "c"}]), ToolMessage(content="r", tool_call_id="c")],
        "__start__": (1, "a", b"\x00\xff"), "set": {1, 2}, "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "id": uuid.UUID(int=7), "big": 1 << 80, "inf": float("inf"), 3: "int key", "~lg": "tag key",
        "ticket": Ticket(7, ("a",)), "send": Send("node", {"x": 1}), "interrupt": Interrupt(value="ask", id="i1"),
        "delta": _DeltaSnapshot(["a"]),
    }
    encoded = codec.to_json(value)
    orjson.dumps(encoded)  # plain JSON, nothing opaque
    assert codec.from_json(orjson.loads(orjson.dumps(encoded))) == value
    with pytest.raises(InvalidValueError, match=r"Unregistered.*allowed_types"):
        codec.to_json({"messages": [Unregistered(1)]})
    with pytest.raises(UsageError, match="registered type 'Ticket'"):
        JsonStateSerializer().from_json(encoded)  # a name only revives through a registration
    with pytest.raises(UsageError, match="JsonStateSerializer"):
        SecureStoreSaver.__new__(SecureStoreSaver).__init__(None, serde=JsonPlusSerializer())  # type: ignore[arg-type]


def test_a_state_type_the_serializer_cannot_revive_is_refused_at_write_time(root: Path | str) -> None:
    class Odd(TypedDict):
        thing: Any

    def node(state: Odd) -> dict[str, Any]:
        return {"thing": Unregistered(1)}

    with open_store(root) as store:
        builder = StateGraph(Odd)
        builder.add_node("n", node)
        builder.add_edge(START, "n")
        graph = builder.compile(checkpointer=SecureStoreSaver(store))
        with pytest.raises(InvalidValueError, match=r"Unregistered cannot be stored"):
            graph.invoke({"thing": 1}, cfg("odd"))
        registered = builder.compile(checkpointer=SecureStoreSaver(store, allowed_types=[Unregistered]))
        registered.invoke({"thing": 1}, cfg("ok"))
        assert registered.get_state(cfg("ok")).values["thing"] == Unregistered(1)


# -- retention ----------------------------------------------------------------------------------
def journal_bytes(root: Path | str) -> int:
    return sum(len(data) for path, data in files_under(root)
               if path.startswith("sessions/") and path.rsplit("/", 1)[-1].startswith("journal"))


def test_keep_last_bounds_a_thread_frees_the_disk_keeps_secrets_and_is_audited(root: Path | str) -> None:
    with open_store(root) as store:
        # the token is in the first message, kept by every checkpoint; resolve mode throughout, so the
        # graph writes the values back (re-redacted) and every checkpoint's reference stays resolvable
        run_secret_conversation(store, resolve=True)
        graph = build_graph(SecureStoreSaver(store, resolve_secrets=True))
        for turn in range(10):
            graph.invoke({"messages": [HumanMessage(content=f"turn {turn} " + "x" * 2000)]}, cfg("s1"))
        before = journal_bytes(root)
        assert len(list(graph.get_state_history(cfg("s1")))) == 44
        saver = SecureStoreSaver(store, retention=Retention(keep_last=3), resolve_secrets=True)
        assert saver.apply_retention("s1") == 41
        history = list(saver.list(cfg("s1")))
        assert len(history) == 3 and history[0].checkpoint["channel_values"]["messages"][0].content.endswith(TOKEN)
        assert journal_bytes(root) < before / 5  # the dropped checkpoints left the disk
        graph = build_graph(saver)
        for turn in range(7):  # applied by itself every 3 puts
            graph.invoke({"messages": [HumanMessage(content=f"later {turn}")]}, cfg("s1"))
            assert len(list(saver.list(cfg("s1")))) <= 3 + 2
        assert graph.get_state(cfg("s1")).values["messages"][0].content == f"my token is {TOKEN}"
        assert verify_store(store).ok
        session_log = dict(files_under(root))[f"sessions/{encode_name(saver.session_key('s1'))}/audit/log.jsonl"]
        log = [orjson.loads(line) for line in session_log.splitlines()]
        # the retention turn sealed the journal and dropped the old segments: recorded before it happened
        assert any(r.get("op") == "journal.seal" and any(a["sha256"] is None for a in r.get("also", [])) for r in log)
    assert_not_stored(root, TOKEN, PASSWORD)


def test_max_age_drops_old_checkpoints_but_keeps_each_namespace_head(root: Path | str) -> None:
    now = [2_000_000_000.0]
    with open_store(root) as store:
        saver = SecureStoreSaver(store, retention=Retention(max_age_seconds=3600, every=1000), clock=lambda: now[0])
        graph = build_graph(saver)
        graph.invoke({"messages": [HumanMessage(content="hi")]}, cfg("ttl"))
        checkpoint_time = max(t.checkpoint["ts"] for t in saver.list(cfg("ttl")))
        import datetime as dt
        now[0] = dt.datetime.fromisoformat(checkpoint_time).timestamp() + 1800
        assert saver.apply_retention("ttl") == 0  # all younger than an hour
        now[0] += 3600
        assert saver.apply_retention("ttl") == 3
        assert len(list(saver.list(cfg("ttl")))) == 1
        assert len(graph.get_state(cfg("ttl")).values["messages"]) == 3
        assert verify_store(store).ok


def test_max_age_reads_the_store_clock_by_default(root: Path | str) -> None:
    from langgraph.checkpoint.base import empty_checkpoint

    now_ms = [4_070_908_800_000]  # 2099-01-01: far from the wall clock, so only the store's clock can age these
    with open_store_at(root, lambda: now_ms[0]) as store:
        saver = SecureStoreSaver(store)
        config: Any = {"configurable": {"thread_id": "clock", "checkpoint_ns": ""}}
        for minute in range(3):
            checkpoint = empty_checkpoint()
            checkpoint["ts"] = f"2099-01-01T00:0{minute}:00+00:00"
            config = saver.put(config, checkpoint, {}, {})
        assert saver.apply_retention("clock", Retention(max_age_seconds=3600)) == 0
        now_ms[0] += 2 * 3600 * 1000
        assert saver.apply_retention("clock", Retention(max_age_seconds=3600)) == 2  # the head stays
        assert verify_store(store).ok


def open_store_at(root: Path | str, clock: Any) -> SecureStore:
    return securestore.open_store(root, master_key=MASTER_KEY, environ=KEYS, clock=clock)


def extend(state: list[str], writes: Any) -> list[str]:
    return state + [item for write in writes for item in write]


class DeltaState(TypedDict):
    items: Annotated[list[str], DeltaChannel(extend, snapshot_frequency=4)]


def test_prune_keeps_what_a_delta_channel_is_rebuilt_from(root: Path | str) -> None:
    def add(state: DeltaState) -> dict[str, Any]:
        return {"items": [f"n{len(state['items'])}"]}

    builder = StateGraph(DeltaState)
    builder.add_node("add", add)
    builder.add_edge(START, "add")
    builder.add_edge("add", END)
    reference = builder.compile(checkpointer=InMemorySaver())
    for _ in range(5):
        reference.invoke({"items": ["in"]}, cfg("d"))
    expected = reference.get_state(cfg("d")).values["items"]
    assert len(expected) == 10
    with open_store(root) as store:
        saver = SecureStoreSaver(store)
        graph = builder.compile(checkpointer=saver)
        for _ in range(5):
            graph.invoke({"items": ["in"]}, cfg("d"))
        assert graph.get_state(cfg("d")).values["items"] == expected
        latest = saver.get_tuple(cfg("d"))
        assert "items" not in latest.checkpoint["channel_values"]  # rebuilt from ancestors' writes
        saver.prune(["d"])
        kept = list(saver.list(cfg("d")))
        assert 1 < len(kept) < 15  # more than the head (its delta ancestors), fewer than before
        assert graph.get_state(cfg("d")).values["items"] == expected
        graph.invoke({"items": ["after"]}, cfg("d"))
        assert graph.get_state(cfg("d")).values["items"] == [*expected, "after", "n11"]
        assert verify_store(store).ok


# -- concurrency, caps --------------------------------------------------------------------------
CHILD = """
import sys
sys.path.insert(0, {repo!r})
from tests.integrations.test_langgraph import child_main
child_main(sys.argv[1:])
"""


class AckSaver(SecureStoreSaver):
    def put(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        stored = super().put(config, checkpoint, metadata, new_versions)
        print("ack", stored["configurable"]["thread_id"], checkpoint["id"], flush=True)  # after the put returned
        return stored


def child_main(argv: list[str]) -> None:
    root, thread, turns = argv[0], argv[1], int(argv[2])
    with open_store(root) as store:  # a directory or a postgresql:// URL
        graph = build_graph(AckSaver(store))
        for turn in itertools.count() if turns < 0 else range(turns):
            graph.invoke({"messages": [HumanMessage(content=f"{thread} turn {turn}")]}, cfg(thread))
    print("done", flush=True)


def spawn(root: Path | str, thread: str, turns: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", CHILD.format(repo=str(REPO)), str(root), thread, str(turns)],
                            stdout=subprocess.PIPE, text=True, cwd=str(REPO))


def acked(lines: list[str]) -> list[str]:
    return [line.split()[2] for line in lines if line.startswith("ack ")]


def test_two_processes_writing_one_thread_are_serialised_and_lose_nothing(root: Path | str) -> None:
    children = [spawn(root, "shared", 5), spawn(root, "shared", 5)]
    outputs = [child.communicate(timeout=120)[0].splitlines() for child in children]
    assert [child.returncode for child in children] == [0, 0]
    ids = [checkpoint for lines in outputs for checkpoint in acked(lines)]
    assert len(ids) == 40 and all(lines[-1] == "done" for lines in outputs)
    with open_store(root) as store:
        saver = SecureStoreSaver(store)
        assert {t.checkpoint["id"] for t in saver.list(cfg("shared"))} == set(ids)
        assert verify_store(store).ok


def test_a_writer_that_cannot_get_the_thread_lock_gets_lock_held_error(root: Path | str) -> None:
    with open_store(root, StoreConfig(lock_timeout_seconds=0)) as store:
        graph = build_graph(SecureStoreSaver(store))
        graph.invoke({"messages": [HumanMessage(content="hi")]}, cfg("busy"))
        with open_store(root) as other, other.open_session("langgraph:busy"):  # someone holds the thread
            with pytest.raises(LockHeldError, match="held"):
                graph.invoke({"messages": [HumanMessage(content="blocked")]}, cfg("busy"))
        graph.invoke({"messages": [HumanMessage(content="free again")]}, cfg("busy"))
        assert verify_store(store).ok


def test_a_state_over_the_value_cap_is_refused_with_a_clear_error(root: Path | str) -> None:
    with open_store(root, StoreConfig(limits=Limits(max_value_bytes=8192))) as store:
        graph = build_graph(SecureStoreSaver(store))
        with pytest.raises(LimitExceededError) as caught:
            graph.invoke({"messages": [HumanMessage(content="y" * 10_000)]}, cfg("big"))
        message = str(caught.value)
        assert "langgraph checkpoint rejected" in message and "exceeds 8192" in message and "trim the state" in message
        assert "yyyy" not in message and len(message.splitlines()) == 1
        assert verify_store(store).ok


def test_a_bad_thread_id_is_refused_by_the_store_key_policy(root: Path | str) -> None:
    with open_store(root) as store:
        graph = build_graph(SecureStoreSaver(store, key_prefix="lg-"))
        with pytest.raises(securestore.SecretInKeyError):
            graph.invoke({"messages": [HumanMessage(content="hi")]}, cfg(TOKEN))


# -- crash --------------------------------------------------------------------------------------
@pytest.mark.crash
def test_kill_9_between_steps_keeps_every_acknowledged_checkpoint(root: Path | str) -> None:
    child = spawn(root, "crash", -1)
    assert child.stdout is not None
    lines: list[str] = []
    while len(acked(lines)) < 13:  # mid-invoke: after the bot step of the fourth run
        line = child.stdout.readline()
        assert line, "the child ended early"
        lines.append(line)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    ids = acked(lines)
    with open_store(root) as store:
        saver = SecureStoreSaver(store)
        stored = {t.checkpoint["id"] for t in saver.list(cfg("crash"))}
        assert set(ids) <= stored
        graph = build_graph(saver)
        graph.invoke({"messages": [HumanMessage(content="after the crash")]}, cfg("crash"))  # resumes
        assert verify_store(store).ok


# -- the example --------------------------------------------------------------------------------
# Directory only: the example program makes its store (and key files) in the directory it is given.
def test_the_example_runs_and_verifies(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY")}
    done = subprocess.run([sys.executable, str(REPO / "examples" / "langgraph_example.py"), str(tmp_path / "store")],
                          capture_output=True, text=True, timeout=120, env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "audit verify: ok" in done.stdout


def test_hold_sessions_keeps_the_thread_lock_until_close(root: Path | str) -> None:
    with open_store(root, StoreConfig(lock_timeout_seconds=0)) as store:
        with SecureStoreSaver(store, hold_sessions=True) as saver:
            graph = build_graph(saver)
            graph.invoke({"messages": [HumanMessage(content="hi")]}, cfg("h"))
            with open_store(root, StoreConfig(lock_timeout_seconds=0)) as other, pytest.raises(LockHeldError):
                other.open_session("langgraph:h")
            graph.invoke({"messages": [HumanMessage(content="again")]}, cfg("h"))
        with open_store(root) as other, other.open_session("langgraph:h"):
            pass  # released by close()
        assert len(list(SecureStoreSaver(store).list(cfg("h")))) == 8
        assert verify_store(store).ok


def test_typed_secrets_in_a_registered_model_are_vaulted_not_stringified(root: Path | str) -> None:
    from langgraph.checkpoint.base import empty_checkpoint
    from pydantic import BaseModel, SecretStr

    class Creds(BaseModel):
        user: str
        api: SecretStr

    value = "plain-looking-" + "q" * 20  # no detector would find it: only its type says it is secret
    with open_store(root) as store:
        saver = SecureStoreSaver(store, allowed_types=[Creds])
        checkpoint = empty_checkpoint()
        checkpoint["channel_values"] = {"creds": Creds(user="bob", api=SecretStr(value))}
        stored = saver.put({"configurable": {"thread_id": "c", "checkpoint_ns": ""}}, checkpoint, {}, {})
        loaded = saver.get_tuple(stored).checkpoint["channel_values"]["creds"]
        assert loaded.user == "bob" and loaded.api.get_secret_value().startswith("[secret:vault:")
        resolved = SecureStoreSaver(store, allowed_types=[Creds], resolve_secrets=True).get_tuple(stored)
        assert resolved.checkpoint["channel_values"]["creds"].api.get_secret_value() == value
    assert_not_stored(root, value)
