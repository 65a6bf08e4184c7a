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

from ...errors import LockHeldError
from .link import PgLink

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
                unlock = "SELECT pg_advisory_unlock_shared(%s)" if self.mode == _SHARED else \
                    "SELECT pg_advisory_unlock(%s)"
                with link.reading(self.label) as connection:
                    connection.execute(unlock, (self.key,))
            except Exception:  # noqa: BLE001 - a lost connection released it anyway
                pass
            link.released.notify_all()

    def __enter__(self) -> AdvisoryLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def take(link: PgLink, key: int, label: str, *, exclusive: bool, timeout: float,
         lasting: bool = False) -> AdvisoryLock:
    """Outside a group (or `lasting`: a session-level lock, which outlives the group's
    transaction): try, then retry with backoff until `timeout`, never a blocking wait, which
    would hold the connection every other operation of this handle needs. Inside one (the
    connection is the group's anyway): the server's own wait, granted the moment the holder's
    transaction ends (link.lock_in_group)."""
    clock = link.ctx.os
    deadline = clock.monotonic() + timeout
    delay = 0.002
    mode = _EXCLUSIVE if exclusive else _SHARED
    statement = "SELECT pg_try_advisory_lock(%s)" if exclusive else "SELECT pg_try_advisory_lock_shared(%s)"
    while True:
        with link.released:
            group = link.group
            mine = group is not None and group.owner == threading.get_ident()
            if group is not None and key in group.after_commit and link.held.get(key) == mode:
                if mine and group.xact_locks.get(key):
                    return AdvisoryLock(link, key, label, mode, in_group=True)  # held until the commit
                del group.after_commit[key]  # let go in this group, not yet released: taken again
                return AdvisoryLock(link, key, label, mode)
            if key not in link.held:
                link.ctx.check_usable()
                if mine and group is not None and not lasting:  # the group's transaction's: no unlock to send
                    if link.lock_in_group(label, key, exclusive=exclusive,
                                          wait=max(0.0, deadline - clock.monotonic())):
                        link.held[key] = mode
                        group.xact_locks[key] = True
                        group.after_commit[key] = lambda: _forget(link, key)
                        return AdvisoryLock(link, key, label, mode, in_group=True)
                    raise LockHeldError(f"{label} is held by {holder(link, key, label) or 'another writer'}")
                else:
                    with link.reading(label) as connection:
                        row = connection.execute(statement, (key,)).fetchone()
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


def _forget(link: PgLink, key: int) -> None:
    link.held.pop(key, None)  # the commit or rollback that ended its transaction released it
    link.released.notify_all()


def holder(link: PgLink, key: int, label: str) -> str | None:
    """The live holder of a lock, described; None if nobody holds it."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    params = {"high": unsigned >> 32, "low": unsigned & 0xFFFFFFFF}
    with link.reading(label) as connection:
        row = connection.execute(link.sql.lock_holder, params).fetchone()
    if row is None:
        return None
    pid, application, address = row
    where = f" from {address}" if address else ""
    return f"server process {pid} ({application or 'unnamed client'}{where})"
