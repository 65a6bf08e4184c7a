"""Walking a whole tree under a `DirCore`, one entry at a time, never following a symlink."""

from __future__ import annotations

from collections.abc import Iterator

from .base import MAX_TREE_DEPTH, DirCore, EntryInfo


def walk(directory: DirCore, depth: int = 0) -> Iterator[tuple[str, EntryInfo]]:
    """(relative path, info) for every entry below `directory`, directories before their contents."""
    for name in directory.list():
        info = directory.entry(name)
        if info is None:
            continue
        yield name, info
        if info.kind == "dir" and depth < MAX_TREE_DEPTH:
            with directory.open_dir(name) as child:
                for sub, sub_info in walk(child, depth + 1):
                    yield f"{name}/{sub}", sub_info
