"""Locks as PostgreSQL advisory locks on the store handle's connection: session-level, or,
when taken inside a group (link.py), transaction-level: the group's commit lets go of them,
with no statement of its own.

A lock dies with its connection, so a killed writer leaves nothing to recover: there are no
stale locks here, and none is ever broken. Two handles in different processes or hosts
contend through the server; two users of one handle (threads) contend in `PgLink.held`,
since advisory locks are re-entrant within one connection. `LockHeldError` names the holder
by what the server knows of its connection (pid, application name, client address)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg

from ...errors import LockHeldError
from .group import Anticipated, Queued
from .link import PgLink
from .reads import query

_CHILD_DIRS = 64  # a directory with more child directories than this is not read whole after a lock
_SHARED = "shared"
_EXCLUSIVE = "exclusive"


class AdvisoryLock:
    def __init__(self, link: PgLink, key: int, label: str, mode: str, *, in_group: bool = False) -> None:
        self.link, self.key, self.label, self.mode = link, key, label, mode
        self.in_group = in_group  # a transaction-level lock of a group: its commit lets go of it

    @property
    def recovered_from_text(self) -> str | None:
        return None  # a dead holder's lock went with its connection: nothing was taken over

    def release(self) -> None:
        link = self.link
        with link.released:
            if self.in_group:
                return  # released by the group's commit (or rollback), never before: two-phase
            if link.group is not None and link.group.owner == threading.get_ident():
                link.group.after_commit[self.key] = self.release  # two-phase: let go once it commits
                return
            if link.held.pop(self.key, None) is None:
                return
            try:
                unlock = b"SELECT pg_advisory_unlock_shared(%(key)s)" if self.mode == _SHARED else \
                    b"SELECT pg_advisory_unlock(%(key)s)"
                query(link, self.label, [(unlock, {"key": self.key})])
            except Exception:  # noqa: BLE001 - a lost connection released it anyway
                pass
            link.released.notify_all()

    def __enter__(self) -> AdvisoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def take(link: PgLink, key: int, label: str, *, exclusive: bool, timeout: float, directory: int,
         lasting: bool = False, where: tuple[int, str] | None = None) -> AdvisoryLock:
    """Outside a group (or `lasting`: a session-level lock, which outlives the group's
    transaction): try, then retry with backoff until `timeout`, never a blocking wait, which
    would hold the connection every other operation of this handle needs. Inside one (the
    connection is the group's anyway): the server's own wait, granted the moment the holder's
    transaction ends (lock_in_group). `directory`: the node the lock is named in."""
    clock = link.ctx.os
    deadline = clock.monotonic() + timeout
    delay = 0.002
    mode = _EXCLUSIVE if exclusive else _SHARED
    statement = b"SELECT pg_try_advisory_lock(%(key)s)" if exclusive else b"SELECT pg_try_advisory_lock_shared(%(key)s)"
    while True:
        with link.released:
            group = link.group
            mine = group is not None and group.owner == threading.get_ident()
            if mine and group is not None and group.xact_locks.get(key) and link.held.get(key) == _EXCLUSIVE:
                # This transaction holds it exclusively (a sweep, then a create's listing): that covers any ask.
                return AdvisoryLock(link, key, label, mode, in_group=True)
            if group is not None and key in group.after_commit and link.held.get(key) == mode:
                if mine and group.xact_locks.get(key):
                    return AdvisoryLock(link, key, label, mode, in_group=True)  # held until the commit
                del group.after_commit[key]  # let go in this group, not yet released: taken again
                return AdvisoryLock(link, key, label, mode)
            if key not in link.held:
                link.ctx.check_usable()
                if mine and group is not None and lasting and directory in group.made:
                    # Nobody else knows a directory this group made before its commit, so nobody
                    # holds a lock in it: the try rides with the next statement, checked then.
                    group.begin()
                    group.pending.append(Queued(statement, {"key": key},
                                                _granted(label)))
                    link.held[key] = mode
                    return AdvisoryLock(link, key, label, mode)
                if mine and group is not None and not lasting:  # the group's transaction's: no unlock to send
                    if lock_in_group(link, label, key, exclusive=exclusive, directory=directory, where=where,
                                     wait=max(0.0, deadline - clock.monotonic())):
                        link.held[key] = mode
                        group.xact_locks[key] = True
                        group.after_commit[key] = lambda: _forget(link, key)
                        return AdvisoryLock(link, key, label, mode, in_group=True)
                    raise LockHeldError(f"{label} is held by {holder(link, key, label) or 'another writer'}")
                else:
                    row = query(link, label, [(statement, {"key": key})])[0].fetchone()
                    if row is not None and row[0]:
                        link.held[key] = mode
                        return AdvisoryLock(link, key, label, mode)
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                who = "this process" if key in link.held else (holder(link, key, label) or "another writer")
                raise LockHeldError(f"{label} is held by {who}")
            if key in link.held:  # a thread of this handle holds it: wait for its release
                link.released.wait(min(remaining, 0.1))
                continue
        clock.sleep(min(delay, max(0.0, remaining)))
        delay = min(delay * 2, 0.1)


class DirectoryMoved(Exception):
    """The directory a lock was asked in is no longer at the place it was remembered at."""


def lock_in_group(link: PgLink, label: str, key: int, *, exclusive: bool, wait: float, directory: int,
                  where: tuple[int, str] | None = None) -> bool:
    """Take advisory lock `key` for this thread's open group's transaction (begun if need
    be), waiting up to `wait` seconds on the server (0: a try); False if not granted. A wait
    that runs out is rolled back to its own savepoint: the group goes on.

    A free lock's try is sent with a read of `directory`'s child directories, in the same round
    trip and after it (so as of the grant): the store changes a directory's child directories
    only under a lock in it (the index's `entries`, replaced by a rebuild holding the index lock
    exclusively), so what was read stands until the group ends, and `open_dir` need not ask.
    `where` (parent, name): where `directory` was found before, checked in that round trip
    too (DirectoryMoved if it is not there now: the lock is then in a directory nobody uses)."""
    suffix = b"" if exclusive else b"_shared"
    with link.released:
        connection = link.live()
        group = link.my_group()
        if group is None:
            raise RuntimeError("lock_in_group outside this thread's group")  # a programming error, not input
        group.begin()
        try:
            queries = _lock_queries(link, key, exclusive=exclusive, directory=directory, where=where)
            ahead = group.anticipated.pop(key, None)
            if ahead is not None and (ahead.directory, ahead.where, ahead.exclusive) == (directory, where, exclusive):
                if len(ahead.answers) < len(queries):
                    group.exchange(link.wire(connection), [])  # still queued: sent now with the rest
            if ahead is not None and len(ahead.answers) == len(queries):
                tried, children, *place = ahead.answers
            else:
                tried, children, *place = group.exchange(link.wire(connection), queries)
            if place:
                now = place[0].fetchone()
                if now is None or int(now[0]) != directory:
                    raise DirectoryMoved(label)
            row = tried.fetchone()
            if row is not None and row[0]:  # free: no wait to set up
                found = children.fetchall()
                if len(found) <= _CHILD_DIRS:
                    group.child_dirs[directory] = {str(name): int(node) for name, node in found}
                return True
            if wait <= 0:
                return False
            _, rollback = group.savepoint()
            group.pending.append(Queued(b"SELECT set_config('lock_timeout', %(wait)s, true)",
                                        {"wait": f"{max(1, int(wait * 1000))}ms"}))
            try:
                group.flush(link.wire(connection),
                            Queued(b"SELECT pg_advisory_xact_lock%s(%%(key)s)" % suffix, {"key": key}))
            except psycopg.errors.LockNotAvailable:
                connection.execute(rollback)  # the timeout aborted only what followed the savepoint
                return False
            group.pending.append(Queued(b"SET LOCAL lock_timeout TO DEFAULT"))  # rides with the next statement
            return True
        except psycopg.Error as exc:
            raise link.translate(exc, "lock", label, connection) from None


def _lock_queries(link: PgLink, key: int, *, exclusive: bool, directory: int,
                  where: tuple[int, str] | None) -> list[Queued]:
    """Try the lock; read the directory's child directories; and check it is still at `where`."""
    suffix = b"" if exclusive else b"_shared"
    checks = [] if where is None else [Queued(link.sql.find, {"parent": where[0], "name": where[1]})]
    return [Queued(b"SELECT pg_try_advisory_xact_lock%s(%%(key)s)" % suffix, {"key": key}),
            Queued(link.sql.child_dirs, {"parent": directory, "limit": _CHILD_DIRS + 1}), *checks]


def anticipate(link: PgLink, key: int, *, exclusive: bool, directory: int, where: tuple[int, str] | None) -> None:
    """Queue the statements of `lock_in_group(key, ...)` in this thread's open group, to ride
    with its next round trip; that call then uses their answers instead of making one. (A lock
    tried this way and never asked for is let go with the transaction, like any of its locks.)"""
    with link.released:
        group = link.my_group()
        if group is None or key in group.anticipated or key in link.held:
            return
        group.begin()
        ahead = group.anticipated[key] = Anticipated(directory, where, exclusive, [])
        group.pending.extend(Queued(item.statement, item.params, answer=ahead.answers.append)
                             for item in _lock_queries(link, key, exclusive=exclusive, directory=directory,
                                                       where=where))


def _granted(label: str) -> Callable[[Any], None]:
    def check(granted: Any) -> None:
        if not granted:
            raise LockHeldError(f"{label} is held by another writer")
    return check


def _forget(link: PgLink, key: int) -> None:
    link.held.pop(key, None)  # the commit or rollback that ended its transaction released it
    link.released.notify_all()


def holder(link: PgLink, key: int, label: str) -> str | None:
    """The live holder of a lock, described; None if nobody holds it."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    params = {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}
    row = query(link, label, [(link.sql.lock_holder, params)])[0].fetchone()
    if row is None:
        return None
    pid, application, address = row
    where = f" from {address}" if address else ""
    return f"server process {pid} ({application or 'unnamed client'}{where})"
