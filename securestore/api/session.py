"""Session: one agent session opened for writing, holding its one-writer lock.

Outside a turn every mutation is durable on return (its own journal record or atomic replace).
Inside `with session.turn():` mutations are validated at once but staged, and the turn commits
them as ONE journal record (one audit intent, one fsynced append): after a crash either the
whole turn is visible or none of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..backends.base import SessionBackend, Subject
from ..core.journal import TRANSCRIPT_OPS, Op
from ..core.policy import describe_key, encode_name, slot_key
from ..core.prepare import prepare
from ..core.records import Manifest, SessionMetadata, SlotEnvelope
from ..core.secrets.sink import VaultSink
from ..errors import InvalidValueError, LimitExceededError, NotFoundError, OperationalError, PolicyError, UsageError
from .reads import Lookup, render, resolver

_METADATA_FIELDS = frozenset(SessionMetadata.model_fields)
@dataclass(frozen=True)
class SessionHooks:
    """What a session handle needs from its store: where env references resolve, and what
    happens after a committed write outside a turn (the listing index is told)."""
    environ: Mapping[str, str]
    on_write: Callable[[SessionBackend], None] = lambda session: None


class SlotHandle:
    """Per-extension state: {ext_id, slot_version, payload}, with optimistic concurrency."""

    def __init__(self, session: Session, ext_id: str) -> None:
        self._session = session
        self.ext_id = ext_id

    def _envelope(self) -> SlotEnvelope | None:
        staged = self._session._staged_slots
        if self.ext_id in staged:
            return staged[self.ext_id]
        return self._session._open.slot(self.ext_id)

    @property
    def version(self) -> int:
        """0 when the slot does not exist."""
        envelope = self._envelope()
        return envelope.slot_version if envelope else 0

    def get(self, *, resolve: bool = False, default: Any = None) -> Any:
        envelope = self._envelope()
        if envelope is None:
            return default
        return self._session._render(envelope.payload, resolve)

    def put(self, payload: Any, *, expected_version: int | None = None) -> int:
        """Store `payload`; with `expected_version`, fail with VersionConflictError unless the
        slot is at exactly that version (0: must not exist). Returns the new version."""
        with self._session._audit_rejection("slot.put", Subject.slot(self.ext_id)):
            return self._session._put_slot(self.ext_id, payload, expected_version)

    def delete(self) -> None:
        self._session._delete_slot(self.ext_id)


class Session:
    def __init__(self, open_session: SessionBackend, hooks: SessionHooks) -> None:
        self._open = open_session
        self._hooks = hooks
        self._limits = open_session.limits
        self._staged: list[Op] | None = None
        self._staged_slots: dict[str, SlotEnvelope | None] = {}
        self._on_disk: dict[str, bool] = {}
        self._sink: VaultSink | None = None
        self._rollback: tuple[Manifest, int] | None = None
        self._in_turn_block = False
        # A one-call store helper (store.put) records its rejections in the store log instead.
        self.rejections_in_session_log = True

    # -- lifecycle -------------------------------------------------------------------------------
    @property
    def backend(self) -> SessionBackend:
        """The open session in storage (for the store's own bookkeeping)."""
        return self._open

    @property
    def key(self) -> str:
        return self._open.key

    @property
    def name(self) -> str:
        return self._open.name

    @property
    def recovered(self) -> list[str]:
        """What opening this session repaired (torn tails, dangling intents, a stale lock)."""
        return list(self._open.recovered)

    def close(self) -> None:
        """Release the lock. A turn opened with begin_turn() and not committed is discarded."""
        if self._staged is not None:
            self._abort_turn()
        self._open.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transcript ------------------------------------------------------------------------------
    @contextmanager
    def _audit_rejection(self, op: str, subject: Subject | None) -> Iterator[None]:
        """A policy rejection through this handle is recorded in the session's own log (the
        rate bound applies), exactly as the store records one made through `store.put`; the
        error still reaches the caller."""
        try:
            yield
        except PolicyError as error:
            if not error.audited and self.rejections_in_session_log:
                error.audited = True
                try:
                    self._open.record_rejection(op, subject, error)
                except OperationalError:
                    pass  # never masks the rejection itself
            raise

    def append_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Append transcript items (JSON objects); returns the new item count."""
        with self._audit_rejection("session.append", Subject.TRANSCRIPT):
            return self._append_items(items)

    def _append_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        if isinstance(items, Mapping) or not isinstance(items, Sequence):
            raise InvalidValueError("append_items takes a list of JSON objects")
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InvalidValueError(f"transcript item {index} is not a JSON object")
        with self._open.group() if self._staged is None else nullcontext():  # (`_record` joins it)
            total = self._open.item_count() + len(items)
            if total > self._limits.max_items:
                raise LimitExceededError(f"transcript would hold {total} items (limit {self._limits.max_items})")
            redacted, sink = self._prepare([dict(item) for item in items])
            self._record({"op": "append", "items": redacted}, sink)
        return self._open.item_count()

    def items(self, limit: int | None = None, *, resolve: bool = False) -> list[Any]:
        """The latest `limit` items (all when None), oldest first."""
        if limit is not None and limit < 0:
            raise UsageError("limit must be 0 or more")
        return [self._render(item, resolve) for item in self._open.tail(limit)]

    def __len__(self) -> int:
        return self._open.item_count()

    def pop_item(self, *, resolve: bool = False) -> Any:
        """Remove and return the last item."""
        last = self._open.tail(1)
        if not last:
            raise NotFoundError("the transcript is empty")
        self._record({"op": "pop"}, None)
        return self._render(last[0], resolve)

    def clear(self) -> None:
        self._record({"op": "clear"}, None)

    # -- slots -----------------------------------------------------------------------------------
    def slot(self, ext_id: str) -> SlotHandle:
        with self._audit_rejection("slot.open", None):
            key = slot_key(ext_id, self._limits.max_key_bytes)
        return SlotHandle(self, key)

    def slots(self) -> list[str]:
        names = set(self._open.slot_names())
        for ext_id, envelope in self._staged_slots.items():
            (names.add if envelope is not None else names.discard)(ext_id)
        return sorted(names)

    def _put_slot(self, ext_id: str, payload: Any, expected: int | None) -> int:
        current = SlotHandle(self, ext_id).version
        if self._staged is None:
            self._open.slot_version_check(ext_id, current, expected, adding=current == 0)
        else:
            adding = current == 0 and not self._slot_on_disk(ext_id)
            self._open.slot_version_check(ext_id, current, expected, adding=adding, staged=self._staged_slot_delta())
        redacted, sink = self._prepare(payload)
        self._record({"op": "slot", "ext_id": ext_id, "slot_version": current + 1, "payload": redacted}, sink)
        if self._staged is not None:
            self._staged_slots[ext_id] = SlotEnvelope(ext_id=ext_id, slot_version=current + 1, payload=redacted)
        return current + 1

    def _slot_on_disk(self, ext_id: str) -> bool:
        """Does the slot exist as of the last commit (remembered for the turn)?"""
        if ext_id not in self._on_disk:
            self._on_disk[ext_id] = self._open.slot(ext_id) is not None
        return self._on_disk[ext_id]

    def _staged_slot_delta(self) -> int:
        """Slots this turn adds minus slots it removes (for the slot cap before commit)."""
        delta = 0
        for ext_id, envelope in self._staged_slots.items():
            on_disk = self._slot_on_disk(ext_id)
            delta += (envelope is not None and not on_disk) - (envelope is None and on_disk)
        return delta

    def _delete_slot(self, ext_id: str) -> None:
        if SlotHandle(self, ext_id).version == 0:
            raise NotFoundError(f"slot {encode_name(ext_id)} does not exist")
        self._record({"op": "slot-delete", "ext_id": ext_id}, None)
        if self._staged is not None:
            self._staged_slots[ext_id] = None

    # -- metadata --------------------------------------------------------------------------------
    @property
    def metadata(self) -> dict[str, Any]:
        """The latest metadata, secrets as references."""
        return self.get_metadata()

    def get_metadata(self, *, resolve: bool = False) -> dict[str, Any]:
        return dict(self._render(self._open.manifest.metadata.model_dump(), resolve))

    @property
    def revision(self) -> int:
        return self._open.revisions

    def update_metadata(self, **fields: Any) -> int:
        """Merge fields (title, workspace, agent, model, labels) into a new manifest revision;
        a field set to None is cleared. Returns the revision number."""
        with self._audit_rejection("session.meta", Subject.METADATA):
            return self._update_metadata(fields)

    def _update_metadata(self, fields: dict[str, Any]) -> int:
        unknown = set(fields) - _METADATA_FIELDS
        if unknown:
            raise InvalidValueError(f"unknown metadata field(s): {', '.join(sorted(unknown))}")
        merged = {**self._open.manifest.metadata.model_dump(), **fields}
        if merged.get("labels") is None:
            merged["labels"] = {}
        sink = self._sink or self._open.sink()
        mark = sink.mark()  # in a turn the sink holds the turn's earlier secrets: forget only this write's
        redacted = prepare(merged, sink, self._limits)
        try:
            metadata = self._validated_metadata(redacted)
        except BaseException:
            sink.rollback(mark)
            raise
        revision = self._open.next_revision(metadata)
        self._record({"op": "meta", "revision": revision.model_dump()}, sink, manifest=revision)
        return revision.rev

    @staticmethod
    def _validated_metadata(value: Any) -> SessionMetadata:
        try:
            return SessionMetadata.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidValueError(f"metadata field {where}: {first['msg']}") from None

    def history(self) -> list[dict[str, Any]]:
        """Every manifest revision, oldest first (secrets as references)."""
        return [render(revision.model_dump(), None) for revision in self._open.revisions_on_disk()]

    # -- turns -----------------------------------------------------------------------------------
    @contextmanager
    def turn(self) -> Iterator[Session]:
        """Stage every mutation in the block; commit them as one atomic batch on success. A
        `commit_turn()` inside the block commits what is staged so far and starts a new batch."""
        self.begin_turn()
        self._in_turn_block = True
        try:
            yield self
        except BaseException:
            self._abort_turn()
            raise
        finally:
            self._in_turn_block = False
        self.commit_turn()

    def begin_turn(self) -> None:
        if self._staged is not None:
            raise UsageError("a turn is already open")
        self._staged = []
        self._staged_slots = {}
        self._sink = self._open.sink()
        self._rollback = (self._open.manifest, self._open.revisions)

    def commit_turn(self) -> None:
        """Commit the open turn's batch: ONE journal record, a durable turn boundary. Outside a
        turn it seals the journal's active segment (nothing is copied; see README "On disk")."""
        in_turn, ops = self._staged is not None, self._staged or []
        with self._open.group():
            if in_turn:
                try:
                    if ops:
                        with self._audit_rejection("session.turn", Subject.TRANSCRIPT):  # a cap the turn exceeds
                            self._open.commit(_with_vault_op(self._sink, ops))
                except BaseException:
                    self._abort_turn()
                    raise
                self._end_turn()
            if ops:
                self._hooks.on_write(self._open)  # after the new revision is in memory (title, workspace)
            if not in_turn or self._open.seal_due():
                self._open.seal()
        if self._in_turn_block:
            self.begin_turn()

    def _abort_turn(self) -> None:
        self._open.discard_staged()
        if self._rollback is not None:
            manifest, revisions = self._rollback
            self._open.set_manifest(manifest, revisions)
        if self._sink is not None:
            self._sink.rollback()
        self._end_turn()

    def _end_turn(self) -> None:
        self._staged = None
        self._staged_slots = {}
        self._on_disk = {}
        self._sink = None
        self._rollback = None

    # -- internals -------------------------------------------------------------------------------
    def _prepare(self, value: Any) -> tuple[Any, VaultSink]:
        """validate -> redact, into the turn's vault sink when a turn is open."""
        sink = self._sink or self._open.sink()
        return prepare(value, sink, self._limits), sink

    def _record(self, op: Op, sink: VaultSink | None, manifest: Manifest | None = None) -> None:
        """Stage an op in the open turn, or commit it now on its own (durable on return)."""
        if self._staged is not None:
            self._staged.append(op)
            self._applied(op, manifest)
            return
        with self._open.group():
            try:
                self._open.commit(_with_vault_op(sink, [op]), alone=True)
            except BaseException:
                if sink is not None:
                    sink.rollback()
                raise
            self._applied(op, manifest)
            if self._open.seal_due():
                self._open.seal()
            self._hooks.on_write(self._open)  # after the new revision is in memory (title, workspace)

    def _applied(self, op: Op, manifest: Manifest | None) -> None:
        if op["op"] in TRANSCRIPT_OPS and self._staged is not None:  # committed ops: counted by the commit
            self._open.stage_ops([op])
        if manifest is not None:
            self._open.set_manifest(manifest, self._open.revisions + 1)

    def _render(self, value: Any, resolve: bool) -> Any:
        if not resolve:
            return render(value, None)
        return render(value, self._lookup)

    def _lookup(self) -> Lookup:
        opened = self._open
        return resolver(describe_key(opened.key, opened.name), self._hooks.environ, opened.has_master_key,
                        opened.stored_vault, opened.vault_in_memory)


def _with_vault_op(sink: VaultSink | None, ops: list[Op]) -> list[Op]:
    """A batch: the vault's new secrets first (if any), then the ops."""
    vault_op = sink.vault_op() if sink is not None else None
    return ([vault_op] if vault_op else []) + ops
