"""OpenAI Agents SDK session backed by securestore: `SecureStoreSession(session_id, store)`.

Pass it as `Runner.run(agent, input, session=SecureStoreSession("chat-42", store))`. It is a
plain class that satisfies the SDK's `agents.memory.Session` protocol (`isinstance` holds); the
store may be a sync `SecureStore` or an `AsyncSecureStore`.

What is stored where:

- One SDK session is one securestore session whose key is the `session_id` (created on first
  use, with the label `framework=openai-agents`). Every SDK item (a JSON object: user message,
  assistant message, `function_call`, `function_call_output`, ...) is one transcript item, in
  order. Nothing goes to slots; the metadata is only that label.
- Each `add_items` call is ONE atomic, durable, audited append: after a crash either the whole
  batch (a tool call and its output, say) is there or none of it. A runner cancelled while an
  `add_items` runs still gets it completed; `store.interrupted` records how it ended.
- `clear_session` empties the transcript; the session itself and its audit trail remain.

One writer: the object takes the session's writer lock on first use and holds it until
`await s.close()` (or the end of `async with s:`). A second `SecureStoreSession` on the same id,
in this process or another, gets `LockHeldError` (after the store's `lock_timeout_seconds`)
instead of interleaving two runners' histories. Run one runner per session object at a time.

What the model sees of a secret on the next turn: secret values in items (an API key in a tool
output, a password typed by the user) are replaced by references before anything is written.
By default (`resolve_secrets=False`) `get_items` returns the references, so the model sees
`[secret:vault:<id>]`, never the value (a tool the model passes it to receives that reference
string too). With `resolve_secrets=True` `get_items` puts the values back, in memory only, for
the model; what is persisted is still the reference, but the value goes wherever the SDK sends
model input (the model provider, and its traces unless tracing is disabled). It needs a store
opened with the master key (`UsageError` otherwise); a read whose references cannot be resolved
(a value dropped because an earlier handle had no master key) falls back to references with a
logged warning. `pop_item` follows the same setting.

Tool arguments and outputs held as JSON text (the `arguments`, `input` or `output` string of any
item: a `function_call`'s arguments, a call output's output, the `text` of its content parts)
are parsed and checked with the store's structured rules (credential-named keys at any depth,
`[name, value]` and `{"name": ..., "value": ...}` pairs, escaped keys), which free text would
miss. When the parsed value holds a secret, the WHOLE string is vaulted as one secret: the
model sees one `[secret:vault:<id>]` in place of all the arguments (not JSON any more), or the
exact original string with `resolve_secrets=True`. Text that is not a JSON object or array goes
through the free-text rules only.

History bounding: `get_items(limit)` reads only the latest `limit` stored items; `limit=None`
falls back to `session_settings.limit` (`SessionSettings(limit=N)`, or per run
`RunConfig(session_settings=...)`), then to the whole history; `0` gives `[]`; a negative limit
means the whole history (as `SQLiteSession`). Nothing is deleted from the store by a limit.

Orphan tool calls (SDK issues #4615, #1061): a tool call stored without its output (a write that
failed after the call, an abandoned approval) makes every later model request fail. `get_items`
never returns a call without an output stored after it, nor an output without its call before
it (the SDK's call types: `function_call`, `custom_tool_call`, `computer_call`,
`apply_patch_call`, `local_shell_call`, `shell_call`, `tool_search_call`, paired by `call_id`; a
call or output without a non-empty string `call_id` pairs with nothing, except a tool search,
whose id is optional: an anonymous output answers the latest open anonymous search, as in the
SDK): it leaves them out of what it returns, with a `reasoning` item right before a
dropped call, lists what it left out in `last_repairs` (the latest read's `Repair`s) and logs it
on the `securestore.integrations.openai_agents` logger. The stored history is never rewritten.
A call and its output written by one `add_items` (the SDK's tool step) always pair. A call with
nothing stored after it may be waiting for an approval: it is left out until its output is
stored, and logged at INFO; once anything follows it, it is damage, logged as a WARNING. With a
`limit`, a pair the window cuts in two loses its output (in `last_repairs`, not logged), so a
read can return fewer than `limit` items.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from agents.memory.session_settings import SessionSettings, resolve_session_limit

from ..aio import AsyncSecureStore, AsyncSession
from ..core.secrets import Secret, holds_secret
from ..errors import (KeyMaterialError, LockHeldError, NotFoundError, SecretUnavailableError,
                      UsageError)
from ._handles import StoreHandle, as_async

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.run_context import RunContextWrapper

__all__ = ["Repair", "SecureStoreSession"]

logger = logging.getLogger(__name__)

# Call types whose output the client must send back, paired by `call_id` (the SDK's own table in
# agents/run_internal/items.py, less `program`, whose output the server produces). Other item
# types (hosted tools, MCP approvals, messages) are passed through unchanged.
CALL_OUTPUT_TYPES = {
    "function_call": "function_call_output",
    "custom_tool_call": "custom_tool_call_output",
    "computer_call": "computer_call_output",
    "apply_patch_call": "apply_patch_call_output",
    "local_shell_call": "local_shell_call_output",
    "shell_call": "shell_call_output",
    "tool_search_call": "tool_search_output",
}
_OUTPUT_TYPES = frozenset(CALL_OUTPUT_TYPES.values())
_ANONYMOUS = frozenset({"tool_search_call", "tool_search_output"})  # call_id optional: paired in order
LABELS = {"framework": "openai-agents"}


@dataclass(frozen=True)
class Repair:
    """An item `get_items` left out of what it returned. `index` is the item's position in the
    stored transcript (0 = oldest); the stored item is unchanged."""

    kind: Literal["orphan_call", "orphan_output", "reasoning"]
    item_type: str
    call_id: str | None
    index: int


def _call_id(item: Any) -> str | None:
    if not isinstance(item, Mapping):
        return None
    value = item.get("call_id")
    if value is None and item.get("type") == "local_shell_call_output":
        value = item.get("id")  # the API's form of this output names its call by `id`
    return value if isinstance(value, str) and value else None


def _type(item: Any) -> str:
    value = item.get("type") if isinstance(item, Mapping) else None
    return value if isinstance(value, str) else ""


def pair_tool_calls(items: Sequence[Any], first_index: int) -> tuple[list[Any], list[Repair]]:
    """`items` without the calls that have no output after them and the outputs that have no
    call before them (with the reasoning item right before a dropped call); `first_index` is the
    stored position of `items[0]`."""
    dropped: dict[int, Repair] = {}
    orphans: list[int] = []
    open_calls: dict[tuple[str, str], list[int]] = {}  # (output type, call id) -> positions of calls
    for position, item in enumerate(items):
        kind, call_id = _type(item), _call_id(item)
        if call_id is None and kind not in _ANONYMOUS and (kind in CALL_OUTPUT_TYPES or kind in _OUTPUT_TYPES):
            # No usable id: no output can answer this call, no call this output (the API rejects both).
            if kind in CALL_OUTPUT_TYPES:
                orphans.append(position)
            else:
                dropped[position] = Repair("orphan_output", kind, None, first_index + position)
        elif kind in CALL_OUTPUT_TYPES:
            waiting = open_calls.setdefault((CALL_OUTPUT_TYPES[kind], call_id or ""), [])
            if waiting and call_id is not None:  # the same id called again before any output: the first is unanswered
                orphans.append(waiting.pop())
            waiting.append(position)
        elif kind in _OUTPUT_TYPES:
            waiting = open_calls.get((kind, call_id or ""), [])
            if waiting:
                waiting.pop()  # anonymous searches: the latest open one, as the SDK pairs them
            else:
                dropped[position] = Repair("orphan_output", kind, call_id, first_index + position)
    for position in sorted(orphans + [p for waiting in open_calls.values() for p in waiting]):
        dropped[position] = Repair("orphan_call", _type(items[position]), _call_id(items[position]),
                                   first_index + position)
        before = position - 1
        # The Responses API rejects a reasoning item not followed by the item it produced.
        if before >= 0 and before not in dropped and _type(items[before]) == "reasoning":
            dropped[before] = Repair("reasoning", "reasoning", None, first_index + before)
    kept = [item for position, item in enumerate(items) if position not in dropped]
    return kept, [dropped[position] for position in sorted(dropped)]


class SecureStoreSession:
    """An `agents.memory.Session` on a securestore session; see the module docstring."""

    def __init__(self, session_id: str, store: StoreHandle, *, resolve_secrets: bool = False,
                 session_settings: SessionSettings | None = None) -> None:
        if not isinstance(session_id, str) or not session_id:
            raise UsageError("session_id must be a non-empty string")
        self.session_id = session_id
        self.session_settings: SessionSettings | None = session_settings
        self.resolve_secrets = resolve_secrets
        self.store: AsyncSecureStore = as_async(store)
        if resolve_secrets and not self.store.sync.has_master_key:
            raise UsageError("resolve_secrets=True needs a store opened with a master key (without one, secret "
                             "values are dropped at write time); open the store with master_key or master_key_file")
        self.last_repairs: list[Repair] = []
        self._session: AsyncSession | None = None
        self._closed = False
        self._lock = asyncio.Lock()  # one operation at a time: a pop's read and write stay together

    # -- lifecycle -------------------------------------------------------------------------------
    async def _open(self) -> AsyncSession:
        """The open securestore session; the first call takes its writer lock (held until close)."""
        if self._closed:
            raise UsageError(f"SecureStoreSession {self.session_id!r} is closed; create a new one to use it again")
        if self._session is None:
            try:
                self._session = await self.store.open_session(self.session_id, create=True,
                                                              metadata={"labels": LABELS})
            except LockHeldError as error:
                raise LockHeldError(f"session {self.session_id!r} is in use by another runner ({error}); close "
                                    "the other SecureStoreSession first or use another session_id") from None
        return self._session

    async def open(self) -> None:
        """Take the session's writer lock now (otherwise the first call takes it)."""
        async with self._lock:
            await self._open()

    async def close(self) -> None:
        """Release the session's writer lock. Idempotent; the object is unusable afterwards."""
        async with self._lock:
            self._closed = True
            session, self._session = self._session, None
            if session is not None:
                await session.close()

    async def __aenter__(self) -> SecureStoreSession:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- the Session protocol ------------------------------------------------------------------
    async def get_items(self, limit: int | None = None, *,
                        wrapper: RunContextWrapper[Any] | None = None) -> list[TResponseInputItem]:
        """The latest `limit` items, oldest first, with unpaired tool calls/outputs left out."""
        async with self._lock:
            session = await self._open()
            effective = resolve_session_limit(limit, self.session_settings)
            if effective == 0:
                self.last_repairs = []
                return []
            window = None if effective is None or effective < 0 else effective
            items, total, unresolved = await session._read(lambda: self._read(session, window))
        if unresolved is not None:
            logger.warning("securestore session %r: secret references kept in the history given to the model: %s",
                           self.session_id, unresolved)
        kept, repairs = pair_tool_calls(items, total - len(items))
        self.last_repairs = repairs
        pending_from = _trailing_start(repairs, total)
        for repair in repairs:
            if repair.kind == "orphan_output" and len(items) < total:
                continue  # its call may lie just before the window: a cut pair, not damage
            # A call with nothing stored after it may still be waiting (an approval): info, not a warning.
            level = logging.INFO if repair.kind != "orphan_output" and repair.index >= pending_from else logging.WARNING
            logger.log(level, "securestore session %r: left %s %s (stored item %d) out of the history given to the "
                       "model: %s; the stored history is unchanged", self.session_id, repair.item_type,
                       repair.call_id or "(no call_id)", repair.index, _WHY[repair.kind])
        return cast("list[TResponseInputItem]", kept)

    def _read(self, session: AsyncSession, window: int | None) -> tuple[list[Any], int, str | None]:
        """In a worker thread: the window, the stored count, and why values were not resolved."""
        unresolved = None
        if self.resolve_secrets:
            try:
                return session.sync.items(window, resolve=True), len(session.sync), None
            except (SecretUnavailableError, KeyMaterialError) as error:
                unresolved = str(error)
        return session.sync.items(window), len(session.sync), unresolved

    async def add_items(self, items: list[TResponseInputItem], *,
                        wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Append `items` as ONE atomic, durable, audited batch ([] writes nothing)."""
        if not items:
            return
        batch = [vault_json_strings(dict(item)) for item in items]
        async with self._lock:
            session = await self._open()
            await session.append_items(batch)

    async def pop_item(self, *, wrapper: RunContextWrapper[Any] | None = None) -> TResponseInputItem | None:
        """Remove and return the newest item; None when the session is empty."""
        async with self._lock:
            session = await self._open()
            resolved = None
            if self.resolve_secrets:
                # Resolve before the pop: a resolution failing after it would lose the item.
                last, _, unresolved = await session._read(lambda: self._read(session, 1))
                resolved = last[0] if last and unresolved is None else None
            try:
                item = await session.pop_item()
            except NotFoundError:
                return None
        return cast("TResponseInputItem", item if resolved is None else resolved)

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Remove every item (one audited write); the session and its audit trail remain."""
        async with self._lock:
            session = await self._open()
            await session.clear()


def _holds_secret(text: str) -> bool:
    """`text` is a JSON object or array holding a secret under the store's structured rules."""
    if not text.lstrip().startswith(("{", "[")):
        return False
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        return False  # not JSON: the free-text rules apply to it as to any string
    return holds_secret(parsed)


def _vaulted(value: Any) -> Any:
    return Secret(value) if isinstance(value, str) and _holds_secret(value) else value


def vault_json_strings(item: dict[str, Any]) -> dict[str, Any]:
    """`item` with each JSON-text argument or output that holds a secret replaced by one `Secret`
    of the whole text. Stored as text, `{"creds": {"pass": ...}}` would escape the structured
    rules the same value gets as an object."""
    for name in ("arguments", "input", "output"):
        if name in item:
            item[name] = _vaulted(item[name])
    output = item.get("output")
    if isinstance(output, list):  # content parts: [{"type": "input_text", "text": "{...}"}]
        item["output"] = [{**part, "text": _vaulted(part["text"])} if isinstance(part, Mapping) and "text" in part
                          else part for part in output]
    return item


def _trailing_start(repairs: list[Repair], total: int) -> int:
    """The stored position from which every item was left out (total when the last was kept)."""
    start = total
    for repair in reversed(repairs):
        if repair.index != start - 1:
            break
        start = repair.index
    return start


_WHY = {
    "orphan_call": "no output was stored after this tool call",
    "orphan_output": "no tool call precedes this output",
    "reasoning": "the tool call it led to was left out",
}
