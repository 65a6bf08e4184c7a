"""Session: one agent session opened for writing, holding its one-writer lock.

Outside a turn every mutation is durable on return (its own journal record or atomic replace).
Inside `with session.turn():` mutations are validated at once but staged, and the turn commits
them as ONE journal record (one audit intent, one fsynced append), then writes a snapshot:
after a crash either the whole turn is visible or none of it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..core.journal import Op, apply_to_items
from ..errors import InvalidValueError, LimitExceededError, NotFoundError, OperationalError, PolicyError, UsageError
from ..backends.local.layout import JOURNAL_FILE, MANIFEST_FILE, slot_target
from ..core.records import Manifest, SessionMetadata, SlotEnvelope
from ..backends.local.pipeline import OpenSession, Pipeline, VaultSink, checked_key
from ..core.policy import encode_name
from ..core.secrets import resolve_value, unescape_value
from ..core.secrets.vault import unseal

if TYPE_CHECKING:
    from .store import SecureStore

_METADATA_FIELDS = frozenset(SessionMetadata.model_fields)


class SlotHandle:
    """Per-extension state: {ext_id, slot_version, payload}, with optimistic concurrency."""

    def __init__(self, session: Session, ext_id: str) -> None:
        self._session = session
        self.ext_id = ext_id

    def _envelope(self) -> SlotEnvelope | None:
        staged = self._session._staged_slots
        if self.ext_id in staged:
            return staged[self.ext_id]
        return self._session._pipeline.current_slot(self._session._open, self.ext_id)

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
        with self._session._audit_rejection("slot.put", slot_target(encode_name(self.ext_id))):
            return self._session._put_slot(self.ext_id, payload, expected_version)

    def delete(self) -> None:
        self._session._delete_slot(self.ext_id)


class Session:
    def __init__(self, store: SecureStore, open_session: OpenSession) -> None:
        self._store = store
        self._open = open_session
        self._pipeline: Pipeline = store.pipeline
        self._staged: list[Op] | None = None
        self._staged_slots: dict[str, SlotEnvelope | None] = {}
        self._on_disk: dict[str, bool] = {}
        self._sink: VaultSink | None = None
        self._rollback: tuple[list[Any], Manifest, int] | None = None
        self._in_turn_block = False
        # A one-call store helper (store.put) records its rejections in the store log instead.
        self.rejections_in_session_log = True

    # -- lifecycle -------------------------------------------------------------------------------
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
    def _audit_rejection(self, op: str, target: str | None) -> Iterator[None]:
        """A policy rejection through this handle is recorded in the session's own log (the
        rate bound applies), exactly as the store records one made through `store.put`; the
        error still reaches the caller."""
        try:
            yield
        except PolicyError as error:
            if not error.audited and self.rejections_in_session_log:
                error.audited = True
                try:
                    self._pipeline.record_rejection(self._open.log, op, target, error)
                except OperationalError:
                    pass  # never masks the rejection itself
            raise

    def append_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        """Append transcript items (JSON objects); returns the new item count."""
        with self._audit_rejection("session.append", JOURNAL_FILE):
            return self._append_items(items)

    def _append_items(self, items: Sequence[Mapping[str, Any]]) -> int:
        if isinstance(items, Mapping) or not isinstance(items, Sequence):
            raise InvalidValueError("append_items takes a list of JSON objects")
        for index, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise InvalidValueError(f"transcript item {index} is not a JSON object")
        total = len(self._open.items) + len(items)
        if total > self._pipeline.limits.max_items:
            raise LimitExceededError(f"transcript would hold {total} items (limit {self._pipeline.limits.max_items})")
        redacted, sink = self._prepare([dict(item) for item in items])
        self._record({"op": "append", "items": redacted}, sink)
        return len(self._open.items)

    def items(self, limit: int | None = None, *, resolve: bool = False) -> list[Any]:
        """The latest `limit` items (all when None), oldest first."""
        if limit is not None and limit < 0:
            raise UsageError("limit must be 0 or more")
        chosen = self._open.items if limit is None else self._open.items[len(self._open.items) - limit:]
        return [self._render(item, resolve) for item in chosen]

    def __len__(self) -> int:
        return len(self._open.items)

    def pop_item(self, *, resolve: bool = False) -> Any:
        """Remove and return the last item."""
        if not self._open.items:
            raise NotFoundError("the transcript is empty")
        last = self._open.items[-1]
        self._record({"op": "pop"}, None)
        return self._render(last, resolve)

    def clear(self) -> None:
        self._record({"op": "clear"}, None)

    # -- slots -----------------------------------------------------------------------------------
    def slot(self, ext_id: str) -> SlotHandle:
        with self._audit_rejection("slot.open", None):
            key = checked_key(ext_id, what="slot name", max_bytes=self._pipeline.limits.max_key_bytes)
        return SlotHandle(self, key)

    def slots(self) -> list[str]:
        names = set(self._store._slot_names(self._open.state, self.name))
        for ext_id, envelope in self._staged_slots.items():
            (names.add if envelope is not None else names.discard)(ext_id)
        return sorted(names)

    def _put_slot(self, ext_id: str, payload: Any, expected: int | None) -> int:
        if self._staged is None:
            version = self._pipeline.put_slot(self._open, ext_id, payload, expected)
            self._touched()
            return version
        handle = SlotHandle(self, ext_id)
        current = handle.version
        on_disk = self._slot_on_disk(ext_id)
        adding = current == 0 and not on_disk
        self._pipeline.slot_version_check(self._open, ext_id, current, expected, adding=adding,
                                          staged=self._staged_slot_delta())
        redacted, _ = self._prepare(payload)
        envelope = SlotEnvelope(ext_id=ext_id, slot_version=current + 1, payload=redacted)
        self._staged.append({"op": "slot", "ext_id": ext_id, "slot_version": current + 1, "payload": redacted})
        self._staged_slots[ext_id] = envelope
        return current + 1

    def _slot_on_disk(self, ext_id: str) -> bool:
        """Does the slot exist as of the last commit (remembered for the turn)?"""
        if ext_id not in self._on_disk:
            self._on_disk[ext_id] = self._pipeline.current_slot(self._open, ext_id) is not None
        return self._on_disk[ext_id]

    def _staged_slot_delta(self) -> int:
        """Slots this turn adds minus slots it removes (for the slot cap before commit)."""
        delta = 0
        for ext_id, envelope in self._staged_slots.items():
            on_disk = self._slot_on_disk(ext_id)
            delta += (envelope is not None and not on_disk) - (envelope is None and on_disk)
        return delta

    def _delete_slot(self, ext_id: str) -> None:
        if self._staged is None:
            self._pipeline.delete_slot(self._open, ext_id)
            self._touched()
            return
        if SlotHandle(self, ext_id).version == 0:
            raise NotFoundError(f"slot {encode_name(ext_id)} does not exist")
        self._staged.append({"op": "slot-delete", "ext_id": ext_id})
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
        with self._audit_rejection("session.meta", MANIFEST_FILE):
            return self._update_metadata(fields)

    def _update_metadata(self, fields: dict[str, Any]) -> int:
        unknown = set(fields) - _METADATA_FIELDS
        if unknown:
            raise InvalidValueError(f"unknown metadata field(s): {', '.join(sorted(unknown))}")
        merged = {**self._open.manifest.metadata.model_dump(), **fields}
        if merged.get("labels") is None:
            merged["labels"] = {}
        redacted, sink = self._prepare(merged)
        try:
            metadata = self._validated_metadata(redacted)
        except BaseException:
            sink.rollback()
            raise
        revision = self._pipeline.next_revision(self._open, metadata)
        self._record({"op": "meta", "revision": revision.model_dump()}, sink)
        self._open.manifest, self._open.revisions = revision, self._open.revisions + 1
        if self._staged is None:
            self._store._index_note(self.name, self._open)  # now with the new title/workspace
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
        return self._store._history(self._open.dir, self.name)

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
        self._sink = VaultSink(self._pipeline, self._open)
        self._rollback = (list(self._open.items), self._open.manifest, self._open.revisions)

    def commit_turn(self) -> None:
        """Commit the open turn's batch (one journal record), then snapshot: a durable turn
        boundary. Outside a turn it only snapshots what the journal holds."""
        if self._staged is not None:
            ops, sink = self._staged, self._sink
            vault_op = sink.vault_op() if sink is not None else None
            batch = ([vault_op] if vault_op else []) + ops
            try:
                if ops:
                    with self._audit_rejection("session.turn", JOURNAL_FILE):  # a cap the whole turn exceeds
                        self._pipeline.append_record(self._open, batch)
            except BaseException:
                self._abort_turn()
                raise
            self._end_turn()
            if ops:
                self._touched()
        if self._open.journal_records:
            self._pipeline.snapshot(self._open)
        if self._in_turn_block:
            self.begin_turn()

    def _abort_turn(self) -> None:
        if self._rollback is not None:
            self._open.items, self._open.manifest, self._open.revisions = self._rollback
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
        return self._pipeline.prepare(self._open, value, self._sink)

    def _record(self, op: Op, sink: VaultSink | None) -> None:
        """Stage an op in the open turn, or commit it now as its own journal record."""
        if self._staged is not None:
            self._staged.append(op)
            apply_to_items(self._open.items, [op])
            return
        vault_op = sink.vault_op() if sink is not None else None
        try:
            self._pipeline.append_record(self._open, ([vault_op] if vault_op else []) + [op])
        except BaseException:
            if sink is not None:
                sink.rollback()
            raise
        apply_to_items(self._open.items, [op])
        if self._pipeline.snapshot_due(self._open):
            self._pipeline.snapshot(self._open)
        self._touched(metadata=op["op"] == "meta")

    def _touched(self, metadata: bool = False) -> None:
        """A write committed: keep the listing index current (metadata: after the manifest
        revision is in memory, see update_metadata)."""
        if not metadata:
            self._store._index_note(self.name, self._open)

    def _render(self, value: Any, resolve: bool) -> Any:
        if not resolve:
            return unescape_value(value)  # builds new containers: callers cannot alter our state
        from_disk = self._store._resolver(self._open.dir, self.name)

        def lookup(scheme: str, ident: str) -> str | bytes:
            # A turn's staged values may name secrets sealed only in this session's vault so far.
            vault, data_key = self._open.vault, self._open.data_key
            if scheme == "vault" and vault is not None and data_key is not None and ident in vault.entries:
                return unseal(vault, data_key, ident)
            return from_disk(scheme, ident)  # type: ignore[no-any-return]

        return resolve_value(value, lookup)
