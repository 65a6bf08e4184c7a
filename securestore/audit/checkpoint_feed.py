"""A log's signed checkpoints, read alongside it (pure, streaming): each one's signature is
checked, then at its size it must match the recomputed Merkle root, head and epoch. One
checkpoint is held at a time, so memory is constant in the length of the file.
"""

from __future__ import annotations

from collections.abc import Iterator

from .checkpoint import Checkpoint, open_note, parse_stored
from .errors import RecordError
from .keys import VerifierKey
from .merkle import Frontier
from .report import TAMPERED, TRUNCATED, Failure, LogReport, keep_first_failure

# A checkpoint read but not yet due, with its line number and byte offset in the file.
Pending = tuple[Checkpoint, int, int]


class CheckpointFeed:
    def __init__(self, report: LogReport, lines: Iterator[tuple[int, bytes]] | None, label: str) -> None:
        self._report = report
        self._lines = lines
        self._expected = lines is not None  # given a checkpoints file, the log must have one that matches
        self._label = label
        self.key: VerifierKey | None = None  # the signer's key, set once the genesis record is checked
        self.pending: Pending | None = None
        self.closing_at: int | None = None  # the size a signed checkpoint closed an epoch at
        self._line = 0

    def _fail(self, offset: int, seq: int | None, check: str, expected: str, actual: str, line: int,
              category: str = TAMPERED) -> None:
        label = self._label or self._report.label
        keep_first_failure(self._report, Failure(label, seq, line, offset, check, expected, actual, category))

    def next_checkpoint(self) -> Pending | None:
        """The next checkpoint in the file (signature checked), with its line and offset."""
        if self.pending is not None:
            return self.pending
        if self._lines is None or self.key is None:
            return None
        for offset, line in self._lines:
            self._line += 1
            if not line.endswith(b"\n"):
                self._report.torn_checkpoint_bytes = len(line)
                return None
            try:
                stored = parse_stored(line[:-1])
                checkpoint = open_note(stored.note, self.key)
            except RecordError as exc:
                self._fail(offset, None, exc.check, f"a checkpoint signed by {self.key.name}", exc.detail,
                           self._line)
                self._lines = None
                return None
            self.pending = (checkpoint, self._line, offset)
            return self.pending
        self._lines = None
        return None

    def match(self, store_id: str | None, frontier: Frontier, head: str, epoch: int) -> None:
        """Every checkpoint due at the log's current size: the log's store id (`store_id`, else
        the genesis record's), log id, Merkle root, head and epoch must be the signed ones."""
        report = self._report
        count = report.records
        while report.failure is None:
            pending = self.next_checkpoint()
            if pending is None:
                return
            checkpoint, line, offset = pending
            if checkpoint.size > count:
                return
            self.pending = None
            # Sizes increase; one closing checkpoint may follow an ordinary one at the same size.
            closes_again = checkpoint.closes and checkpoint.size == report.sealed_size and self.closing_at != count
            if checkpoint.size < count or (checkpoint.size <= report.sealed_size and not closes_again):
                self._fail(offset, checkpoint.size - 1, "checkpoint", f"sizes increasing past {report.sealed_size}",
                           f"size {checkpoint.size} after {count} records", line)
                return
            expected = (store_id or report.store_id, report.log_id, frontier.root().hex(), head, epoch)
            actual = (checkpoint.store_id, checkpoint.log_id, checkpoint.root.hex(), checkpoint.head,
                      checkpoint.epoch)
            if expected != actual:
                names = ("store", "log", "root", "head", "epoch")
                which = next(i for i in range(5) if expected[i] != actual[i])
                self._fail(offset, checkpoint.size - 1, "consistency",
                           f"{names[which]} {expected[which]} at size {count}", f"{names[which]} {actual[which]}",
                           line)
                return
            report.checkpoints += 1
            report.sealed_size = count
            if checkpoint.closes:
                self.closing_at = count

    def finish(self) -> bool:
        """After the log's last record: a checkpoint matched, and none is signed beyond the end.
        False when verification stops here."""
        report = self._report
        if report.checkpoints == 0 and self._expected:
            self._fail(0, 0, "checkpoint", "a signed checkpoint at size 1 (written with the genesis record)",
                       "no valid checkpoint (deleted?)", 0)
            return False
        pending = self.next_checkpoint()
        if pending is not None:
            checkpoint, line, offset = pending
            self._fail(offset, report.records, "consistency", f"at least {checkpoint.size} records (signed checkpoint)",
                       f"{report.records} records (the tail was cut)", line, TRUNCATED)
            return False
        return True
