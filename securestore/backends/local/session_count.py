"""How many sessions the store holds, without listing sessions/ on every create.

`sessions.count` (in the store root) holds {"n": count, "log": [log id, next seq, prev hash]}:
the count as of the store log's head when it was written, at the end of a store operation that
changed it. A writer, under the store lock, trusts it only if the store log's head (as it stood
when the writer took the lock) is still exactly that one: nothing has happened since, in any
process. Otherwise (a crash, a rejection or a
seal in between, a missing or damaged file) it counts sessions/ once, O(sessions), and writes
the fresh count at the end of its operation. Derived data: not fsynced and not audited, since
a file that lags the log is never trusted, and the store log is durable before it is written.
"""

from __future__ import annotations

import orjson

from ...errors import LimitExceededError, SecureStoreError
from ..tree import Expected, TreeDir
from .auditlog import AuditLog

COUNT_FILE = "sessions.count"
_COUNT_CAP = 256


class SessionCount:
    """One store-lock hold's view of the session count (made after reconciliation, before the
    operation appends anything). Nothing is read until the count is needed."""

    def __init__(self, root: TreeDir, sessions: TreeDir, log: AuditLog, limit: int) -> None:
        self._root, self._sessions, self._log, self._limit = root, sessions, log, limit
        self._entry_stamp = self._stamp()  # the head the count file must name to be trusted
        self._count: int | None = None
        self._read = self._changed = False

    def _stamp(self) -> list[object] | None:
        head = self._log.head
        return None if head is None else [head.log_id, head.next_seq, head.prev]

    @staticmethod
    def expected() -> Expected:
        """The read the count starts from (TreeDir.expect_reads)."""
        return Expected("read", COUNT_FILE, _COUNT_CAP)

    def _trusted(self) -> int | None:
        try:
            data = self._root.read_optional(COUNT_FILE, _COUNT_CAP)
            parsed = orjson.loads(data) if data is not None else None
        except (SecureStoreError, orjson.JSONDecodeError):
            return None
        if not isinstance(parsed, dict) or not isinstance(parsed.get("n"), int) or parsed["n"] < 0:
            return None
        count: int = parsed["n"]
        return count if self._entry_stamp is not None and parsed.get("log") == self._entry_stamp else None

    def _known(self) -> int | None:
        if not self._read:
            self._read = True
            self._count = self._trusted()
        return self._count

    def count(self) -> int:
        known = self._known()
        if known is None:
            known = self._count = sum(1 for entry in self._sessions.list(sort=False) if not entry.startswith("."))
            self._changed = True  # worth writing down, even if nothing is created after all
        return known

    def check_room(self, adding: int) -> None:
        count = self.count()
        if count + adding > self._limit:
            raise LimitExceededError(f"the store already holds {count} sessions (limit {self._limit}); "
                                     f"{adding} more do not fit")

    def changed(self, delta: int) -> None:
        """A create (+1) or delete (-1) committed. Unknown counts stay unknown (recounted later)."""
        known = self._known()
        if known is not None:
            self._count, self._changed = known + delta, True

    def forget(self) -> None:
        """Sessions appeared or vanished in numbers not tracked here (an import or its rollback)."""
        self._count, self._read, self._changed = None, True, False

    def save(self) -> None:
        """At the end of the operation, after the store log is sealed (durable)."""
        if self._changed and self._count is not None:
            data = orjson.dumps({"n": self._count, "log": self._stamp()})
            self._root.rewrite_in_place(COUNT_FILE, data)  # a torn file fails to parse: recounted
