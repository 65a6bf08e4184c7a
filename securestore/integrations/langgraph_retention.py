"""Rewriting a `SecureStoreSaver` thread (see `securestore.integrations.langgraph`): retention,
prune, delete_for_runs and the items copy_thread writes again.

A rewrite is one audited turn that clears the transcript and re-appends what is kept, each kept
checkpoint followed by its writes; the old records then leave the disk (the audit log keeps their
digests). It is DeltaChannel-safe: a kept checkpoint whose metadata counts delta updates since the
last snapshot keeps its ancestors back to the one holding the value. Secrets survive it: kept items
are re-read with their values and re-redacted into the vault, whole-value secrets as `Secret`. A
rewrite never turns a live reference into text: when a reference among the kept items cannot be
resolved now (no master key, an unset environment variable), it is refused with
`KeyMaterialError`/`SecretUnavailableError` and the thread is left as it was. Writes that arrived
before their checkpoint (LangGraph may store them first) are kept for the `put` still to come."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from ..api.session import Session
from ..core.secrets import REFERENCE, Secret
from ..errors import KeyMaterialError, SecretUnavailableError, UsageError
from .langgraph_items import CHECKPOINT, WRITES, Item, append

Kept = set[tuple[str, str]]  # (namespace, checkpoint id)


@dataclass(frozen=True)
class Retention:
    """Per-thread retention. `keep_last`: checkpoints kept per namespace; `max_age_seconds`:
    checkpoints older than this (by their `ts`) are dropped; the latest checkpoint of each
    namespace is always kept. Applied after every `every` puts on a thread (default: keep_last,
    else 16), and by `SecureStoreSaver.apply_retention`."""

    keep_last: int | None = None
    max_age_seconds: float | None = None
    every: int | None = None

    def __post_init__(self) -> None:
        if self.keep_last is None and self.max_age_seconds is None:
            raise UsageError("Retention needs keep_last or max_age_seconds")
        if self.keep_last is not None and self.keep_last < 1:
            raise UsageError("Retention.keep_last must be 1 or more")
        if self.max_age_seconds is not None and self.max_age_seconds <= 0:
            raise UsageError("Retention.max_age_seconds must be more than 0")
        if self.every is not None and self.every < 1:
            raise UsageError("Retention.every must be 1 or more")

    @property
    def period(self) -> int:
        return self.every or self.keep_last or 16


def _age_seconds(stamp: object, now: float) -> float:
    try:
        moment = dt.datetime.fromisoformat(str(stamp))
    except ValueError:
        return 0.0  # an unreadable time never makes a checkpoint expire
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return now - moment.timestamp()


def retain(session: Session, policy: Retention, now: float, what: str = "retention") -> int:
    """Apply `policy` to the open session's transcript (`now` in seconds since the epoch);
    returns how many checkpoints it removed."""
    plain = session.items()
    by_ns: dict[str, list[Item]] = defaultdict(list)
    for item in plain:
        if isinstance(item, dict) and item.get("lg") == CHECKPOINT:
            by_ns[item["ns"]].append(item)
    keep: Kept = set()
    for ns, checkpoints in by_ns.items():
        chosen = checkpoints[-policy.keep_last:] if policy.keep_last else checkpoints
        if policy.max_age_seconds is not None:
            chosen = [item for item in chosen if _age_seconds(item.get("ts"), now) <= policy.max_age_seconds]
        keep.update((ns, item["id"]) for item in chosen)
        keep.add((ns, checkpoints[-1]["id"]))  # a namespace always keeps its head
        keep |= delta_ancestors(ns, checkpoints, keep)
    removed = sum(len(checkpoints) for checkpoints in by_ns.values()) - len(keep)
    if removed <= 0:
        return 0
    rewrite(session, plain, keep, what)
    return removed


def delta_ancestors(ns: str, checkpoints: list[Item], keep: Kept) -> Kept:
    """The ancestors (parent chain) that kept checkpoints' DeltaChannels are rebuilt from:
    back to the nearest one holding a value (a `_DeltaSnapshot`) for each such channel."""
    by_id = {item["id"]: item for item in checkpoints}
    needed: Kept = set()
    for item in checkpoints:
        if (ns, item["id"]) not in keep:
            continue
        missing = set(item.get("delta") or ()) - set(item.get("values") or ())
        parent = by_id.get(item.get("parent") or "")
        while missing and parent is not None:
            needed.add((ns, parent["id"]))
            missing -= set(parent.get("values") or ())
            parent = by_id.get(parent.get("parent") or "")
    return needed


def has_runs(items: Iterator[Any], runs: Collection[str]) -> bool:
    return any(isinstance(item, dict) and item.get("lg") == CHECKPOINT and item.get("run") in runs for item in items)


def delete_runs(session: Session, runs: Collection[str]) -> None:
    """Drop every checkpoint of these runs (and its writes) from the open session: one rewrite."""
    plain = session.items()
    gone = {(item["ns"], item["id"]) for item in plain
            if isinstance(item, dict) and item.get("lg") == CHECKPOINT and item.get("run") in runs}
    keep = {(item["ns"], item["id"]) for item in plain if isinstance(item, dict)
            and item.get("lg") == CHECKPOINT and (item["ns"], item["id"]) not in gone}
    rewrite(session, plain, keep, "delete_for_runs")


def _rearm(plain: Any, resolved: Any) -> Any:
    """A stored value to write again: `resolved` (secrets put back), with every string that was
    exactly one reference wrapped in `Secret` so the store vaults it again. A secret found inside
    text is found again by the same detectors, so its text is passed as it is."""
    if isinstance(plain, str):
        if plain != resolved and isinstance(resolved, (str, bytes)):
            whole = REFERENCE.fullmatch(plain)
            if whole is not None:
                return Secret.from_env(whole.group(2)) if whole.group(1) == "env" else Secret(resolved)
        return resolved
    if isinstance(plain, dict) and isinstance(resolved, dict):
        return {key: _rearm(value, resolved.get(key)) for key, value in plain.items()}
    if isinstance(plain, list) and isinstance(resolved, list):
        return [_rearm(value, other) for value, other in zip(plain, resolved, strict=True)]
    return resolved


def _live(value: Any) -> bool:
    """Holds a reference that resolves to a value (vault or env; a redacted one is dead already)."""
    if isinstance(value, str):
        return any(match.group(1) != "redacted" for match in REFERENCE.finditer(value))
    if isinstance(value, dict):
        return any(_live(child) for child in value.values())
    if isinstance(value, list):
        return any(_live(child) for child in value)
    return False


def rearmed(session: Session, plain: list[Any], first: int, what: str) -> list[Any]:
    """`plain[first:]` (the newest items of the open session) ready to be written again: secrets
    put back and marked. Refused when a live reference among them cannot be resolved now: written
    again as text, it would never resolve any more."""
    tail = plain[first:]
    if not tail:
        return []
    try:
        resolved = session.items(len(tail), resolve=True)
    except (KeyMaterialError, SecretUnavailableError) as error:
        if not any(_live(item) for item in tail):
            return tail  # nothing to lose: no reference, or only dropped (redacted) ones
        why = ("this store handle has no master key" if isinstance(error, KeyMaterialError)
               else f"a reference cannot be resolved now ({str(error)[:160]})")
        raise type(error)(f"langgraph {what} refused: {why}, and rewriting the thread would turn its secret "
                          "references into plain text; retry where every reference resolves (master key, "
                          "environment variables set)") from None
    return [_rearm(item, other) for item, other in zip(tail, resolved, strict=True)]


def _key(item: Item) -> tuple[str, str]:
    return str(item.get("ns")), str(item.get("id"))


def _order(plain: list[Any], keep: Kept) -> list[int]:
    """Indexes of `plain` to write again, in order: other items where they are, each kept
    checkpoint followed by its writes (so none needs `back` any more), then the writes that
    arrived before their checkpoint (newer than every stored one of their namespace), which a
    later `put` finds through `back`."""
    writes: dict[tuple[str, str], list[int]] = defaultdict(list)
    newest: dict[str, str] = {}
    stored: set[tuple[str, str]] = set()
    for index, item in enumerate(plain):
        if isinstance(item, dict) and item.get("lg") == WRITES:
            writes[_key(item)].append(index)
        elif isinstance(item, dict) and item.get("lg") == CHECKPOINT:
            stored.add(_key(item))
            newest[str(item.get("ns"))] = max(newest.get(str(item.get("ns")), ""), str(item.get("id")))
    order: list[int] = []
    for index, item in enumerate(plain):
        if not isinstance(item, dict) or item.get("lg") not in (CHECKPOINT, WRITES):
            order.append(index)
        elif item["lg"] == CHECKPOINT and _key(item) in keep:
            order.append(index)
            order.extend(writes[_key(item)])
    for (ns, checkpoint_id), indexes in writes.items():
        if (ns, checkpoint_id) not in stored and checkpoint_id > newest.get(ns, ""):
            order.extend(indexes)
    return order


def _unhooked(item: Any) -> Any:
    """A kept checkpoint is now followed by its writes: it needs no `back` any more."""
    return {**item, "back": 0} if isinstance(item, dict) and item.get("lg") == CHECKPOINT else item


def rewrite(session: Session, plain: list[Any], keep: Kept, what: str) -> None:
    """Replace the transcript by what `_order` keeps: ONE audited turn (clear + append)."""
    order = _order(plain, keep)
    first = min(order, default=len(plain))
    again = rearmed(session, plain, first, what)
    items = [_unhooked(again[index - first]) for index in order]
    session.commit_turn()  # seal the active segment: after the clear, every older segment leaves the disk
    with session.turn():
        session.clear()
        if items:
            append(session, items, what)
