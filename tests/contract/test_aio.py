"""The async API: the sync core run off the event loop, many tasks on many sessions, and
cancellation that never leaves a half-done write."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

import securestore
from securestore import NotFoundError, SecureStore, StoreConfig, verify_store
from securestore import aio
from securestore.fs import instrumented
from securestore.fs.osapi import REAL_OS
from tests.support.cancel import cancel_inside_fsync
from tests.support.keys import KEYS, MASTER_KEY

pytestmark = pytest.mark.both_backends


def test_the_async_twins_round_trip_and_the_store_verifies(root: Path) -> None:
    async def main() -> None:
        async with await securestore.aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as store:
            async with await store.create_session("chat", metadata={"title": "t"}) as session:
                await session.append_items([{"role": "user", "content": "hi"}])
                async with session.turn():
                    await session.append_items([{"n": 1}])
                    await session.slot("ext.state").put({"token": "ghp_" + "a1B2" * 9})
                assert await session.items() == [{"role": "user", "content": "hi"}, {"n": 1}]
                assert (await session.slot("ext.state").get())["token"].startswith("[secret:")
            assert await store.read_items("chat", 1) == [{"n": 1}]
            await store.put("other", "slot", 3)
            assert await store.get("other", "slot") == 3
            assert [s.key for s in (await store.list_sessions()).sessions] == ["other", "chat"]
            await store.delete_session("other")
            with pytest.raises(NotFoundError):
                await store.get("other", "slot")
            assert (await store.verify()).ok

    asyncio.run(main())


def test_a_failed_turn_block_commits_nothing(root: Path) -> None:
    async def main() -> None:
        async with await aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as store:
            async with await store.create_session("s") as session:
                await session.append_items([{"kept": True}])
                with pytest.raises(RuntimeError):
                    async with session.turn():
                        await session.append_items([{"staged": True}])
                        raise RuntimeError("the agent step failed")
                assert await session.items() == [{"kept": True}]
                async with session.turn():  # the failed turn was closed: a new one opens
                    await session.append_items([{"after": True}])
            assert await store.read_items("s") == [{"kept": True}, {"after": True}]

    asyncio.run(main())


@pytest.mark.fs_only  # observes OS calls through the fs layer; a PostgreSQL store's I/O is its connection
def test_no_os_call_runs_on_the_event_loop_thread(root: Path) -> None:
    threads: set[int] = set()

    def hook(name: str, args: tuple[object, ...]) -> None:
        threads.add(threading.get_ident())

    async def main() -> int:
        store = await aio.open_store(root, master_key=MASTER_KEY, environ=KEYS)
        store.sync.ctx.os = instrumented(REAL_OS, hook)
        async with store, await store.create_session("s") as session:
            await session.append_items([{"n": 1}])
            await session.items()
            await store.put("s2", "slot", 1)
            await store.list_sessions()
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert threads and loop_thread not in threads


def test_many_tasks_on_many_sessions_at_once(root: Path) -> None:
    async def writer(store: aio.AsyncSecureStore, key: str) -> None:
        async with await store.create_session(key) as session:
            for i in range(8):
                await session.append_items([{"key": key, "i": i}])

    async def shared(session: aio.AsyncSession, task: int) -> None:
        for i in range(5):
            await session.append_items([{"task": task, "i": i}])

    async def main() -> None:
        async with await aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as store:
            await asyncio.gather(*(writer(store, f"s{k}") for k in range(12)))
            for k in range(12):
                assert await store.read_items(f"s{k}") == [{"key": f"s{k}", "i": i} for i in range(8)]
            async with await store.create_session("one") as session:  # one handle, many tasks: serialized
                await asyncio.gather(*(shared(session, t) for t in range(6)))
                items = await session.items()
            assert len(items) == 30
            for t in range(6):  # each task's items in its own order
                assert [item["i"] for item in items if item["task"] == t] == list(range(5))
            assert (await store.verify()).ok

    asyncio.run(main())


@pytest.mark.fs_only  # the write is held inside an fsync (an OS call), which a PostgreSQL store never makes
@pytest.mark.parametrize("fails", [False, True])
def test_a_cancelled_write_completes_or_not_and_the_caller_is_told_which(root: Path, fails: bool) -> None:
    async def main() -> None:
        async with await aio.open_store(root, master_key=MASTER_KEY, environ=KEYS) as store:
            async with await store.create_session("s") as session:
                await session.append_items([{"n": 0}])
                value: Any = {"n": 1} if not fails else {"n": float("nan")}  # a value the policy refuses
                outcome, note = await cancel_inside_fsync(store, session.append_items([value]), fails=fails)
                assert (outcome.operation, outcome.session, outcome.completed) == ("append_items", "s", not fails)
                if fails:
                    assert "failed" in note and outcome.error
                    assert await session.items() == [{"n": 0}]  # nothing half-written
                else:
                    assert "completed" in note and outcome.error is None
                    assert await session.items() == [{"n": 0}, {"n": 1}]  # durable, audited
            assert (await store.verify()).ok

    asyncio.run(main())
    with SecureStore(root, master_key=MASTER_KEY, environ=KEYS) as store:
        assert verify_store(store).ok


@pytest.mark.fs_only  # held inside an fsync of the store log, an OS call a PostgreSQL store never makes
def test_a_session_opened_for_a_cancelled_caller_is_closed_again(root: Path) -> None:
    async def main() -> None:
        async with await aio.open_store(root, StoreConfig(lock_timeout_seconds=0.5), master_key=MASTER_KEY,
                                        environ=KEYS) as store:
            # Held at the store log's intent, inside the create.
            outcome, _ = await cancel_inside_fsync(store, store.create_session("s"), suffix="log.jsonl")
            assert outcome.completed
            async with await store.open_session("s") as session:  # not held by a handle nobody has
                await session.append_items([{"n": 1}])
            assert (await store.verify()).ok

    asyncio.run(main())
