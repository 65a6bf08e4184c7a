"""LangGraph checkpointer on securestore: `SecureStoreSaver(store)`.

    from securestore.integrations.langgraph import Retention, SecureStoreSaver
    saver = SecureStoreSaver(store, retention=Retention(keep_last=20))
    graph = builder.compile(checkpointer=saver)
    graph.invoke(inputs, {"configurable": {"thread_id": "ticket-4711"}})   # or await graph.ainvoke(...)

`store` is an open `SecureStore` or `AsyncSecureStore`. Sync graphs (`invoke`, `stream`) call
the sync methods, async graphs the `a*` twins, which run the same code in worker threads; a write
whose caller is cancelled still completes (or fails) whole and is recorded in
`AsyncSecureStore.interrupted`, as everywhere in `securestore.aio`.

What is stored where. A LangGraph thread is one securestore session, key `langgraph:<thread_id>`
(`key_prefix=`), its metadata's workspace `langgraph` (`workspace=`), so `list(None)` pages
through the store's listing index instead of scanning directories. The session's transcript
holds, in write order, one item per `put` (the whole checkpoint: channel values, versions,
metadata, parent id, namespace) and one item per `put_writes` call. Transcript items, not slots:
they are append-only (one atomic, fsynced, audited record per call), reading the latest N costs
O(N), and their number is not capped at 256 like slots; the latest checkpoint and its writes are
at the end, which is what a graph reads. A thread id the store's key policy refuses (a dunder
name, a credential, too long) is refused with the store's error. Every change (put, put_writes,
retention, prune, copy, delete) goes through the store's audited write path.

State is written as tagged JSON (`JsonStateSerializer`, see `langgraph_serde`), never msgpack, so
the store's redactor sees every string: an API key in a message, or a value under a
`password`-like key, is replaced by a reference `[secret:vault:...]` before anything is written
(encrypted into the session's vault with a master key, dropped otherwise). Loading revives only
the types the serializer lists; a stored name is never imported.

What the graph sees of a secret on the next load: by default the reference string (the model
gets `[secret:vault:...]`, never the value); with `resolve_secrets=True`, the value, resolved in
memory on load (this needs the master key). The value never reaches the disk either way. Keep
one mode per thread: what the graph writes back is stored as it saw it, and the store never
turns text that looks like a reference into one (a prompt-injected marker would otherwise read
another secret on the next resolve), so a thread run in the default mode keeps, in its later
checkpoints, reference text that `resolve_secrets=True` shows as it is.

Retention: `Retention(keep_last=N, max_age_seconds=S)` keeps, per namespace, the latest N
checkpoints (and drops those older than S), applied after every `every` puts on a thread or on
demand with `apply_retention(thread_id)`. The latest checkpoint of a namespace is always kept
(whole threads expire through the store's own `maintain`). It is DeltaChannel-safe: a kept
checkpoint whose metadata counts delta updates since the last snapshot keeps its ancestors, and
their writes, back to the one holding the value. A retention pass is one audited turn that
clears the transcript and re-appends what is kept; the old records then leave the disk (the
audit log keeps their digests). Secrets survive it: kept items are re-read with their values and
re-redacted into the vault, whole-value secrets as `Secret`. A rewrite never turns a live
reference into plain text: when one it keeps cannot be resolved now (a handle without the master
key, an unset environment variable behind `Secret.from_env`), `apply_retention`, `prune`,
`copy_thread` and `delete_for_runs` refuse with `KeyMaterialError`/`SecretUnavailableError` and
change nothing, and the retention inside `put` is skipped with a logged warning (the put is
stored). Only references already dropped (`[secret:redacted:...]`, no master key at write time)
are carried over as text. Writes stored before their checkpoint are kept for its `put`.

Concurrent writers on one thread are serialised: each write holds the session's one-writer lock
while it runs; a writer that cannot get it within `StoreConfig.lock_timeout_seconds` (another
process, or someone holding the session open) gets `LockHeldError` naming the holder. Reads take
no lock. `hold_sessions=True` keeps each thread's session open (its lock held) between writes
until `saver.close()`: faster (no open per write), for one process that owns its threads.
Checkpoints are listed newest first in the order they were written, which is id order for any
one writer.

Known limits. Strings are scanned as they are stored: bytes that are UTF-8 text are stored as
text and scanned, other binary blobs (base64) are opaque to the redactor. A secret that streaming
split across `tool_call_chunks` (each chunk a piece of partial JSON arguments) cannot be detected
in any one chunk; merge chunks (or store the final `AIMessage`) before checkpointing such state.

The module is split by job: `langgraph_items` (the item formats and the newest-first reading of
a transcript), `langgraph_retention` (retention, prune, delete_for_runs and copy rewrites),
`langgraph_sessions` (the thread sessions and their writer locks), `langgraph_serde` (state as
tagged JSON).
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
)

from ..errors import KeyMaterialError, SecretUnavailableError, UsageError
from ._handles import StoreHandle, as_async
from .langgraph_items import (
    append, checkpoint_item, early_writes, matching, scan, stored_writes, write_entries, writes_item,
)
from .langgraph_retention import Retention, delete_runs, has_runs, rearmed, retain
from .langgraph_serde import JsonStateSerializer
from .langgraph_sessions import ThreadSessions

__all__ = ["JsonStateSerializer", "Retention", "SecureStoreSaver"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class SecureStoreSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer that keeps each thread in a securestore session (see the module
    docstring for what is stored where and what the graph sees of a secret)."""

    def __init__(self, store: StoreHandle, *, serde: JsonStateSerializer | None = None,
                 resolve_secrets: bool = False, retention: Retention | None = None,
                 allowed_types: Iterable[type[Any]] | Mapping[str, type[Any]] = (),
                 key_prefix: str = "langgraph:", workspace: str = "langgraph", hold_sessions: bool = False,
                 clock: Callable[[], float] | None = None) -> None:
        """`clock`: seconds since the epoch for `Retention.max_age_seconds` (default: the store's clock)."""
        if serde is not None and not isinstance(serde, JsonStateSerializer):
            # msgpack payloads are opaque to the redactor and name classes that get imported on load
            raise UsageError("serde must be a securestore JsonStateSerializer: LangGraph's msgpack serializers "
                             "hide secrets from redaction and import classes named in stored bytes")
        if serde is not None and allowed_types:
            raise UsageError("pass allowed_types to the JsonStateSerializer you give as serde, not to the saver")
        if not key_prefix:
            raise UsageError("key_prefix must not be empty")
        codec = serde or JsonStateSerializer(allowed_types)
        super().__init__(serde=codec)
        self.codec = codec
        self.astore = as_async(store)
        self.store = self.astore.sync
        self.resolve_secrets = resolve_secrets
        self.retention = retention
        self.key_prefix = key_prefix
        self.workspace = workspace
        self._clock = clock or self._store_seconds
        self._sessions = ThreadSessions(self.store, workspace, hold_sessions)
        self._puts: dict[str, int] = defaultdict(int)

    @property
    def hold_sessions(self) -> bool:
        return self._sessions.hold

    def close(self) -> None:
        """Release the sessions a `hold_sessions=True` saver keeps open (their writer locks)."""
        self._sessions.close()

    def __enter__(self) -> SecureStoreSaver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def with_allowlist(self, extra_allowlist: Collection[tuple[str, ...]]) -> SecureStoreSaver:
        return self  # no msgpack is ever decoded here, so there is no msgpack allowlist to extend

    def session_key(self, thread_id: object) -> str:
        return f"{self.key_prefix}{thread_id}"

    def _store_seconds(self) -> float:
        return self.store.now_ms() / 1000

    # -- reads -----------------------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        configurable = config["configurable"]
        found = self._list_thread(str(configurable["thread_id"]), configurable.get("checkpoint_ns", ""),
                                  get_checkpoint_id(config), None, None, 1)
        return found[0] if found else None

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        configurable = (config or {}).get("configurable") or {}
        ns: str | None = configurable.get("checkpoint_ns")
        wanted = configurable.get("checkpoint_id")
        before_id = get_checkpoint_id(before) if before else None
        thread_id = configurable.get("thread_id")
        threads = [str(thread_id)] if thread_id is not None else self.thread_ids()
        left = limit
        for thread in threads:
            if left is not None and left <= 0:
                return
            found = self._list_thread(thread, ns, wanted, before_id, filter, left)
            if left is not None:
                left -= len(found)
            yield from found

    def _list_thread(self, thread_id: str, ns: str | None, wanted: str | None, before_id: str | None,
                     filter: dict[str, Any] | None, limit: int | None) -> builtins.list[CheckpointTuple]:
        return scan(self.store, self.session_key(thread_id),
                    lambda items: matching(self.codec, thread_id, items, ns, wanted, before_id, filter, limit),
                    resolve=self.resolve_secrets)

    def thread_ids(self) -> builtins.list[str]:
        """Every thread this saver's workspace holds, most recently written first, from the
        store's listing index (O(page) a page, no directory scan)."""
        found: builtins.list[str] = []
        cursor: str | None = None
        while True:
            page = self.store.list_sessions(page_size=200, cursor=cursor, workspace=self.workspace)
            found.extend(summary.key[len(self.key_prefix):] for summary in page.sessions
                         if summary.key.startswith(self.key_prefix))
            cursor = page.next_cursor
            if not cursor:
                return found

    # -- writes ----------------------------------------------------------------------------------
    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        thread_id = str(config["configurable"]["thread_id"])
        item = checkpoint_item(self.codec, config, checkpoint, metadata, self._store_seconds())
        ns = item["ns"]
        key = self.session_key(thread_id)
        with self._sessions.writing(key, create=True) as session:
            assert session is not None  # noqa: S101 - create=True always opens one
            item["back"] = early_writes(session, ns, checkpoint["id"], checkpoint["ts"])
            append(session, [item], "checkpoint")
            if self.retention is not None:
                self._puts[key] += 1
                if self._puts[key] % self.retention.period == 0:
                    try:
                        retain(session, self.retention, self._clock())
                    except (KeyMaterialError, SecretUnavailableError) as error:
                        # the checkpoint is stored; a rewrite now would lose secrets, so it waits
                        log.warning("langgraph retention skipped on %s: %s", key, error)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": checkpoint["id"]}}

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        configurable = config["configurable"]
        ns = configurable.get("checkpoint_ns", "")
        checkpoint_id = configurable["checkpoint_id"]
        entries = write_entries(self.codec, writes)
        with self._sessions.writing(self.session_key(configurable["thread_id"]), create=True) as session:
            assert session is not None  # noqa: S101 - create=True always opens one
            done = stored_writes(session, ns, checkpoint_id, task_id)
            fresh = [entry for entry in entries if entry["idx"] < 0 or (task_id, entry["idx"]) not in done]
            if fresh:
                append(session, [writes_item(ns, checkpoint_id, task_id, task_path, self._store_seconds(), fresh)],
                       "pending writes")

    def delete_thread(self, thread_id: str) -> None:
        key = self.session_key(thread_id)
        self._sessions.delete(key)
        self._puts.pop(key, None)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Remove every checkpoint (and its writes) of these runs, in every thread: one audited
        rewrite per thread that has any. Not DeltaChannel-safe by nature: a later checkpoint
        whose delta history ran through a deleted one loses that history."""
        runs = {str(run) for run in run_ids}
        if not runs:
            return
        for thread_id in self.thread_ids():
            key = self.session_key(thread_id)
            if not scan(self.store, key, lambda items: has_runs(items, runs), resolve=False):
                continue
            with self._sessions.writing(key, create=False) as session:
                if session is not None:
                    delete_runs(session, runs)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Append every checkpoint and write of the source thread to the target, in one audited
        write; secrets are re-vaulted in the target's session (each session has its own vault)."""
        with self._sessions.writing(self.session_key(source_thread_id), create=False) as session:
            if session is None:
                return
            items = rearmed(session, session.items(), 0, "copy_thread")
        if not items:
            return
        with self._sessions.writing(self.session_key(target_thread_id), create=True) as target:
            assert target is not None  # noqa: S101 - create=True always opens one
            append(target, items, "thread copy")

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """`keep_latest`: keep the latest checkpoint of every namespace (plus what its delta
        channels need); `delete`: delete the threads."""
        if strategy not in ("keep_latest", "delete"):
            raise UsageError(f"unknown prune strategy {strategy[:40]!r}: use 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            if strategy == "delete":
                self.delete_thread(thread_id)
                continue
            with self._sessions.writing(self.session_key(thread_id), create=False) as session:
                if session is not None:
                    retain(session, Retention(keep_last=1), self._clock(), "prune")

    def apply_retention(self, thread_id: str, retention: Retention | None = None) -> int:
        """Apply `retention` (default: the saver's) to one thread now; returns how many
        checkpoints it removed."""
        policy = retention or self.retention
        if policy is None:
            raise UsageError("no retention policy: pass one, or create the saver with retention=Retention(...)")
        with self._sessions.writing(self.session_key(thread_id), create=False) as session:
            return 0 if session is None else retain(session, policy, self._clock())

    # -- async twins: the same code in worker threads; a cancelled write still ends whole --------
    async def _awrite(self, operation: str, thread_id: object, run: Callable[[], T]) -> T:
        key = None if thread_id is None else self.session_key(thread_id)
        return await self.astore.run_write(f"langgraph.{operation}", key, run)

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await asyncio.to_thread(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        found = await asyncio.to_thread(lambda: builtins.list(self.list(config, filter=filter, before=before, limit=limit)))
        for found_tuple in found:
            yield found_tuple

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await self._awrite("put", config["configurable"]["thread_id"],
                                  lambda: self.put(config, checkpoint, metadata, new_versions))

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                          task_path: str = "") -> None:
        await self._awrite("put_writes", config["configurable"]["thread_id"],
                           lambda: self.put_writes(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        await self._awrite("delete_thread", thread_id, lambda: self.delete_thread(thread_id))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._awrite("delete_for_runs", None, lambda: self.delete_for_runs(run_ids))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._awrite("copy_thread", target_thread_id, lambda: self.copy_thread(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._awrite("prune", None, lambda: self.prune(thread_ids, strategy=strategy))

    async def aapply_retention(self, thread_id: str, retention: Retention | None = None) -> int:
        return await self._awrite("apply_retention", thread_id, lambda: self.apply_retention(thread_id, retention))
