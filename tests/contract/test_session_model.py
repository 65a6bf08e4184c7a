"""A hypothesis state machine: random sequences of session operations, including turns that
commit or abort and reopening the session, always match a plain in-memory model, and the audit
trail always verifies."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.support.keys import KEYS, MASTER_KEY
from tests.support.examples import examples
from tests.support.stores import make_store
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from securestore import NotFoundError, Secret, SecureStore, Session, StoreConfig, verify_store

SLOTS = st.sampled_from(["ext.a", "ext.b", "ext.c"])
TEXT = st.text(max_size=12) | st.sampled_from(["token ghp_" + "m" * 36, "[secret:env:HOME]"])
ITEM = st.fixed_dictionaries({"role": st.sampled_from(["user", "tool"]), "content": TEXT})


class Aborted(Exception):
    pass


class SessionMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="ss-model-"))
        self.root = self.directory / "store"
        make_store(self.root)
        # A small seal threshold so that segments are sealed mid-sequence.
        self.store = SecureStore(self.root, StoreConfig(snapshot_every_records=4), master_key=MASTER_KEY, environ=KEYS)
        self.session: Session = self.store.create_session("model")
        self.items: list[dict[str, Any]] = []
        self.slots: dict[str, Any] = {}
        self.title: str | None = None
        self.staged: tuple[list[dict[str, Any]], dict[str, Any], str | None] | None = None

    # -- operations ------------------------------------------------------------------------------
    @rule(items=st.lists(ITEM, min_size=1, max_size=3))
    def append(self, items: list[dict[str, Any]]) -> None:
        self.session.append_items(items)
        self.items.extend(items)

    @rule()
    def pop(self) -> None:
        if not self.items:
            try:
                self.session.pop_item()
            except NotFoundError:
                return
            raise AssertionError("pop on an empty transcript did not fail")
        assert self.session.pop_item(resolve=True) == self.items.pop()

    @rule()
    def clear(self) -> None:
        self.session.clear()
        self.items.clear()

    @rule(slot=SLOTS, value=TEXT, typed=st.booleans())
    def put_slot(self, slot: str, value: str, typed: bool) -> None:
        self.session.slot(slot).put({"v": Secret(value) if typed and value else value})
        self.slots[slot] = {"v": value}

    @rule(slot=SLOTS)
    def delete_slot(self, slot: str) -> None:
        if slot in self.slots:
            self.session.slot(slot).delete()
            del self.slots[slot]

    @rule(title=TEXT)
    def retitle(self, title: str) -> None:
        self.session.update_metadata(title=title)
        self.title = title

    @precondition(lambda self: self.staged is None)
    @rule()
    def begin_turn(self) -> None:
        self.session.begin_turn()
        self.staged = (list(self.items), dict(self.slots), self.title)

    @precondition(lambda self: self.staged is not None)
    @rule(commit=st.booleans())
    def end_turn(self, commit: bool) -> None:
        if commit:
            self.session.commit_turn()
            self.session._end_turn()  # noqa: SLF001 - leave batching mode like the turn() block does
        else:
            self.session._abort_turn()  # noqa: SLF001 - what an exception in turn() does
            assert self.staged is not None
            self.items, self.slots, self.title = self.staged
        self.staged = None

    @precondition(lambda self: self.staged is None)
    @rule()
    def snapshot(self) -> None:
        self.session.commit_turn()

    @precondition(lambda self: self.staged is None)
    @rule()
    def reopen(self) -> None:
        self.session.close()
        self.session = self.store.open_session("model")

    # -- what must always hold -------------------------------------------------------------------
    @invariant()
    def matches_the_model(self) -> None:
        assert self.session.items(resolve=True) == self.items
        assert len(self.session) == len(self.items)
        for limit in (0, 1, 3):  # tails walk back through sealed segments, pops and clears
            assert self.session.items(limit, resolve=True) == self.items[max(0, len(self.items) - limit):]
        if self.staged is None:
            assert self.store.read_items("model", 2, resolve=True) == self.items[-2:]
        assert {s: self.session.slot(s).get(resolve=True) for s in self.session.slots()} == self.slots
        assert self.session.get_metadata(resolve=True)["title"] == self.title

    def teardown(self) -> None:
        try:
            if self.staged is not None:
                self.session._abort_turn()  # noqa: SLF001
            self.session.close()
            with self.store.open_session("model") as reopened:  # what is on disk is what was committed
                committed = self.staged[0] if self.staged is not None else self.items
                assert reopened.items(resolve=True) == committed
            report = verify_store(self.store)
            assert report.ok, report.failures[0].describe()
            self.store.close()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


SessionMachine.TestCase.settings = settings(max_examples=examples(40), stateful_step_count=30, deadline=None)
test_session_model = SessionMachine.TestCase
