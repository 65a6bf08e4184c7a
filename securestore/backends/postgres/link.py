"""One store handle's connection to PostgreSQL. Every tree operation and every lock of the
handle runs on it, one at a time: a writer's lock and the writes it guards live and die with
the same connection, so a lost connection can never leave writes going on under a lock the
server already gave to someone else.

Each write is one transaction: one statement on the autocommit connection (`write`: its own
implicit transaction, one round trip) or a block of them (`writing`). `durable=True` commits
synchronously (the commit returns once the WAL is flushed); `durable=False` commits
asynchronously, which WAL order makes safe: any later synchronous commit flushes it too. A
connection lost while a write commits leaves its outcome unknown: the handle is latched
unusable (like a failed fsync on disk) and the next open settles the dangling intent by
observation. A one-statement write sends its statement and its commit together, so a connection
lost during it always latches. A connection lost while no lock is held and
nothing is in flight is replaced on the next operation.

A group (`group`, what `TreeDir.group` is here) makes every write inside it one transaction,
committed once at its end (synchronously if any write in it was durable): a store change, its
audit records and its act included, costs one WAL flush. While a group is open no other thread
of the handle sends anything (its statements would join the transaction), and a lock released
inside it is released after the commit (two-phase: nobody reads what is not yet committed). An
`attempt` inside a group is a savepoint: a failed act rolls back to it, so its intent and its
recorded outcome still commit (the contract of txn.apply). A group whose transaction failed is
rolled back and the handle latched: its memory (the audit chain's head) is ahead of the database.

A handle is its own one-connection pool, so it does what a pool's health check does: a
connection idle for IDLE_CHECK_SECONDS is pinged before it is used (servers, poolers and
firewalls drop idle connections), and a dead one is replaced before anything is sent on it,
or, when the handle held locks on it, the handle is latched (the locks are gone).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from ...errors import AlreadyExistsError, DurabilityError, SecureStoreError, StorageError, UnsafeFileError
from ...fs import FsContext
from .connect import connect, describe_error
from .group import Group, Queued
from .schema import ROOT
from .statements import Statements, compile_statements
from .url import PgTarget
from .wire import Wire

Connection = psycopg.Connection[tuple[Any, ...]]
IDLE_CHECK_SECONDS = 30.0


class PgLink:
    def __init__(self, target: PgTarget, ctx: FsContext, application_name: str) -> None:
        self.target = target
        self.ctx = ctx
        self.sql: Statements = compile_statements(target.schema)
        self.application_name = application_name
        self.held: dict[int, str] = {}  # advisory lock key -> "exclusive" | "shared", on this connection
        self.released = threading.Condition(threading.RLock())
        self.unflushed = False  # an asynchronous commit since the last synchronous one
        self._connection: Connection | None = None
        self._wire: Wire | None = None
        self._used_at = 0.0  # ctx.os.monotonic() when the connection was last handed out
        self.group: Group | None = None  # the open group, owned by one thread
        self.root_dirs: dict[str, int] = {}  # the store's top directories, looked up once (tree.py)
        self.locked_dirs: dict[tuple[int, str], int] = {}  # where open_locked found a directory (checked when used)

    def live(self) -> Connection:
        """The connection, for a caller holding `released` (see _live)."""
        return self._live()

    def translate(self, exc: psycopg.Error, action: str, label: str, connection: Connection) -> Exception:
        return self._translate(exc, action, label, connection)

    def known_dir(self, parent: int, name: str) -> int | None:
        """A directory's id without a lookup: a top directory of the store, or one this thread's
        group knows (`Group.child_dirs`)."""
        if parent == ROOT and name in self.root_dirs:
            return self.root_dirs[name]
        group = self.my_group()
        return None if group is None else group.child_dirs.get(parent, {}).get(name)

    def my_group(self) -> Group | None:
        """The open group, if this thread's."""
        group = self.group
        return group if group is not None and group.owner == threading.get_ident() else None

    def wire(self, connection: Connection) -> Wire:
        """The pipeline sender of `connection` (wire.py), made once per connection."""
        wire = self._wire
        if wire is None or wire.connection is not connection:
            wire = self._wire = Wire(connection, self.target.prepare_threshold)
        return wire

    def close(self) -> None:
        with self.released:
            if self._connection is not None:
                self._connection.close()  # the server drops any lock still held with it
                self._connection = None

    def lock_key(self, node: int, name: str) -> int:
        digest = hashlib.sha256(f"{self.target.schema}\0{node}\0{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _live(self) -> Connection:
        while self.group is not None and self.group.owner != threading.get_ident():
            self.released.wait()  # another thread's group: its transaction is not ours to join
        connection = self._connection
        now = self.ctx.os.monotonic()
        idle, self._used_at = now - self._used_at, now
        if connection is not None and not connection.closed and not connection.broken:
            if idle < IDLE_CHECK_SECONDS or self._answers(connection):
                return connection
        if self.held:  # the locks went with the old connection: whatever they guarded is unsafe now
            self._latch("the connection holding this handle's locks was lost")
        if self.group is not None and self.group.begun:
            self._latch(f"the connection was lost during {self.group.label}: nothing of it was committed")
        if connection is not None:
            connection.close()
        self._connection = connect(self.target, application_name=self.application_name)
        return self._connection

    @staticmethod
    def _answers(connection: Connection) -> bool:
        try:
            connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _latch(self, why: str) -> None:
        self.ctx.failed = self.ctx.failed or why  # the first cause is the one to report
        raise DurabilityError(f"{self.target.display}: {why}; reopen the store (the next open settles any write in "
                              "flight)")

    @contextmanager
    def writing(self, label: str, *, durable: bool) -> Iterator[Connection]:
        """One transaction; on return it is committed (durably, with `durable`)."""
        with self.released:
            self.ctx.check_usable()
            connection = self._live()
            group = self.group
            if group is not None:  # a block inside a group: a savepoint of the group's transaction
                group.durable = group.durable or durable  # (no statement of ours sets the mode: the commit does)
                group.wrote()
                try:
                    group.begin()
                    group.flush(self.wire(connection))  # psycopg must see the transaction open
                    with connection.transaction():
                        yield connection
                except psycopg.Error as exc:
                    raise self._translate(exc, "write", label, connection) from None
                return
            committing = False
            try:
                with connection.transaction():
                    if not durable:
                        connection.execute("SET LOCAL synchronous_commit TO off")
                    yield connection
                    committing = True
            except psycopg.Error as exc:
                if committing:  # broken before COMMIT was sent: not committed, and _translate says so
                    self._latch(f"the commit of {label} may or may not have happened ({describe_error(exc)})")
                raise self._translate(exc, "write", label, connection) from None
            self.unflushed = not durable  # a synchronous commit flushes every earlier one too

    def write(self, label: str, statement: bytes, params: dict[str, Any], *, durable: bool,
              check: Callable[[Any], None] | None = None) -> Any:
        """Run a one-statement write (statements.py: it ends in COMMIT_TAIL) as its own transaction,
        committed (durably, with `durable`) when this returns; the first column of its one row,
        which `check` (if given) vets. Inside a group it joins the group's transaction, and a write
        with a `check` is queued (group.py): its check runs when its answer arrives."""
        with self.released:
            self.ctx.check_usable()
            connection = self._live()
            group = self.group
            if group is not None:
                group.begin()
                group.wrote()
                item = Queued(statement, {**params, "commit": group.commit_mode(durable)}, check)
                if check is not None:
                    group.pending.append(item)
                    return None
                try:
                    return group.flush(self.wire(connection), item)
                except psycopg.Error as exc:
                    raise self._translate(exc, "write", label, connection) from None
            try:
                row = self.wire(connection).run([(statement, {**params, "commit": "on" if durable else "off"})])[0].fetchone()
            except psycopg.Error as exc:
                if (connection.broken or connection.closed) and not self.held:  # sent with its commit
                    self._latch(f"the commit of {label} may or may not have happened ({describe_error(exc)})")
                raise self._translate(exc, "write", label, connection) from None
            self.unflushed = not durable  # a durable one took an xid: its flushed commit flushed the others
            value = None if row is None else row[0]
            if check is not None:
                check(value)
            return value

    @contextmanager
    def grouped(self, label: str) -> Iterator[None]:
        """Every write inside is one transaction, committed when the block ends (see above)."""
        with self.released:
            if self.group is not None and self.group.owner == threading.get_ident():
                yield  # nested: the outer group commits
                return
            self.ctx.check_usable()
            self._live()  # waits for another thread's group to end
            group = self.group = Group(threading.get_ident(), label)
            try:
                yield
            except BaseException:
                self._end_group(group)
                raise
            self._end_group(group)
            for work in group.then:
                work()

    def after_group(self, work: Callable[[], None]) -> None:
        """Run `work` once this thread's group has committed and let go of its locks (now, if
        no group is open): e.g. a compaction that takes exclusively a lock the group holds shared."""
        group = self.group
        if group is not None and group.owner == threading.get_ident():
            group.then.append(work)
        else:
            work()

    def _end_group(self, group: Group) -> None:
        """Commit the group, even when the code inside raised (what it wrote, such as an intent
        and its failed outcome, is what a directory store keeps); when its transaction cannot
        commit, roll it back and latch the handle (its memory is ahead of the database)."""
        connection = self._connection
        try:
            if not (group.begun or group.followers) or connection is None:
                return
            if connection.broken or connection.closed:
                self._latch(f"the connection was lost during {group.label}: nothing of it was committed")
            if group.poisoned or connection.pgconn.transaction_status == TransactionStatus.INERROR:
                self._roll_back(group, connection, "failed")
            followed = bool(group.followers)  # (committed asynchronously after the group)
            try:
                group.finish(self.wire(connection))  # (followers that failed said so: the group stands)
            except psycopg.Error as exc:
                if connection.broken or connection.closed:
                    self._latch(f"the commit of {group.label} may or may not have happened ({describe_error(exc)})")
                self._roll_back(group, connection, f"failed ({describe_error(exc)})")  # COMMIT never ran
            except SecureStoreError as exc:  # a check of a write that rode with COMMIT
                self._latch(f"{group.label} committed, but not all of it applied ({exc})")
            except BaseException:  # interrupted (Ctrl-C) while COMMIT was in flight: it may have happened
                self.ctx.failed = f"{group.label} was interrupted while committing: it may or may not have happened"
                raise
            self.unflushed = followed or not group.durable
        finally:
            self.group = None
            for release in group.after_commit.values():
                release()
            self.released.notify_all()

    def _roll_back(self, group: Group, connection: Connection, why: str) -> None:
        group.pending.clear()
        group.followers.clear()  # (never sent: they follow a commit)
        try:
            connection.execute(b"ROLLBACK")
        except psycopg.Error:
            pass  # a connection that cannot roll back drops the transaction with itself
        self._latch(f"{group.label} {why}: nothing of it was committed")

    @contextmanager
    def attempt(self, label: str) -> Iterator[None]:
        """Inside a group: a savepoint that a failed act rolls back to (its intent stays), and
        the act's writes checked before it counts as done."""
        group = self.group
        if group is None or group.owner != threading.get_ident():
            yield
            return
        marker, rollback = group.savepoint()
        try:
            yield
            with self.released:
                connection = self._live()
                try:
                    group.flush(self.wire(connection))
                except psycopg.Error as exc:
                    raise self._translate(exc, "write", label, connection) from None
        except BaseException:
            # What the group knew of directories may include what the rollback undoes.
            group.child_dirs.clear()
            group.made.clear()
            group.anticipated.clear()
            group.wrote()
            with self.released:
                current = self._connection
                if not group.drop_from(marker) and current is not None and not current.broken and not current.closed:
                    group.pending.clear()  # queued after the savepoint: undone with it
                    try:
                        current.execute(rollback)
                    except psycopg.Error as exc:
                        raise self._translate(exc, "write", label, current) from None
            raise

    def barrier(self, label: str) -> None:
        """Make every earlier asynchronous commit durable (an fsync's counterpart)."""
        group = self.group
        if group is not None and group.owner == threading.get_ident():  # the group's commit is the barrier
            group.durable = True
            return
        if not self.unflushed:
            return
        self.write(label, self.sql.barrier, {}, durable=True)

    def _translate(self, exc: psycopg.Error, action: str, label: str, connection: Connection) -> Exception:
        if isinstance(exc, psycopg.errors.UniqueViolation):
            return AlreadyExistsError(f"{label} already exists")
        if isinstance(exc, psycopg.errors.InsufficientPrivilege):
            return UnsafeFileError(f"refused to {action} {label}: {describe_error(exc)} (the database refused it: "
                                   "check the role the store connects as; see `securestore pg-setup`)")
        if connection.broken or connection.closed:
            if self.held:
                self._latch(f"the connection was lost during a {action} of {label}")
            return StorageError(f"could not {action} {label}: the connection to {self.target.display} was lost "
                                f"({describe_error(exc)}); retry")
        return StorageError(f"could not {action} {label}: {describe_error(exc)}")
