"""Line-oriented reads of an append-only file in a `DirCore` (journal, manifest, audit log, index
updates): its size, its tail, its lines forward from an offset, and its lines backward.

Each function opens the file through `DirCore.open_checked` (O_NOFOLLOW, type, owner, mode and link
count checked) and reads with pread at explicit offsets, so memory stays bounded by the chunk
size and the line cap, never by the file size.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator

from ..errors import NotFoundError
from .base import READ_FLAGS, DirCore, translate


def size_of(directory: DirCore, name: str) -> tuple[int, int] | None:
    """(inode, size) of a regular file we made, or None if absent."""
    try:
        fd, st = directory.open_checked(name, READ_FLAGS, "file", "open")
    except NotFoundError:
        return None
    directory.ctx.close_quietly(fd)
    return st.st_ino, st.st_size


FIRST_TAIL = 4096  # what a tail read with `enough` takes first: the last lines of a log are short


def read_tail(directory: DirCore, name: str, nbytes: int,
              enough: Callable[[bytes], bool] | None = None) -> tuple[int, bytes]:
    """(file size, last `nbytes` bytes) of a regular file; with `enough`, the last FIRST_TAIL
    bytes when `enough` accepts them (a small pread instead of a large one)."""
    fd, st = directory.open_checked(name, READ_FLAGS, "file", "open")
    try:
        if enough is not None and nbytes > FIRST_TAIL:
            start = max(0, st.st_size - FIRST_TAIL)
            data = directory.ctx.os.pread(fd, st.st_size - start, start)
            if start == 0 or enough(data):
                return st.st_size, data
        start = max(0, st.st_size - nbytes)
        data = directory.ctx.os.pread(fd, st.st_size - start, start)
        return st.st_size, data
    except OSError as exc:
        raise translate(exc, "read", directory.child_label(name)) from None
    finally:
        directory.ctx.close_quietly(fd)


def lines_backward(
    directory: DirCore, name: str, end: int, max_line: int, chunk: int = 1 << 16
) -> Generator[tuple[int, bytes], None, None]:
    """(offset, line without its newline) for the complete lines before byte `end`, last
    first. A final fragment without a newline (an append in progress) is not yielded, nor
    anything appended after `end`. A line longer than `max_line` ends the iteration."""
    fd, st = directory.open_checked(name, READ_FLAGS, "file", "open")
    label = directory.child_label(name)
    try:
        position = min(end, st.st_size)
        buffer = b""  # bytes [position, line_end): complete lines, possibly cut at the front
        trailing = True  # the bytes after the last newline are a fragment: skip them
        while position > 0:
            start = max(0, position - chunk)
            try:
                buffer = directory.ctx.os.pread(fd, position - start, start) + buffer
            except OSError as exc:
                raise translate(exc, "read", label) from None
            position = start
            if trailing:
                cut = buffer.rfind(b"\n")
                if cut < 0 and position > 0:
                    continue
                buffer, trailing = buffer[: cut + 1], False
            stop = len(buffer) - 1  # the newline ending the next line to emit
            while True:  # emit every line whose start is known (preceded by a newline)
                cut = buffer.rfind(b"\n", 0, stop)
                if cut < 0:
                    break
                yield position + cut + 1, buffer[cut + 1 : stop]
                stop = cut
            buffer = buffer[: stop + 1]  # cut once per chunk, not once per line (linear, not quadratic)
            if len(buffer) > max_line + 1:
                return
        if buffer:
            yield 0, buffer[:-1] if buffer.endswith(b"\n") else buffer
    finally:
        directory.ctx.close_quietly(fd)


def iter_lines(
    directory: DirCore, name: str, max_line: int, chunk_size: int = 1 << 16, *, start: int = 0
) -> Iterator[tuple[int, bytes]]:
    """Stream (offset, line) pairs from byte `start`; the last line may lack its newline.
    Constant memory."""
    fd, _ = directory.open_checked(name, READ_FLAGS, "file", "open")
    label = directory.child_label(name)
    try:
        buffer = b""
        offset = start
        position = start
        while True:
            try:
                chunk = directory.ctx.os.pread(fd, chunk_size, position)
            except OSError as exc:
                raise translate(exc, "read", label) from None
            if not chunk:
                break
            position += len(chunk)
            buffer += chunk
            begin = 0  # scan with an index: reslicing per line would copy the chunk each time
            while True:
                cut = buffer.find(b"\n", begin)
                if cut < 0:
                    break
                yield offset, buffer[begin : cut + 1]
                offset += cut + 1 - begin
                begin = cut + 1
            buffer = buffer[begin:]
            if len(buffer) > max_line:
                # Yield the oversized fragment; the parser above reports it.
                yield offset, buffer
                offset += len(buffer)
                buffer = b""
        if buffer:
            yield offset, buffer
    finally:
        directory.ctx.close_quietly(fd)
