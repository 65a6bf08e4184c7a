"""RFC 6962 / RFC 9162 Merkle trees over record hashes (pure, streaming).

leaf = SHA-256(0x00 || record line), node = SHA-256(0x01 || left || right). A record's chain
hash is already its leaf hash, so the tree is built from the same values the chain links.

Everything here streams: a `Frontier` holds the O(log n) perfect subtrees of a prefix, and
proofs are computed in one pass over the leaves by hashing the few disjoint ranges a proof
needs (`ranges_for_inclusion`, `ranges_for_consistency`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

EMPTY_ROOT = hashlib.sha256(b"").digest()
_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(size: int) -> int:
    """The largest power of two strictly below `size` (size >= 2): where RFC 6962 splits."""
    return 1 << ((size - 1).bit_length() - 1)


class Frontier:
    """The perfect subtrees covering leaves [0, size), largest first: a compact tree prefix."""

    __slots__ = ("size", "_stack")

    def __init__(self, size: int = 0, stack: Iterable[bytes] = ()) -> None:
        self.size = size
        self._stack = list(stack)
        if len(self._stack) != bin(size).count("1"):
            raise ValueError("frontier does not match its size")

    def add(self, leaf: bytes) -> None:
        stack = self._stack
        stack.append(leaf)
        self.size += 1
        merges = (self.size & -self.size).bit_length() - 1  # trailing zero bits of the new size
        for _ in range(merges):
            right = stack.pop()
            stack[-1] = _sha256(b"\x01" + stack[-1] + right).digest()

    def root(self) -> bytes:
        if not self._stack:
            return EMPTY_ROOT
        result = self._stack[-1]
        for left in reversed(self._stack[:-1]):
            result = node_hash(left, result)
        return result

    def hashes(self) -> list[bytes]:
        return list(self._stack)

    def copy(self) -> Frontier:
        return Frontier(self.size, self._stack)


def root_of(leaves: Iterable[bytes]) -> bytes:
    frontier = Frontier()
    for leaf in leaves:
        frontier.add(leaf)
    return frontier.root()


# -- proofs: which subtree roots, as [start, end) leaf ranges, in proof order ----------------

def ranges_for_inclusion(index: int, size: int) -> list[tuple[int, int]]:
    """RFC 6962 PATH(index, D[0:size]) as leaf ranges, deepest first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index - start < k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
    path.reverse()
    return path


def ranges_for_consistency(old: int, new: int) -> list[tuple[int, int]]:
    """RFC 6962 PROOF(old, D[0:new]) as leaf ranges, in proof order."""
    if not 0 < old <= new:
        raise ValueError(f"no consistency proof from size {old} to {new}")
    path: list[tuple[int, int]] = []
    start, end, m, whole = 0, new, old, True
    while True:
        if m == end - start:
            if not whole:
                path.append((start, end))
            break
        k = _split(end - start)
        if m <= k:
            path.append((start + k, end))
            end = start + k
        else:
            path.append((start, start + k))
            start += k
            m -= k
            whole = False
    path.reverse()
    return path


class RangeHasher:
    """Feed leaves in order once; get the roots of the given disjoint ranges."""

    def __init__(self, ranges: list[tuple[int, int]]) -> None:
        self.ranges = ranges
        self._by_start = sorted(range(len(ranges)), key=lambda i: ranges[i][0])
        self._cursor = 0
        self._current: tuple[int, Frontier] | None = None
        self.roots: list[bytes | None] = [None] * len(ranges)
        self.position = 0

    def add(self, leaf: bytes) -> None:
        at = self.position
        self.position += 1
        if self._current is None and self._cursor < len(self._by_start):
            which = self._by_start[self._cursor]
            if self.ranges[which][0] == at:
                self._current = (which, Frontier())
                self._cursor += 1
        if self._current is None:
            return
        which, frontier = self._current
        frontier.add(leaf)
        if at + 1 == self.ranges[which][1]:
            self.roots[which] = frontier.root()
            self._current = None

    def result(self) -> list[bytes]:
        missing = [self.ranges[i] for i, root in enumerate(self.roots) if root is None]
        if missing:
            raise ValueError(f"the leaves ended before range {missing[0]}")
        return [root for root in self.roots if root is not None]


# -- verification (RFC 9162 section 2.1.3.2 and 2.1.4.2) ---------------------------------------

def root_from_inclusion(index: int, size: int, leaf: bytes, path: list[bytes]) -> bytes | None:
    """The root `path` proves for `leaf` at `index`, or None if the path has the wrong shape."""
    if not 0 <= index < size:
        return None
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return result if sn == 0 else None


def verify_inclusion(index: int, size: int, leaf: bytes, path: list[bytes], root: bytes) -> bool:
    return root_from_inclusion(index, size, leaf, path) == root


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, path: list[bytes]) -> bool:
    if not 0 < old <= new:
        return False
    if old == new:
        return not path and old_root == new_root
    if not path:
        return False
    if old & (old - 1) == 0:  # an exact power of two: the old root is itself a node of the new tree
        path = [old_root, *path]
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first_root = second_root = path[0]
    for node in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            first_root = node_hash(node, first_root)
            second_root = node_hash(node, second_root)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            second_root = node_hash(second_root, node)
        fn >>= 1
        sn >>= 1
    return sn == 0 and first_root == old_root and second_root == new_root
