"""How many sessions the store holds, without listing sessions/ on every create.

`sessions.count` (in the store root) holds {"n": count, "log": [inode, size]}: the count as
of the store log's (inode, size) when it was written, at the end of a store operation that
changed it. A writer, under the store lock, trusts it only if the store log is still exactly
that size: nothing has happened since, in any process. Otherwise (a crash, a rejection or a
seal in between, a missing or damaged file) it counts sessions/ once, O(sessions), and writes
the fresh count at the end of its operation. Derived data: not fsynced and not audited, since
a file that lags the log is never trusted, and the store log is durable before it is written.
"""

from __future__ import annotations

import orjson

from ...errors import LimitExceededError, SecureStoreError
from ...fs import Dir, rewrite_in_place, size_of
from .auditlog import LOG_FILE

COUNT_FILE = "sessions.count"
_COUNT_CAP = 256


class SessionCount:
    """One store-lock hold's view of the session count (made after reconciliation)."""

    def __init__(self, root: Dir, sessions: Dir, audit_dir: Dir, limit: int) -> None:
        self._root, self._sessions, self._audit_dir, self._limit = root, sessions, audit_dir, limit
        self._count = self._trusted()
        self._changed = False

    def _stamp(self) -> list[int] | None:
        found = size_of(self._audit_dir, LOG_FILE)
        return None if found is None else list(found)

    def _trusted(self) -> int | None:
        try:
            data = self._root.read_optional(COUNT_FILE, _COUNT_CAP)
            parsed = orjson.loads(data) if data is not None else None
        except (SecureStoreError, orjson.JSONDecodeError):
            return None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("n"), int) or parsed["n"] < 0:
            return None
        count: int = parsed["n"]
        return count if parsed.get("log") == self._stamp() else None

    def count(self) -> int:
        if self._count is None:
            self._count = sum(1 for entry in self._sessions.list(sort=False) if not entry.startswith("."))
            self._changed = True  # worth writing down, even if nothing is created after all
        return self._count

    def check_room(self, adding: int) -> None:
        count = self.count()
        if count + adding > self._limit:
            raise LimitExceededError(f"the store already holds {count} sessions (limit {self._limit}); "
                                     f"{adding} more do not fit")

    def changed(self, delta: int) -> None:
        """A create (+1) or delete (-1) committed. Unknown counts stay unknown (recounted later)."""
        if self._count is not None:
            self._count += delta
            self._changed = True

    def forget(self) -> None:
        """Sessions appeared or vanished in numbers not tracked here (an import or its rollback)."""
        self._count, self._changed = None, False

    def save(self) -> None:
        """At the end of the operation, after the store log is sealed (durable)."""
        if self._changed and self._count is not None:
            data = orjson.dumps({"n": self._count, "log": self._stamp()})
            rewrite_in_place(self._root, COUNT_FILE, data)  # a torn file fails to parse: recounted
