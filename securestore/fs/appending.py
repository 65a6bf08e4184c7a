"""The files a `Dir` appends to, kept open between appends."""

from __future__ import annotations

from .base import FsContext


class Appending:
    """Files a Dir appends to, kept open (checked once, at open): an append-only log is written
    many times by its one writer, and only ever replaced through the same handle, which lets
    go of the file first."""

    def __init__(self, ctx: FsContext) -> None:
        self.ctx = ctx
        self.fds: dict[str, int] = {}

    def keep(self, name: str, fd: int) -> None:
        if len(self.fds) >= 4:
            self.stop()
        self.fds[name] = fd

    def stop(self, name: str | None = None) -> None:
        for held in [name] if name is not None else list(self.fds):
            fd = self.fds.pop(held, None)
            if fd is not None:
                self.ctx.close_quietly(fd)
