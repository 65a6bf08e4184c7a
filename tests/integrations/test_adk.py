"""SecureStoreSessionService through ADK's real Runner with a fake model (no network, no key)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncGenerator, Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from google.adk.agents import LlmAgent
from google.adk.agents.run_config import RunConfig
from google.adk.errors import StaleSessionError
from google.adk.errors.already_exists_error import AlreadyExistsError as AdkAlreadyExistsError
from google.adk.errors.session_not_found_error import SessionNotFoundError
from google.adk.events.event import Event
from google.adk.events.event_actions import EventActions
from google.adk.models.base_llm import BaseLlm
from google.adk.models.llm_request import LlmRequest
from google.adk.models.llm_response import LlmResponse
from google.adk.runners import Runner
from google.adk.sessions.base_session_service import GetSessionConfig
from google.adk.sessions.session import Session as AdkSession
from google.adk.tools.tool_context import ToolContext
from google.genai import types

import securestore
from securestore import LimitExceededError, SecureStore, StoreConfig, verify_store
from securestore.config import Limits
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from securestore.integrations import adk_state
from securestore.integrations.adk import (
    SESSION_SLOT,
    STATE_SLOT,
    SecureStoreSessionService,
    app_state_key,
    session_key,
    user_state_key,
)

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # the crash child runs this file as a script
    sys.path.insert(0, str(REPO))

from tests.support.keys import KEYS, MASTER_KEY  # noqa: E402
from tests.support.pg_stores import all_stored_bytes, metered  # noqa: E402

pytestmark = pytest.mark.both_backends  # each test with a store runs on a directory and on PostgreSQL

APP = "support"
TOKEN = "ghp_" + "Q7w9" * 9  # a GitHub token shape: the detectors vault it
TEMP_VALUE = "temp-scratch-value-4711"


class FakeLlm(BaseLlm):
    """Calls `remember` with the user's text, then answers; keeps every request's text."""

    model: str = "fake"
    seen: list[str] = []

    async def generate_content_async(self, llm_request: LlmRequest,
                                     stream: bool = False) -> AsyncGenerator[LlmResponse, None]:
        text = " | ".join(part.text or str(part.function_response or part.function_call or "")
                          for content in llm_request.contents for part in content.parts or [])
        self.seen.append(text)
        last = llm_request.contents[-1]
        if last.parts and last.parts[0].function_response is None:
            fact = last.parts[0].text or ""
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(
                function_call=types.FunctionCall(name="remember", args={"fact": fact}))]))
        else:
            yield LlmResponse(content=types.Content(role="model", parts=[types.Part(text="done")]))


def remember(fact: str, tool_context: ToolContext) -> dict[str, Any]:
    """Remember a fact."""
    state = tool_context.state
    state["last_fact"] = fact
    state["user:facts_seen"] = int(state.get("user:facts_seen", 0)) + 1
    state["app:version"] = "v1"
    state["temp:scratch"] = TEMP_VALUE
    return {"ok": True}


def open_store(root: Path | str, **kwargs: Any) -> SecureStore:
    return securestore.open_store(root, master_key=MASTER_KEY, environ=KEYS, **kwargs)


def runner(service: SecureStoreSessionService, llm: FakeLlm | None = None) -> Runner:
    agent = LlmAgent(name="helper", model=llm or FakeLlm(), instruction="help", tools=[remember])
    return Runner(app_name=APP, agent=agent, session_service=service)


async def turn(run: Runner, text: str, user: str = "u1", sid: str = "s1",
               config: RunConfig | None = None) -> list[Event]:
    message = types.Content(role="user", parts=[types.Part(text=text)])
    return [event async for event in run.run_async(user_id=user, session_id=sid, new_message=message,
                                                   run_config=config)]


def disk_bytes(root: Path | str) -> bytes:
    """Every byte the store keeps: its files, or its rows on PostgreSQL (names included)."""
    return all_stored_bytes(root)


def event_at(ts: float, text: str, delta: dict[str, Any] | None = None) -> Event:
    return Event(author="user", invocation_id="inv", timestamp=ts, actions=EventActions(state_delta=delta or {}),
                 content=types.Content(role="user", parts=[types.Part(text=text)]))


@pytest.fixture
def store(root: Path | str) -> Iterator[SecureStore]:
    with open_store(root) as handle:
        yield handle


# -- the runner, prefixes, temp: -----------------------------------------------------------------
def test_a_runner_turn_stores_every_event_and_each_scope_once(store: SecureStore, root: Path | str) -> None:
    async def main() -> None:
        service = SecureStoreSessionService(store)
        await service.create_session(app_name=APP, user_id="u1", session_id="s1", state={"user:tier": "gold"})
        events = await turn(runner(service), "db down")
        assert len(events) == 3  # function call, function response, final text (+ the user message)
        session = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
        assert session is not None
        assert [e.author for e in session.events] == ["user", "helper", "helper", "helper"]
        assert session.events[2].actions.state_delta == {"last_fact": "db down", "user:facts_seen": 1,
                                                         "app:version": "v1"}
        assert session.state == {"last_fact": "db down", "user:facts_seen": 1, "user:tier": "gold",
                                 "app:version": "v1"}
        assert await service.get_user_state(app_name=APP, user_id="u1") == {"tier": "gold", "facts_seen": 1}
        # Stored once per scope, without the prefix.
        assert store.get(app_state_key(APP), STATE_SLOT) == {"version": "v1"}
        assert store.get(user_state_key(APP, "u1"), STATE_SLOT) == {"tier": "gold", "facts_seen": 1}
        assert store.get(session_key(APP, "u1", "s1"), SESSION_SLOT)["state"] == {"last_fact": "db down"}
        # Another session of the same user sees app: and user: state, not the other's session state.
        other = await service.create_session(app_name=APP, user_id="u1", session_id="s2")
        assert other.state == {"user:tier": "gold", "user:facts_seen": 1, "app:version": "v1"}
    asyncio.run(main())
    data = disk_bytes(root)
    assert b"db down" in data and b"facts_seen" in data  # the scan sees what the turn stored
    assert TEMP_VALUE.encode() not in data and b"temp:scratch" not in data
    assert verify_store(store).ok


def test_create_session_semantics(store: SecureStore) -> None:
    async def main() -> None:
        service = SecureStoreSessionService(store)
        made = await service.create_session(app_name=APP, user_id="u1", session_id=" padded ",
                                            state={"k": 1, "app:a": 2, "user:b": 3, "temp:t": 4})
        assert made.id == "padded" and made.events == []
        assert made.state == {"k": 1, "app:a": 2, "user:b": 3}
        with pytest.raises(AdkAlreadyExistsError):
            await service.create_session(app_name=APP, user_id="u1", session_id="padded")
        generated = await service.create_session(app_name=APP, user_id="u1")
        assert generated.id and generated.id != "padded"
        assert (await service.get_session(app_name=APP, user_id="u1", session_id=generated.id)) is not None
        empty = await service.get_session(app_name=APP, user_id="u1", session_id=generated.id)
        assert empty is not None and empty.events == [] and empty.state == {"app:a": 2, "user:b": 3}
        assert await service.get_session(app_name=APP, user_id="u1", session_id="missing") is None
        assert await service.get_session(app_name=APP, user_id="u2", session_id="padded") is None
        assert await service.get_user_state(app_name=APP, user_id="nobody") == {}
        partial = event_at(5.0, "stream chunk", {"k": 9})
        partial.partial = True
        assert await service.append_event(empty, partial) is partial
        again = await service.get_session(app_name=APP, user_id="u1", session_id=generated.id)
        assert again is not None and again.events == [] and "k" not in again.state
        with pytest.raises(SessionNotFoundError):
            await service.append_event(made.model_copy(update={"id": "gone"}), event_at(6.0, "x"))
    asyncio.run(main())


def test_keys_are_injective_for_names_holding_separators(store: SecureStore) -> None:
    async def main() -> None:
        service = SecureStoreSessionService(store)
        await service.create_session(app_name="a:b", user_id="c", session_id="d", state={"who": 1})
        await service.create_session(app_name="a", user_id="b:c", session_id="d", state={"who": 2})
        await service.create_session(app_name="a", user_id="b", session_id="c:d", state={"who": 3})
        await service.create_session(app_name="a%3Ab", user_id="c", session_id="d", state={"who": 4})
        for app, user, sid, who in (("a:b", "c", "d", 1), ("a", "b:c", "d", 2), ("a", "b", "c:d", 3),
                                    ("a%3Ab", "c", "d", 4)):
            got = await service.get_session(app_name=app, user_id=user, session_id=sid)
            assert got is not None and got.state == {"who": who}
        listed = await service.list_sessions(app_name="a")
        assert sorted((s.user_id, s.id) for s in listed.sessions) == [("b", "c:d"), ("b:c", "d")]
    asyncio.run(main())


# -- get_session(config) -------------------------------------------------------------------------
@pytest.mark.parametrize(("recent", "after", "expected"), [
    (None, None, list(range(10))),
    (0, None, []),
    (3, None, [7, 8, 9]),
    (20, None, list(range(10))),
    (None, 1005.0, [5, 6, 7, 8, 9]),
    (2, 1005.0, [8, 9]),
    (10, 1008.0, [8, 9]),
    (0, 1005.0, []),
    (None, 2000.0, []),
])
def test_get_session_config(store: SecureStore, recent: int | None, after: float | None,
                            expected: list[int]) -> None:
    async def main() -> None:
        service = SecureStoreSessionService(store)
        session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
        for i in range(10):
            await service.append_event(session, event_at(1000.0 + i, f"m{i}"))
        got = await service.get_session(app_name=APP, user_id="u1", session_id="s1",
                                        config=GetSessionConfig(num_recent_events=recent, after_timestamp=after))
        assert got is not None
        assert [int((e.content.parts or [])[0].text[1:]) for e in got.events if e.content] == expected  # type: ignore[index]
        assert got.last_update_time == 1009.0
        # Whatever part was read, the copy is current: the next append is accepted.
        await service.append_event(got, event_at(1010.0, "next"))
    asyncio.run(main())


def test_recent_events_read_costs_the_events_asked_for_not_the_session(root: Path | str) -> None:
    with open_store(root) as store:
        async def fill() -> None:
            service = SecureStoreSessionService(store)
            session = await service.create_session(app_name=APP, user_id="u1", session_id="long")
            for i in range(100):
                await service.append_event(session, event_at(1000.0 + i, f"message {i} " + "x" * 6000))
        asyncio.run(fill())

    def bytes_for(config: GetSessionConfig | None) -> int:
        # read OS calls' sizes on a directory; the bytes the server sends on PostgreSQL
        with metered(root) as (where, options, read), open_store(where, **options) as store:
            service = SecureStoreSessionService(store)
            read.reset()
            got = asyncio.run(service.get_session(app_name=APP, user_id="u1", session_id="long", config=config))
            assert got is not None
            return read.total

    everything = bytes_for(None)
    recent = bytes_for(GetSessionConfig(num_recent_events=5))
    assert everything > 100 * 6000
    assert recent < everything / 8  # the tail's last read chunk, whatever the session's length


# -- list_sessions -------------------------------------------------------------------------------
def test_list_sessions_order_filters_state_and_pages(root: Path | str) -> None:
    ticks = count(1_800_000_000_000, 7)
    with open_store(root, clock=lambda: next(ticks)) as store:
        async def main() -> None:
            service = SecureStoreSessionService(store)
            await service.create_session(app_name=APP, user_id="u1", session_id="a", state={"app:x": 1})
            await service.create_session(app_name=APP, user_id="u2", session_id="b", state={"user:y": 2})
            await service.create_session(app_name=APP, user_id="u1", session_id="c", state={"own": 3})
            await service.create_session(app_name="other", user_id="u1", session_id="z")
            first = await service.get_session(app_name=APP, user_id="u1", session_id="a")
            assert first is not None
            await service.append_event(first, event_at(1.0, "touch"))  # "a" becomes the latest
            mine = await service.list_sessions(app_name=APP, user_id="u1")
            assert [s.id for s in mine.sessions] == ["c", "a"]  # oldest update first
            assert all(s.events == [] and s.state == {"app:x": 1} for s in mine.sessions)
            assert mine.sessions[0].last_update_time < mine.sessions[1].last_update_time
            every = await service.list_sessions(app_name=APP)
            assert [(s.user_id, s.id) for s in every.sessions] == [("u2", "b"), ("u1", "c"), ("u1", "a")]
            assert (await service.list_sessions(app_name=APP, user_id="u9")).sessions == []
            assert [s.id for s in (await service.list_sessions(app_name="other")).sessions] == ["z"]
            # Pages: newest first, each session with its whole merged state.
            page, cursor = await service.list_sessions_page(app_name=APP, page_size=2)
            assert [s.id for s in page] == ["a", "c"] and cursor is not None
            assert page[1].state == {"own": 3, "app:x": 1}
            rest, end = await service.list_sessions_page(app_name=APP, page_size=2, cursor=cursor)
            assert [s.id for s in rest] == ["b"] and end is None
            assert rest[0].state == {"app:x": 1, "user:y": 2}
            page, cursor = await service.list_sessions_page(app_name=APP, user_id="u1", page_size=1)
            assert [s.id for s in page] == ["a"] and cursor is not None
            page, cursor = await service.list_sessions_page(app_name=APP, user_id="u1", page_size=1, cursor=cursor)
            assert [s.id for s in page] == ["c"]
            await service.delete_session(app_name=APP, user_id="u1", session_id="c")
            await service.delete_session(app_name=APP, user_id="u1", session_id="c")  # missing: no error
            assert [s.id for s in (await service.list_sessions(app_name=APP)).sessions] == ["b", "a"]
            assert await service.get_session(app_name=APP, user_id="u1", session_id="c") is None
        asyncio.run(main())
        assert verify_store(store).ok


def fill_120_sessions(root: Path | str) -> None:
    with open_store(root) as store:
        async def fill() -> None:
            service = SecureStoreSessionService(store)
            for i in range(120):
                await service.create_session(app_name=APP, user_id=f"u{i % 3}", session_id=f"s{i}",
                                             state={"user:n": i % 3} if i < 3 else None)
        asyncio.run(fill())


def test_list_sessions_builds_valid_sessions_from_the_index(root: Path | str) -> None:
    fill_120_sessions(root)
    with open_store(root) as store:
        service = SecureStoreSessionService(store)
        mine = asyncio.run(service.list_sessions(app_name=APP, user_id="u1"))
        every = asyncio.run(service.list_sessions(app_name=APP))
        page, _ = asyncio.run(service.list_sessions_page(app_name=APP, page_size=5))
    assert len(mine.sessions) == 40 and len(every.sessions) == 120 and len(page) == 5
    assert mine.sessions[0].state == {"user:n": 1}
    # Built without validation, yet valid ADK sessions: they round-trip and copy like validated ones.
    assert all(AdkSession.model_validate(s.model_dump()) == s for s in every.sessions)
    copy = every.sessions[0].model_copy(update={"state": {"x": 1}})
    assert copy.state == {"x": 1} and every.sessions[0].state == {} and copy._storage_update_marker is None


@pytest.mark.fs_only  # counts the files opened through the fs layer's OS calls: a PostgreSQL store opens none
def test_list_sessions_opens_no_session_file(root: Path) -> None:
    fill_120_sessions(root)
    opened: list[str] = []
    api = instrumented(REAL_OS, lambda name, args: opened.append(str(args[0])) if name == "open" else None)
    with open_store(root, os_api=api) as store:
        service = SecureStoreSessionService(store)
        opened.clear()
        mine = asyncio.run(service.list_sessions(app_name=APP, user_id="u1"))
        every = asyncio.run(service.list_sessions(app_name=APP))
        full = len(opened)
        opened.clear()
        page, _ = asyncio.run(service.list_sessions_page(app_name=APP, page_size=5))
        paged = len(opened)
    assert len(mine.sessions) == 40 and len(every.sessions) == 120
    # Reading the index and the app and user state sessions: a constant, not one per session.
    assert full < 40, opened
    assert len(page) == 5 and paged < 60


# -- restart, secrets ------------------------------------------------------------------------------
def test_a_new_store_handle_continues_where_the_last_one_stopped(root: Path | str) -> None:
    with open_store(root) as store:
        service = SecureStoreSessionService(store)
        asyncio.run(service.create_session(app_name=APP, user_id="u1", session_id="s1"))
        asyncio.run(turn(runner(service), "first"))

    async def second() -> None:
        async with await securestore.aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as astore:
            service = SecureStoreSessionService(astore)
            await turn(runner(service), "second")
            got = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
            assert got is not None and len(got.events) == 8
            assert got.state == {"last_fact": "second", "user:facts_seen": 2, "app:version": "v1"}
            assert (await astore.verify()).ok
    asyncio.run(second())


@pytest.mark.parametrize("resolve", [False, True])
def test_the_model_sees_a_reference_unless_asked_and_the_disk_never_holds_the_secret(root: Path | str,
                                                                                    resolve: bool) -> None:
    llm = FakeLlm(seen=[])
    with open_store(root) as store:
        service = SecureStoreSessionService(store, resolve_secrets=resolve)
        asyncio.run(service.create_session(app_name=APP, user_id="u1", session_id="s1",
                                           state={"user:api_key": TOKEN}))
        asyncio.run(turn(runner(service, llm), f"my token is {TOKEN}"))
        llm.seen.clear()
        asyncio.run(turn(runner(service, llm), "what was it?"))
        got = asyncio.run(service.get_session(app_name=APP, user_id="u1", session_id="s1"))
        assert got is not None
        if resolve:
            assert TOKEN in llm.seen[0] and got.state["user:api_key"] == TOKEN
        else:
            assert TOKEN not in " ".join(llm.seen) and "[secret:vault:" in llm.seen[0]
            assert got.state["user:api_key"].startswith("[secret:vault:")
            assert "[secret:vault:" in (got.events[0].content.parts or [])[0].text  # type: ignore[union-attr,operator]
        assert verify_store(store).ok
    data = disk_bytes(root)
    assert b"[secret:vault:" in data and TOKEN.encode() not in data  # references stored, never the token


# -- concurrency ------------------------------------------------------------------------------------
def test_a_stale_copy_is_refused_and_nothing_is_written(store: SecureStore) -> None:
    async def main() -> None:
        service = SecureStoreSessionService(store)
        await service.create_session(app_name=APP, user_id="u1", session_id="s1")
        one = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
        two = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
        assert one is not None and two is not None
        same_time = event_at(1000.0, "one")
        await service.append_event(one, same_time)
        with pytest.raises(StaleSessionError):
            await service.append_event(two, event_at(1000.0, "two"))  # equal timestamps: still caught
        await service.append_event(one, event_at(1000.0, "three"))  # equal timestamps: not falsely stale
        # A copy built by hand is current only if it ends with the stored last event.
        hand = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
        assert hand is not None
        hand._storage_update_marker = None
        await service.append_event(hand, event_at(1001.0, "four"))
        hand._storage_update_marker = None
        hand.events = hand.events[:-1]
        with pytest.raises(StaleSessionError):
            await service.append_event(hand, event_at(1002.0, "five"))
        # Deleted and created again: an old copy is stale, not appended to the new session.
        await service.delete_session(app_name=APP, user_id="u1", session_id="s1")
        with pytest.raises(SessionNotFoundError):
            await service.append_event(one, event_at(1003.0, "six"))
        await service.create_session(app_name=APP, user_id="u1", session_id="s1")
        with pytest.raises(StaleSessionError):
            await service.append_event(one, event_at(1003.0, "seven"))
        got = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
        assert got is not None and got.events == []
    asyncio.run(main())


class ReadsMeetFirst(SecureStoreSessionService):
    """The first `parties` get_session calls return together: two runners hold the same
    revision before either writes, whatever the scheduler does (no timing assumed)."""

    def __init__(self, store: SecureStore, parties: int) -> None:
        super().__init__(store)
        self.meet: asyncio.Barrier | None = asyncio.Barrier(parties)
        self.waiting = parties

    async def get_session(self, **kwargs: Any) -> Any:
        got = await super().get_session(**kwargs)
        if self.meet is not None and self.waiting > 0:
            self.waiting -= 1
            await self.meet.wait()
        return got


def test_two_runners_on_one_session_never_interleave(store: SecureStore) -> None:
    async def main() -> None:
        service = ReadsMeetFirst(store, parties=2)
        await service.create_session(app_name=APP, user_id="u1", session_id="s1")
        results = await asyncio.gather(turn(runner(service), "alpha"), turn(runner(service), "beta"),
                                       return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        assert len(failed) == 1 and isinstance(failed[0], StaleSessionError)
        got = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
        assert got is not None and len(got.events) == 4
        assert len({e.invocation_id for e in got.events}) == 1  # one runner's whole turn, nothing of the other
        await turn(runner(service), "gamma")  # a fresh read goes on
    asyncio.run(main())
    assert verify_store(store).ok


def test_an_oversized_event_is_refused_whole(root: Path | str) -> None:
    config = StoreConfig(limits=Limits(max_value_bytes=64 * 1024))
    with open_store(root, config=config) as store:
        async def main() -> None:
            service = SecureStoreSessionService(store)
            session = await service.create_session(app_name=APP, user_id="u1", session_id="s1")
            await service.append_event(session, event_at(1.0, "small"))
            with pytest.raises(LimitExceededError):
                await service.append_event(session, event_at(2.0, "y" * 100_000, {"app:big": 1, "k": 2}))
            assert len(session.events) == 1 and "k" not in session.state
            got = await service.get_session(app_name=APP, user_id="u1", session_id="s1")
            assert got is not None and len(got.events) == 1 and got.state == {}
            await service.append_event(got, event_at(3.0, "after"))
        asyncio.run(main())
        assert verify_store(store).ok


# -- crash safety ------------------------------------------------------------------------------------
class Crash(Exception):
    pass


def crash(store: SecureStore, key: str, delta: dict[str, Any]) -> None:
    """Stops (as a crash would) right after the turn that records the shared deltas."""
    raise Crash("crash between the turn and the shared state")


def test_shared_state_cut_off_by_a_crash_is_applied_on_the_next_read(root: Path | str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    with open_store(root) as store:
        service = SecureStoreSessionService(store)
        session = asyncio.run(service.create_session(app_name=APP, user_id="u1", session_id="s1"))
        with monkeypatch.context() as patch:
            patch.setattr(adk_state, "update_shared", crash)
            with pytest.raises(Crash):
                asyncio.run(service.append_event(session, event_at(1.0, "x", {"app:a": 1, "user:b": 2, "c": 3})))
    with open_store(root) as store:
        service = SecureStoreSessionService(store)
        assert asyncio.run(service.get_user_state(app_name=APP, user_id="u1")) == {}  # not yet applied
        got = asyncio.run(service.get_session(app_name=APP, user_id="u1", session_id="s1"))
        assert got is not None and len(got.events) == 1
        assert got.state == {"app:a": 1, "user:b": 2, "c": 3}
        assert "pending" not in store.get(session_key(APP, "u1", "s1"), SESSION_SLOT)
        assert asyncio.run(service.get_user_state(app_name=APP, user_id="u1")) == {"b": 2}
        asyncio.run(service.append_event(got, event_at(2.0, "y")))
        assert verify_store(store).ok


class AckingService(SecureStoreSessionService):
    async def append_event(self, session: Any, event: Event) -> Event:
        stored = await super().append_event(session, event)
        if not event.partial:
            print(f"ACK {event.id}", flush=True)
        return stored


def crash_child(root: str) -> None:
    async def main() -> None:
        async with await securestore.aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as astore:
            service = AckingService(astore)
            await service.create_session(app_name=APP, user_id="u1", session_id="s1")
            print("READY", flush=True)
            run = runner(service)
            for i in range(10_000):
                await turn(run, f"fact {i}")
    asyncio.run(main())


@pytest.mark.crash
@pytest.mark.parametrize("kill_after", [1, 6, 11])
def test_every_acknowledged_event_survives_kill_9(root: Path | str, kill_after: int) -> None:
    child = subprocess.Popen([sys.executable, __file__, "crash-child", str(root)], stdout=subprocess.PIPE,
                             text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert child.stdout is not None
    acked: list[str] = []
    try:
        assert child.stdout.readline().strip() == "READY"
        while len(acked) < kill_after:
            line = child.stdout.readline()
            assert line.startswith("ACK "), line
            acked.append(line.split()[1])
        child.send_signal(signal.SIGKILL)  # between two events: the next append may be in flight
    finally:
        child.kill()
        child.wait()
    with open_store(root) as store:
        service = SecureStoreSessionService(store)
        got = asyncio.run(service.get_session(app_name=APP, user_id="u1", session_id="s1"))
        assert got is not None
        stored = [e.id for e in got.events]
        assert stored[:len(acked)] == acked and len(stored) - len(acked) <= 1
        facts = len([e for e in got.events if e.actions and "user:facts_seen" in e.actions.state_delta])
        assert (got.state.get("user:facts_seen") or 0) == facts  # shared deltas follow their events
        assert verify_store(store).ok
        asyncio.run(turn(runner(service), "after the crash"))  # the session goes on
        assert verify_store(store).ok


# -- the example ------------------------------------------------------------------------------------------
# Directory only: the example program makes its store (and key files) in the directory it is given.
def test_the_example_runs_offline_and_verifies(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("GOOGLE_API_KEY", "GEMINI_API_KEY")}
    done = subprocess.run([sys.executable, str(REPO / "examples" / "adk_example.py"), str(tmp_path / "store")],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verify: ok" in done.stdout


if __name__ == "__main__" and sys.argv[1:2] == ["crash-child"]:
    crash_child(sys.argv[2])
