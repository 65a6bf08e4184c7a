"""A group: the writes of one store change as one transaction, sent in as few round trips as
the change allows (see `PgLink.grouped`).

A write whose result is only checked (a file was there to append to, a row was replaced) is
queued and sent with whatever goes next, in one pipeline: BEGIN and the intent ride with the
act, the outcome rides with COMMIT. Its check runs when its result arrives. A failed check
means the tree is not what the engine wrote on (changed from outside), so the group is
poisoned: it is rolled back, never committed, whatever ran after it.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from .connect import describe_error
from .wire import Rows, Wire


@dataclass(eq=False)
class Anticipated:
    """A lock in a group tried before the code that needs it asks (its statements queued, their
    answers kept as they arrive)."""

    directory: int
    where: tuple[int, str] | None
    exclusive: bool
    answers: list[Rows]


@dataclass(frozen=True, eq=False)
class Queued:
    statement: bytes
    params: dict[str, Any] | None = None
    check: Callable[[Any], None] | None = None  # raises if the first column of the row is wrong
    answer: Callable[[Rows], None] | None = None  # given the rows, when they arrive


@dataclass(frozen=True, eq=False)
class Follower:
    """A write sent after the group's COMMIT, in the same round trip, in a transaction of its own
    under a shared lock (TreeDir.follow_commit); `failed(why)` if it did not commit (the lock
    was not free at once, or anything else failed)."""

    lock: int
    writes: tuple[Queued, ...]
    failed: Callable[[str], None]


class Group:
    """An open group: its thread, its transaction's state, and what its commit owes."""

    def __init__(self, owner: int, label: str) -> None:
        self.owner, self.label = owner, label
        self.begun = False
        self.durable = False  # some write in it was durable: the commit waits for the flush
        self.poisoned = False  # a queued write's check failed: roll back, never commit
        self.mode_sent: str | None = None  # the synchronous_commit the last write statement set
        self.savepoints = 0
        self.pending: list[Queued] = []  # sent ahead of (with) the next statement that needs an answer
        self.after_commit: dict[int, Callable[[], None]] = {}  # lock key -> its release, held back until the commit
        self.then: list[Callable[[], None]] = []  # work that must not join the transaction (after_group)
        self.xact_locks: dict[int, bool] = {}  # lock keys taken inside the transaction (released by its end)
        # Child directories the group knows, without asking, until it ends: every child directory
        # of a directory it holds a lock in (read right after the lock was granted: locks.py
        # `lock_in_group`), and the directories it made (nobody else sees them before the
        # commit), kept in step with its own renames and removals. Only hits are trusted: a
        # name a map lacks is looked up.
        self.child_dirs: dict[int, dict[str, int]] = {}
        self.made: set[int] = set()  # directories this group made
        self.anticipated: dict[int, Anticipated] = {}  # lock key -> a lock tried ahead (locks.py `anticipate`)
        self.ahead: dict[Hashable, list[Rows]] = {}  # reads answered ahead (reads.read_ahead), until a write
        self.writes = 0  # writes queued or sent: a read answered before the latest one is stale
        self.asked: set[Hashable] = set()  # reads asked ahead whose answers are not all in
        self.followers: list[Follower] = []  # sent after COMMIT as one transaction (`finish`)

    def wrote(self) -> None:
        self.writes += 1
        self.ahead.clear()

    def keep(self, key: Hashable, count: int) -> Callable[[Rows], None]:
        """Where the answers of a read of `count` statements go, as they arrive: kept once all
        are in, unless the group wrote since the read was queued."""
        writes, answers = self.writes, []
        self.asked.add(key)

        def store(rows: Rows) -> None:
            answers.append(rows)
            if len(answers) == count:
                self.asked.discard(key)
                if self.writes == writes:
                    self.ahead[key] = answers
        return store

    def begin(self) -> None:
        if not self.begun:
            self.begun = True
            self.pending.insert(0, Queued(b"BEGIN"))

    def made_dir(self, parent: int, name: str, node: int) -> None:
        self.made.add(node)
        self.child_dirs[node] = {}
        self.child_dirs.setdefault(parent, {})[name] = node

    def renamed(self, parent: int, src: str, into: int, dst: str) -> None:
        """`parent`/`src` is now `into`/`dst` (whatever it is: directory, file, or nothing)."""
        source = self.child_dirs.get(parent)
        moved = None if source is None else source.pop(src, None)
        # (A rename here never replaces anything: `dst` was free. Only a map's hits are trusted,
        # so one that misses a directory moved in from elsewhere is still right.)
        if moved is not None:
            self.child_dirs.setdefault(into, {})[dst] = moved

    def removed(self, parent: int, name: str) -> None:
        if parent in self.child_dirs:
            self.child_dirs[parent].pop(name, None)  # (its descendants' ids die with it, never asked again)

    def commit_mode(self, durable: bool) -> str:
        """The synchronous_commit a statement sets: 'on' once any write of the group was durable
        (the transaction's setting is the last one a statement made)."""
        self.durable = self.durable or durable
        self.mode_sent = "on" if self.durable else "off"
        return self.mode_sent

    def commit(self) -> list[Queued]:
        """What ends the transaction: COMMIT, after a SET if the last mode set is not its own."""
        if self.durable == (self.mode_sent == "on"):
            return [Queued(b"COMMIT")]
        return [Queued(b"SET LOCAL synchronous_commit TO " + (b"on" if self.durable else b"off")), Queued(b"COMMIT")]

    def follow(self, lock: int, writes: tuple[Queued, ...], failed: Callable[[str], None]) -> None:
        """Send `writes` after the commit, in a transaction of their own under shared lock `lock`
        (tried: not free, the follower fails): see `finish`."""
        self.followers.append(Follower(lock, writes, failed))

    def finish(self, wire: Wire) -> str | None:
        """Send what is queued and COMMIT (if begun), then the followers' transaction, in one
        round trip; run the checks. Raises as `flush` does if the group's own part failed (then
        nothing after the failure ran); returns why the followers failed (nothing of theirs
        committed), or None."""
        own = self.pending + (self.commit() if self.begun else [])
        followers, self.pending, self.followers = self.followers, [], []
        tail = _follower_items(followers)
        try:
            answers = wire.run([(item.statement, item.params) for item in own + tail])
        except psycopg.Error as exc:
            done = wire.answered
            self.settle(list(zip(own, done)))
            if len(done) < len(own):
                raise
            return _failed(followers, describe_error(exc))
        self.settle(list(zip(own, answers)))
        writes = [write for follower in followers for write in follower.writes]
        try:
            for write, rows in zip(writes, answers[len(own) + 1:]):  # after the lock
                row = rows.fetchone()
                if write.check is not None:
                    write.check(None if row is None else row[0])
        except Exception as exc:  # noqa: BLE001 - committed, but not as asked: the listing is stale
            return _failed(followers, str(exc))
        return None

    def savepoint(self) -> tuple[Queued, bytes]:
        """A new savepoint, queued; and the statement that rolls back to it (names are never
        reused, so a rollback can never land on an older one)."""
        self.savepoints += 1
        name = b"act%d" % self.savepoints
        marker = Queued(b"SAVEPOINT " + name)
        self.pending.append(marker)
        return marker, b"ROLLBACK TO SAVEPOINT " + name

    def drop_from(self, marker: Queued) -> bool:
        """Unsend `marker` and everything queued after it; False if it was already sent."""
        for index, item in enumerate(self.pending):
            if item is marker:
                del self.pending[index:]
                return True
        return False

    def flush(self, wire: Wire, last: Queued | None = None) -> Any:
        """Send everything queued (and `last`) in one round trip, run the checks, and return the
        first column of `last`'s row (None without `last`)."""
        items, self.pending = self.pending, []
        if last is not None:
            items.append(last)
        if not items:
            return None
        return self.settle(list(zip(items, self._run(wire, items))), last)

    def exchange(self, wire: Wire, items: list[Queued]) -> list[Rows]:
        """Send everything queued and `items` in one round trip; run the checks; the answers
        of `items`."""
        queued, self.pending = self.pending, []
        everything = queued + items
        answers = self._run(wire, everything)
        self.settle(list(zip(everything, answers)))
        return answers[len(queued):]

    def _run(self, wire: Wire, items: list[Queued]) -> list[Rows]:
        try:
            return wire.run([(item.statement, item.params) for item in items])
        except psycopg.Error:
            # What ran before the failure is checked all the same (a write whose check fails
            # poisons the group even when the failure after it is handled, as a lock timeout is).
            self.settle(list(zip(items, wire.answered)))
            raise

    def settle(self, sent: Sequence[tuple[Queued, Rows]], last: Queued | None = None) -> Any:
        """Run the checks of sent items whose answers have arrived; `last`'s answer."""
        answer = None
        for item, rows in sent:
            if item.answer is not None:
                item.answer(rows)
            if item.check is None and item is not last:
                continue
            row = rows.fetchone()
            value = None if row is None else row[0]
            if item.check is not None:
                try:
                    item.check(value)
                except BaseException:
                    self.poisoned = True
                    raise
            answer = value
        return answer


def any_answer(answer: Any) -> None:
    pass


def expect_answer(wanted: int | None, error: type[Exception], message: str) -> Callable[[Any], None]:
    """A write's check: its answer must be `wanted` (None: anything but None), or `error`."""
    def check(answer: Any) -> None:
        if (answer is None) if wanted is None else (answer != wanted):
            raise error(message)
    return check


# The followers' lock, tried, and their rows too: a wait on the server would stretch the commit's
# round trip, and an interrupt (Ctrl-C) or a lost connection during it would leave a committed
# write's outcome unknown. Every lock wait of their transaction is cut to 1 ms (set first: a CTE
# with a volatile function is never folded into the query that reads it); a busy row or lock
# fails them over to the retry after the round trip (TreeDir.follow_commit).
_FOLLOWERS_LOCK = (b"WITH s AS (SELECT set_config('lock_timeout', '1ms', true)) "
                   b"SELECT pg_advisory_xact_lock_shared(%(key)s) FROM s")


def _follower_items(followers: list[Follower]) -> list[Queued]:
    """The followers' transaction: its lock tried, then their writes (their statements make the
    commit asynchronous). No BEGIN or COMMIT: sent last in a round trip, after the group's
    COMMIT, they are the implicit transaction the round trip's Sync ends, committed if all ran,
    else rolled back by the server, which leaves the connection idle either way."""
    if not followers:
        return []
    locks = {follower.lock for follower in followers}
    if len(locks) != 1:
        raise RuntimeError("followers of one group under different locks")  # a programming error
    return [Queued(_FOLLOWERS_LOCK, {"key": locks.pop()}),
            *(write for follower in followers for write in follower.writes)]


def _failed(followers: list[Follower], why: str) -> str:
    for follower in followers:
        follower.failed(why)
    return why
