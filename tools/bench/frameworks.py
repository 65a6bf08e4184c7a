"""The frameworks' own default stores, driven through their public APIs and left at their
defaults: the OpenAI Agents SDK's `SQLiteSession` on a file and LangGraph's `SqliteSaver`.
Both are imported lazily; a missing package raises `Unavailable` with the install hint."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

from .corpus import item, items
from .systems import (
    APPEND, CREATE_BIG, CREATE_EMPTY, LIST50, READ50, READ_LIMIT, READ_SESSION_ITEMS, TURN, TURN_ITEMS,
    AsyncPrepared, Prepared, System, Unavailable, read_pragmas,
)

INSTALL_HINT = "not installed: pip install '.[bench]'"


class AgentsSqliteSession(System):
    name = "agents SQLiteSession"
    durability = "one SQLite transaction per add_items (WAL; synchronous as read back)"
    mappings = {
        APPEND: "await session.add_items([item])",
        TURN: "await session.add_items(16 items) (one transaction)",
        CREATE_EMPTY: "SQLiteSession(id, db) + add_items([item]) + close (schema made beforehand)",
        CREATE_BIG: "SQLiteSession(id, db) + add_items([item]) + close",
        READ50: "await session.get_items(50)",
    }

    def __init__(self) -> None:
        try:
            from agents import SQLiteSession
        except ImportError as error:
            raise Unavailable(INSTALL_HINT) from error
        self.session_class: Any = SQLiteSession
        self.runner = asyncio.Runner()
        self.base = Path()
        self.big = Path()
        self.reader: Any = None

    def build(self, base: Path, n_sessions: int) -> None:
        self.base = base
        self.big = base / "agents.db"
        bootstrap = self.session_class("read-1000", str(self.big))
        for start in range(0, READ_SESSION_ITEMS, 100):
            self.runner.run(bootstrap.add_items(items(start, 100)))
        # The N one-item sessions go in with one transaction through the SDK's own tables and
        # encoding (json.dumps): the same end state as N add_items calls, built in a second.
        tables = (bootstrap.sessions_table, bootstrap.messages_table)
        bootstrap.close()
        with sqlite3.connect(self.big) as conn:
            conn.executemany(f"INSERT INTO {tables[0]} (session_id) VALUES (?)",  # nosec B608 - the SDK's own table names
                             [(f"s-{k:06d}",) for k in range(n_sessions)])
            conn.executemany(f"INSERT INTO {tables[1]} (session_id, message_data) VALUES (?, ?)",  # nosec B608
                             [(f"s-{k:06d}", json.dumps(item(k))) for k in range(n_sessions)])
        conn.close()
        self.reader = self.session_class("read-1000", str(self.big))

    def _prepared(self, op: Any, cleanup: Any = None) -> AsyncPrepared:
        prepared = AsyncPrepared(lambda i: None, async_op=op, runner=self.runner)
        if cleanup is not None:
            prepared.cleanup = cleanup
        return prepared

    def prepare(self, workload: str, rnd: int) -> Prepared | None:
        if workload in (APPEND, TURN):
            session = self.session_class(f"{workload}-r{rnd}", str(self.big))
            self.runner.run(session.add_items([item(0)]))
            if workload == APPEND:
                return self._prepared(lambda i: session.add_items([item(i)]), session.close)
            return self._prepared(lambda i: session.add_items(items(i * TURN_ITEMS, TURN_ITEMS)), session.close)
        if workload == CREATE_EMPTY:
            path = self.base / f"agents-empty-r{rnd}.db"
            self.session_class("schema-only", str(path)).close()  # tables, no session row

            def cleanup() -> None:
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)

            return self._prepared(lambda i: self._create(path, f"new-{i}", i), cleanup)
        if workload == CREATE_BIG:
            return self._prepared(lambda i: self._create(self.big, f"new-r{rnd}-{i}", i))
        if workload == READ50:
            reader = self.reader
            return self._prepared(lambda i: reader.get_items(READ_LIMIT))
        return None

    async def _create(self, db: Path, key: str, i: int) -> None:
        session = self.session_class(key, str(db))
        try:
            await session.add_items([item(i)])
        finally:
            session.close()

    def pragmas(self) -> dict[str, str] | None:
        if self.reader is None:
            return None
        return read_pragmas(self.reader._get_connection())  # the SDK's own configured connection

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
        self.runner.close()


class LangGraphThread:
    """A graph thread as a LangGraph run writes it: each put stores a checkpoint whose
    `messages` channel holds the whole conversation so far (SqliteSaver re-stores every channel
    value on every put), parented on the previous checkpoint."""

    def __init__(self, saver: Any, thread_id: str) -> None:
        from langgraph.checkpoint.base import empty_checkpoint

        self.saver = saver
        self.empty_checkpoint = empty_checkpoint
        self.messages: list[dict[str, Any]] = []
        self.config: dict[str, Any] = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        self.version: Any = None
        self.step = -1

    def put(self, new: list[dict[str, Any]]) -> None:
        self.messages.extend(new)
        self.step += 1
        self.version = self.saver.get_next_version(self.version, None)
        checkpoint = self.empty_checkpoint()
        checkpoint["channel_values"] = {"messages": self.messages}
        checkpoint["channel_versions"] = {"messages": self.version}
        checkpoint["updated_channels"] = ["messages"]
        metadata = {"source": "loop", "step": self.step, "parents": {}}
        self.config = self.saver.put(self.config, checkpoint, metadata, {"messages": self.version})


class LangGraphSqliteSaver(System):
    name = "langgraph SqliteSaver"
    durability = "one SQLite transaction per put (synchronous as read back)"
    mappings = {
        APPEND: "put a checkpoint whose messages channel grew by 1 item",
        TURN: "put a checkpoint whose messages channel grew by 16 items",
        CREATE_EMPTY: "first put on a new thread_id (1 message)",
        CREATE_BIG: "first put on a new thread_id (1 message)",
        READ50: "get_tuple(thread) -> messages[-50:] (the latest checkpoint holds all 1,000)",
        LIST50: "list(None, limit=50): newest 50 checkpoints = 50 threads (each holds one)",
    }

    def __init__(self) -> None:
        try:
            from langgraph.checkpoint.sqlite import SqliteSaver
        except ImportError as error:
            raise Unavailable(INSTALL_HINT) from error
        self.saver_class: Any = SqliteSaver
        self.base = Path()
        self.saver: Any = None
        self.extra: list[Any] = []

    def open_saver(self, path: Path) -> Any:
        # What SqliteSaver.from_conn_string does, kept open across operations.
        saver = self.saver_class(sqlite3.connect(str(path), check_same_thread=False))
        saver.setup()
        return saver

    def build(self, base: Path, n_sessions: int) -> None:
        self.base = base
        path = base / "langgraph.db"
        builder = self.open_saver(path)
        # Build-only connection with synchronous=OFF and one final sync: same end state faster.
        builder.conn.execute("PRAGMA synchronous=OFF")
        for k in range(n_sessions):
            LangGraphThread(builder, f"s-{k:06d}").put([item(k)])
        reader = LangGraphThread(builder, "read-1000")
        for start in range(0, READ_SESSION_ITEMS, 50):  # a 1,000-message thread built in 20 steps
            reader.put(items(start, 50))
        builder.conn.close()
        os.sync()
        self.saver = self.open_saver(path)  # a fresh connection at the saver's defaults

    def prepare(self, workload: str, rnd: int) -> Prepared | None:
        saver = self.saver
        if workload in (APPEND, TURN):
            thread = LangGraphThread(saver, f"{workload}-r{rnd}")
            thread.put([item(0)])
            per_op = 1 if workload == APPEND else TURN_ITEMS
            return Prepared(lambda i: thread.put(items(i * per_op, per_op)))
        if workload == CREATE_EMPTY:
            path = self.base / f"langgraph-empty-r{rnd}.db"
            fresh = self.open_saver(path)

            def cleanup() -> None:
                fresh.conn.close()
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{path}{suffix}").unlink(missing_ok=True)

            return Prepared(lambda i: LangGraphThread(fresh, f"new-{i}").put([item(i)]), cleanup)
        if workload == CREATE_BIG:
            return Prepared(lambda i: LangGraphThread(saver, f"new-r{rnd}-{i}").put([item(i)]))
        if workload == READ50:
            config = {"configurable": {"thread_id": "read-1000", "checkpoint_ns": ""}}
            return Prepared(lambda i: saver.get_tuple(config).checkpoint["channel_values"]["messages"][-READ_LIMIT:])
        if workload == LIST50:
            return Prepared(lambda i: list(saver.list(None, limit=READ_LIMIT)))
        return None

    def pragmas(self) -> dict[str, str] | None:
        return read_pragmas(self.saver.conn) if self.saver is not None else None

    def close(self) -> None:
        if self.saver is not None:
            self.saver.conn.close()

