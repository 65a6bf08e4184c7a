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

A handle is its own one-connection pool, so it does what a pool's health check does: a
connection idle for IDLE_CHECK_SECONDS is pinged before it is used (servers, poolers and
firewalls drop idle connections), and a dead one is replaced before anything is sent on it,
or, when the handle held locks on it, the handle is latched (the locks are gone).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from ...errors import AlreadyExistsError, DurabilityError, StorageError, UnsafeFileError
from ...fs import FsContext
from .connect import connect, describe_error
from .statements import Statements, compile_statements
from .url import PgTarget

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
        self._used_at = 0.0  # ctx.os.monotonic() when the connection was last handed out

    def close(self) -> None:
        with self.released:
            if self._connection is not None:
                self._connection.close()  # the server drops any lock still held with it
                self._connection = None

    def lock_key(self, node: int, name: str) -> int:
        digest = hashlib.sha256(f"{self.target.schema}\0{node}\0{name}".encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _live(self) -> Connection:
        connection = self._connection
        now = self.ctx.os.monotonic()
        idle, self._used_at = now - self._used_at, now
        if connection is not None and not connection.closed and not connection.broken:
            if idle < IDLE_CHECK_SECONDS or self._answers(connection):
                return connection
        if self.held:  # the locks went with the old connection: whatever they guarded is unsafe now
            self._latch("the connection holding this handle's locks was lost")
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
        self.ctx.failed = why
        raise DurabilityError(f"{self.target.display}: {why}; reopen the store (the next open settles any write in "
                              "flight)")

    @contextmanager
    def reading(self, label: str) -> Iterator[Connection]:
        with self.released:
            connection = self._live()
            try:
                yield connection
            except psycopg.Error as exc:
                raise self._translate(exc, "read", label, connection) from None

    @contextmanager
    def writing(self, label: str, *, durable: bool) -> Iterator[Connection]:
        """One transaction; on return it is committed (durably, with `durable`)."""
        with self.released:
            self.ctx.check_usable()
            connection = self._live()
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

    def write(self, label: str, statement: bytes, params: dict[str, Any], *, durable: bool) -> Any:
        """Run a one-statement write (statements.py: it ends in COMMIT_TAIL) as its own transaction,
        committed (durably, with `durable`) when this returns; the first column of its one row."""
        with self.released:
            self.ctx.check_usable()
            connection = self._live()
            try:
                row = connection.execute(statement, {**params, "commit": "on" if durable else "off"}).fetchone()
            except psycopg.Error as exc:
                if (connection.broken or connection.closed) and not self.held:  # sent with its commit
                    self._latch(f"the commit of {label} may or may not have happened ({describe_error(exc)})")
                raise self._translate(exc, "write", label, connection) from None
            self.unflushed = not durable  # a durable one took an xid: its flushed commit flushed the others
            return None if row is None else row[0]

    def barrier(self, label: str) -> None:
        """Make every earlier asynchronous commit durable (an fsync's counterpart)."""
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
