"""The one error the pure audit layer raises: a record, key or note that fails a named check."""

from __future__ import annotations


class RecordError(ValueError):
    """A line that is not a valid record. `check` names the failed check."""

    def __init__(self, check: str, detail: str) -> None:
        super().__init__(detail)
        self.check = check
        self.detail = detail
