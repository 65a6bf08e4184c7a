"""Reads on a store handle's connection (link.py): sent with whatever writes the thread's open
group has queued, which they see, in one round trip (wire.py); or, inside a group, answered
from what was asked ahead (`read_ahead`: TreeDir.expect_reads), once, until the group writes
anything (a read answered before a write of the group could be stale, so none is kept)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from .group import Queued
from .link import PgLink
from .wire import Rows

Statements = list[tuple[bytes, dict[str, Any] | None]]


def query(link: PgLink, label: str, statements: Statements, *,
          own_transaction: bool = False) -> list[Rows]:
    """The answers of `statements`, sent with whatever writes this thread's group has
    queued (which they see) in one round trip (wire.py). `own_transaction`: outside a
    transaction, the statements run in one of their own (their local settings end with it)."""
    with link.released:
        connection = link.live()
        group = link.group
        if group is not None and (group.ahead or group.asked):
            key = ahead_key(statements)
            if key in group.asked:  # asked ahead: its answers come with what is queued
                try:
                    group.flush(link.wire(connection))
                except psycopg.Error as exc:
                    raise link.translate(exc, "read", label, connection) from None
            found = group.ahead.pop(key, None)
            if found is not None:
                return found
        if group is not None and (group.begun or group.pending):  # in its transaction, after what it queued
            try:
                return group.exchange(link.wire(connection), [Queued(*statement) for statement in statements])
            except psycopg.Error as exc:
                raise link.translate(exc, "read", label, connection) from None
        own = own_transaction and connection.info.transaction_status == TransactionStatus.IDLE
        items = [(b"BEGIN", None), *statements, (b"COMMIT", None)] if own else statements
        try:
            answers = link.wire(connection).run(items)
        except psycopg.Error as exc:
            if own and connection.info.transaction_status == TransactionStatus.INERROR:
                connection.execute(b"ROLLBACK")
            raise link.translate(exc, "read", label, connection) from None
        return answers[1:-1] if own else answers


def read_ahead(link: PgLink, reads: list[Statements]) -> None:
    """Queue reads (each the statements of one `query`) in this thread's open group, to
    ride with its next round trip; `query` answers the same statements from what arrived,
    once, until the group writes anything."""
    with link.released:
        group = link.my_group()
        if group is None:
            return
        group.begin()
        for statements in reads:
            key = ahead_key(statements)
            if key not in group.ahead and key not in group.asked:
                store = group.keep(key, len(statements))
                group.pending.extend(Queued(statement, params, answer=store) for statement, params in statements)


def ahead_key(statements: Statements) -> Hashable:
    """A read, as `read_ahead` keeps its answers (its parameters are plain values)."""
    return tuple((statement, tuple(sorted((params or {}).items()))) for statement, params in statements)
