"""The transcript format of `SecureStoreSaver` (see `securestore.integrations.langgraph`) and
its newest-first reading.

A thread's session transcript holds, in write order, one checkpoint item per `put`
(`{"lg": "checkpoint", "ns", "id", "parent", "ts", "at", "run", "values", "delta", "back",
"checkpoint", "metadata"}`) and one writes item per `put_writes` call (`{"lg": "writes", "ns",
"id", "task", "path", "at", "writes": [{"idx": idx, "w": {channel: value}}, ...]}`); state is
tagged JSON from `JsonStateSerializer`. A write's channel is the object key of its value, so the
redactor's "value under a credential-named key" rule applies to a `password` channel as it does in
the checkpoint's channel values. A channel the store refuses as an object key (`__start__`-style
names, one that holds a secret, a very long one) is stored as `{"idx", "ch": channel, "w":
{"value": value}}`, or `{"secret": value}` when the channel names a credential. Items written
before this format (`[idx, channel, value]`) are read as well. Reads go from the end of the log back, in growing chunks, so the latest
checkpoint costs O(its distance from the end)."""

from __future__ import annotations

import datetime as dt
import itertools
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_serializable_checkpoint_metadata,
    writes_sort_key,
)

from ..api.session import Session
from ..api.store import SecureStore
from ..core.policy.keys import is_forbidden_key
from ..core.secrets import contains_secret
from ..core.secrets.credential_keys import is_credential_key
from ..errors import IntegrityError, LimitExceededError, NotFoundError
from .langgraph_serde import JsonStateSerializer

T = TypeVar("T")
Item = dict[str, Any]
Entry = tuple[str, str, int, str, Any]  # (task_path, task_id, idx, channel, value)
CHECKPOINT = "checkpoint"
WRITES = "writes"
FIRST_READ = 16  # items read from the end first; each further read takes 4 times as many
# A task's writes are stored after its checkpoint was made; this covers a small wall-clock step back.
CLOCK_SLACK = 0.1
MAX_CHANNEL_KEY_BYTES = 256  # a longer channel name is stored as a value, not as an object key


# -- the formats --------------------------------------------------------------------------------
def checkpoint_item(codec: JsonStateSerializer, config: RunnableConfig, checkpoint: Checkpoint,
                    metadata: CheckpointMetadata, at: float) -> Item:
    """The item one `put` appends (without `back`, which needs the transcript)."""
    configurable = config["configurable"]
    stored_metadata = dict(get_serializable_checkpoint_metadata(config, metadata))
    counters: Mapping[str, Any] = cast(Mapping[str, Any], stored_metadata.get("counters_since_delta_snapshot") or {})
    run_id = stored_metadata.get("run_id")
    return {
        "lg": CHECKPOINT, "v": 1, "ns": configurable.get("checkpoint_ns", ""), "id": checkpoint["id"],
        "parent": configurable.get("checkpoint_id"), "ts": checkpoint["ts"], "at": at,
        "run": None if run_id is None else str(run_id),
        "values": sorted(checkpoint["channel_values"]), "delta": sorted(counters),
        "checkpoint": codec.to_json(dict(checkpoint), ("checkpoint",)),
        "metadata": codec.to_json(stored_metadata, ("metadata",)),
    }


def _write_key(channel: str) -> str:
    """The object key a write's value is stored under: the channel itself when the store takes
    it as a key, else a stand-in that still tells the redactor whether it names a credential."""
    if (type(channel) is str and channel and not is_forbidden_key(channel) and not contains_secret(channel)
            and len(channel.encode("utf-8", "surrogatepass")) <= MAX_CHANNEL_KEY_BYTES):
        return channel
    return "secret" if type(channel) is str and is_credential_key(channel) else "value"


def write_entries(codec: JsonStateSerializer, writes: Sequence[tuple[str, Any]]) -> list[Item]:
    """One `put_writes` call's writes as stored: `{"idx": idx, "w": {channel: value}}`."""
    entries: list[Item] = []
    for index, (channel, value) in enumerate(writes):
        key = _write_key(channel)
        # the channel is the value's object key: a `password` channel's value is redacted as a credential
        entry: Item = {"idx": WRITES_IDX_MAP.get(channel, index),
                       "w": {key: codec.encode_field(key, value, ("writes", channel))}}
        if key != channel:
            entry["ch"] = channel
        entries.append(entry)
    return entries


def entry_parts(entry: Any) -> tuple[int, str, Any]:
    """(idx, channel, value) of one stored write, in either format."""
    if isinstance(entry, list) and len(entry) == 3:
        return entry[0], entry[1], entry[2]  # the format before channels became object keys
    if isinstance(entry, dict) and isinstance(entry.get("w"), dict) and len(entry["w"]) == 1:
        ((key, value),) = entry["w"].items()
        return entry.get("idx", 0), entry.get("ch", key), value
    raise IntegrityError("a stored langgraph write is malformed; nothing was loaded")


def writes_item(ns: str, checkpoint_id: str, task_id: str, task_path: str, at: float,
                entries: list[Item]) -> Item:
    return {"lg": WRITES, "v": 1, "ns": ns, "id": checkpoint_id, "task": task_id, "path": task_path, "at": at,
            "writes": entries}


def to_tuple(codec: JsonStateSerializer, thread_id: str, item: Item,
             writes: list[tuple[str, str, Any]]) -> CheckpointTuple:
    ns = item["ns"]
    parent = item.get("parent")
    return CheckpointTuple(
        config={"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": item["id"]}},
        checkpoint=cast(Checkpoint, codec.from_json(item["checkpoint"])),
        metadata=cast(CheckpointMetadata, codec.from_json(item["metadata"])),
        parent_config=({"configurable": {"thread_id": thread_id, "checkpoint_ns": ns, "checkpoint_id": parent}}
                       if parent else None),
        pending_writes=writes,
    )


def append(session: Session, items: list[Item], what: str) -> None:
    try:
        session.append_items(items)
    except LimitExceededError as error:
        raise LimitExceededError(
            f"langgraph {what} rejected: {error}; a checkpoint holds the whole graph state, so trim the state "
            "(e.g. old messages) or raise the store's Limits") from None


# -- reading newest first -------------------------------------------------------------------------
class Moved(Exception):
    """The transcript changed between two reads of a lock-free scan: read it again, whole."""


def newest_first(read: Callable[[int | None], list[Any]], whole: bool, first: int = FIRST_READ) -> Iterator[Any]:
    """Transcript items from the newest back, read in growing chunks from the end so that finding
    the latest checkpoint costs O(distance from the end). Each chunk must end with the previous
    one (else `Moved`), so the items yielded are always one consistent suffix of the log."""
    if whole:
        yield from reversed(read(None))
        return
    seen: list[Any] = []
    size = first
    while True:
        batch = read(size)
        fresh = len(batch) - len(seen)
        if seen and (fresh < 0 or batch[fresh:] != seen):
            raise Moved
        yield from reversed(batch[:fresh])
        if len(batch) < size:
            return
        seen, size = batch, size * 4


def scan(store: SecureStore, key: str, op: Callable[[Iterator[Any]], T], *, resolve: bool) -> T:
    """Run `op` over the thread's items, newest first, without taking the writer lock."""
    def read(size: int | None) -> list[Any]:
        return store.read_items(key, size, resolve=resolve)

    try:
        try:
            return op(newest_first(read, whole=False))
        except Moved:
            return op(newest_first(read, whole=True))
    except NotFoundError:
        return op(iter(()))


def _held_items(session: Session) -> Iterator[Any]:
    """A session opened for writing, newest first, stored form (its lock keeps it still)."""
    return newest_first(lambda size: session.items(size, resolve=False), whole=False, first=4)


def early_writes(session: Session, ns: str, checkpoint_id: str, stamp: str) -> int:
    """How many items back the oldest write already stored for this (not yet stored)
    checkpoint is: 0 when none. Only items stored after the checkpoint was made can be."""
    try:
        made = dt.datetime.fromisoformat(stamp).timestamp() - CLOCK_SLACK
    except ValueError:
        made = 0.0
    back = 0
    for distance, item in enumerate(_held_items(session), start=1):
        if not isinstance(item, dict) or item.get("at", 0) < made:
            break
        if item.get("lg") == WRITES and item.get("ns") == ns and item.get("id") == checkpoint_id:
            back = distance
    return back


def stored_writes(session: Session, ns: str, checkpoint_id: str, task_id: str) -> set[tuple[str, int]]:
    """The (task, idx) this task already stored for the checkpoint. Reads keep the first of two
    equal (task, idx >= 0) writes anyway: this only saves storing a retry twice, so it stops at
    the checkpoint or at an older one."""
    done: set[tuple[str, int]] = set()
    for item in _held_items(session):
        if not isinstance(item, dict) or item.get("ns") != ns:
            continue
        if item.get("lg") == CHECKPOINT and item.get("id", "") <= checkpoint_id:
            break
        if item.get("lg") == WRITES and item.get("id") == checkpoint_id and item.get("task") == task_id:
            done.update((task_id, entry_parts(entry)[0]) for entry in item["writes"])
    return done


def checkpoints(items: Iterator[Any], ns: str | None) -> Iterator[tuple[Item, list[Entry]]]:
    """(checkpoint item, its writes newest first) for each checkpoint, newest first. LangGraph
    may store a task's writes before the checkpoint they belong to (both run in background
    threads): `put` records in `back` how many items before it may hold such writes."""
    ahead: deque[Any] = deque()
    pending: dict[tuple[str, str], list[Entry]] = defaultdict(list)

    def entries(item: Item) -> Iterator[Entry]:
        for entry in reversed(item["writes"]):
            idx, channel, value = entry_parts(entry)
            yield item.get("path", ""), item["task"], idx, channel, value

    while True:
        item = ahead.popleft() if ahead else next(items, None)
        if item is None:
            return
        if not isinstance(item, dict) or (ns is not None and item.get("ns") != ns):
            continue
        if item.get("lg") == WRITES:
            pending[(item["ns"], item["id"])].extend(entries(item))
            continue
        if item.get("lg") != CHECKPOINT:
            continue
        found = pending.pop((item["ns"], item["id"]), [])
        back = item.get("back") or 0
        while len(ahead) < back:
            older = next(items, None)
            if older is None:
                break
            ahead.append(older)
        for older in itertools.islice(ahead, back):
            if (isinstance(older, dict) and older.get("lg") == WRITES
                    and (older.get("ns"), older.get("id")) == (item["ns"], item["id"])):
                found.extend(entries(older))
        yield item, found


def pending_writes(codec: JsonStateSerializer, newest: list[Entry]) -> list[tuple[str, str, Any]]:
    """One checkpoint's writes in writes_sort_key order: a repeated (task, idx >= 0) keeps
    the first write, a special (negative idx) one the last."""
    chosen: dict[tuple[str, int], Entry] = {}
    for entry in reversed(newest):
        path, task, idx, _, _ = entry
        if idx >= 0 and (task, idx) in chosen:
            continue
        chosen[(task, idx)] = entry
    ordered = sorted(chosen.values(), key=lambda entry: writes_sort_key(entry[0], entry[1], entry[2]))
    return [(task, channel, codec.from_json(value)) for _, task, _, channel, value in ordered]


def matching(codec: JsonStateSerializer, thread_id: str, items: Iterator[Any], ns: str | None, wanted: str | None,
             before_id: str | None, filter: dict[str, Any] | None, limit: int | None) -> list[CheckpointTuple]:
    """The thread's checkpoints that match, newest first, at most `limit`."""
    found: list[CheckpointTuple] = []
    for item, writes in checkpoints(items, ns):
        if (wanted is not None and item["id"] != wanted) or (before_id is not None and item["id"] >= before_id):
            continue
        if filter:
            metadata = codec.from_json(item["metadata"])
            if any(metadata.get(key) != value for key, value in filter.items()):
                continue
        found.append(to_tuple(codec, thread_id, item, pending_writes(codec, writes)))
        if limit is not None and len(found) >= limit:
            break
    return found
