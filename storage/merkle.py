"""The Merkle tree of RFC 6962 (Certificate Transparency) section 2.1, over leaf hashes.

Pure functions, no storage: a caller keeps the leaf hashes (``leaf_hash(data)``) in a
table and passes them in as a sequence, index 0 first. Proofs are RFC 6962's PATH
(inclusion) and PROOF (consistency): lists of 32-byte hashes, nearest the leaves first.
The verifiers are RFC 9162's iterative algorithms (2.1.3.2, 2.1.4.2); they answer False,
never raise, for a bad proof, a size out of range or a value that is not a 32-byte hash.

A ``Frontier`` is the right edge of a tree: the roots of its perfect subtrees, largest
first. Appending a leaf and taking the new root costs O(log n) hashes, so a watcher can
follow a growing log without the leaves.

Roots and proofs over n leaves cost O(n) hashes and O(log n) memory beyond the leaves
(chunks of perfect subtrees, merged as a frontier does); nothing recurses, so a million
leaves is fine (about half a second for a root).

Written here, not taken from PyPI: pymerkle (the one maintained Python package) is GPL,
keeps the leaves itself, numbers them from 1 and has its own proof format.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # MTH({}), the root of the empty tree


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """k, the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


_CHUNK = 4096  # leaves hashed level by level at once; bounds the memory a root needs


def _levels(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) for lo < hi, bottom up: pair neighbours, carry an odd last node up.

    That is the same tree as RFC 6962's split at the largest power of two: every left
    subtree is perfect, so only the rightmost node of a level can lack a partner.
    """
    sha256 = hashlib.sha256
    level = [sha256(b"\x01" + leaves[i] + leaves[i + 1]).digest() for i in range(lo, hi - 1, 2)]
    if (hi - lo) % 2:
        level.append(leaves[hi - 1])
    while len(level) > 1:
        odd = level[-1] if len(level) % 2 else None
        level = [
            sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if odd is not None:
            level.append(odd)
    return level[0]


def _mth(leaves: Sequence[bytes], lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) in hi - lo - 1 hashes and O(_CHUNK + log n) memory.

    Whole chunks are perfect subtrees: merge them as they come, as a frontier does, and
    the remainder (fewer than _CHUNK leaves) is the rightmost subtree.
    """
    if hi <= lo:
        return EMPTY_ROOT
    peaks: list[bytes] = []
    done = 0  # whole chunks so far
    while hi - lo >= _CHUNK:
        node = _levels(leaves, lo, lo + _CHUNK)
        count = done
        while count & 1:
            node = node_hash(peaks.pop(), node)
            count >>= 1
        peaks.append(node)
        done, lo = done + 1, lo + _CHUNK
    if hi > lo:
        peaks.append(_levels(leaves, lo, hi))
    r = peaks.pop()
    while peaks:
        r = node_hash(peaks.pop(), r)
    return r


def root(leaves: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of the leaf hashes; the empty tree's root is SHA-256(b"")."""
    return _mth(leaves, 0, len(leaves))


def inclusion_ranges(index: int, n: int) -> list[tuple[int, int]]:
    """The subtrees [lo, hi) whose MTHs make PATH(index, D[n]), bottom up (the proof's order).

    Raises IndexError unless 0 <= index < n.
    """
    if not 0 <= index < n:
        raise IndexError(f"leaf {index} is not in a tree of {n}")
    ranges: list[tuple[int, int]] = []  # top down; PATH lists them bottom up
    lo, hi = 0, n
    while hi - lo > 1:
        mid = lo + _split(hi - lo)
        if index < mid:
            ranges.append((mid, hi))
            hi = mid
        else:
            ranges.append((lo, mid))
            lo = mid
    ranges.reverse()
    return ranges


def consistency_ranges(m: int, n: int) -> list[tuple[int, int]]:
    """The subtrees [lo, hi) whose MTHs make PROOF(m, D[n]) = SUBPROOF(m, D[n], true), in
    the proof's order. Empty when m is 0 or n. Raises ValueError unless 0 <= m <= n."""
    if not 0 <= m <= n:
        raise ValueError(f"no tree of {m} leaves inside one of {n}")
    if m in (0, n):
        return []
    ranges: list[tuple[int, int]] = []  # top down, as SUBPROOF appends them
    lo, hi, whole = 0, n, True  # whole: the subtree at hand is the old tree's root
    while m != hi - lo:
        k = _split(hi - lo)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo, m, whole = lo + k, m - k, False
    return ([] if whole else [(lo, hi)]) + ranges[::-1]


def pieces(lo: int, hi: int) -> list[tuple[int, int]]:
    """The perfect subtrees that make up the subtree [lo, hi) of a proof: its left part
    (the largest power of two below its size), then the rest split the same way. Each is
    aligned to its size, so a stored interior node (level, lo >> level) is one of them."""
    out: list[tuple[int, int]] = []
    while hi - lo > 0:
        width = hi - lo if (hi - lo) & (hi - lo - 1) == 0 else _split(hi - lo)
        out.append((lo, lo + width))
        lo += width
    return out


def fold(piece_hashes: Sequence[bytes]) -> bytes:
    """MTH of a subtree from its pieces' MTHs (`pieces`' order): folded from the right."""
    r = piece_hashes[-1]
    for node in reversed(piece_hashes[:-1]):
        r = node_hash(node, r)
    return r


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """PATH(index, D[n]): the siblings from the leaf up to the root.

    Raises IndexError unless 0 <= index < len(leaves).
    """
    return [_mth(leaves, lo, hi) for lo, hi in inclusion_ranges(index, len(leaves))]


def consistency_proof(leaves: Sequence[bytes], m: int) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true): the tree of the first m leaves is a prefix.

    Empty when m is 0 or n (nothing to prove). Raises ValueError unless 0 <= m <= n.
    """
    return [_mth(leaves, lo, hi) for lo, hi in consistency_ranges(m, len(leaves))]


def _hashes(*values: bytes) -> bool:
    return all(isinstance(v, bytes) and len(v) == HASH_SIZE for v in values)


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 2.1.3.2: is leaf_hash at index in the tree of `size` leaves with `root`?"""
    if not 0 <= index < size or not _hashes(leaf_hash, root, *proof):
        return False
    fn, sn, r = index, size - 1, leaf_hash
    for p in proof:
        if sn == 0:
            return False  # proof too long
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree (size1, root1) a prefix of the tree (size2, root2)?

    Equal sizes need equal roots and an empty proof; the empty tree (whose root must be
    EMPTY_ROOT) is a prefix of every tree, with an empty proof.
    """
    if not 0 <= size1 <= size2 or not _hashes(root1, root2, *proof):
        return False
    if size1 == size2:
        return not proof and root1 == root2 and (size1 > 0 or root1 == EMPTY_ROOT)
    if size1 == 0:
        return not proof and root1 == EMPTY_ROOT
    if not proof:
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # a power of two: the old root is a node of the new tree
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False  # proof too long
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and fr == root1 and sr == root2


@dataclass(frozen=True, slots=True)
class Frontier:
    """The right edge of a tree of `size` leaves: the roots of its perfect subtrees,
    one per set bit of size, largest (leftmost) first."""

    size: int = 0
    nodes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 0 or len(self.nodes) != self.size.bit_count():
            raise ValueError(f"a tree of {self.size} leaves has {self.size.bit_count()} peaks")
        if not _hashes(*self.nodes):
            raise ValueError("frontier nodes are 32-byte hashes")


EMPTY_FRONTIER = Frontier()


def frontier_append(frontier: Frontier, leaf_hash: bytes) -> Frontier:
    """The frontier after appending one leaf: O(log n) hashes."""
    if not _hashes(leaf_hash):
        raise ValueError("a leaf hash is 32 bytes")
    nodes = list(frontier.nodes)
    node, size = leaf_hash, frontier.size
    while size & 1:  # merge equal-sized subtrees, as in binary addition
        node = node_hash(nodes.pop(), node)
        size >>= 1
    nodes.append(node)
    return Frontier(frontier.size + 1, tuple(nodes))


class Growing:
    """A frontier grown leaf by leaf in place: what a pass over a million leaves uses,
    where a new (validated, immutable) Frontier per leaf would cost more than the hashing."""

    __slots__ = ("completed", "level", "nodes", "size")

    def __init__(self, frontier: Frontier = EMPTY_FRONTIER, *, keep_from: int = 0) -> None:
        self.nodes = list(frontier.nodes)
        self.size = frontier.size
        # Perfect subtrees completed by the appends, of `keep_from` levels or more (0: none
        # kept): (level, index, hash), node `index` of its level covering the leaves
        # [index << level, (index + 1) << level).
        self.level = keep_from
        self.completed: list[tuple[int, int, bytes]] = []

    def append(self, leaf_hash: bytes) -> None:
        if len(leaf_hash) != HASH_SIZE:
            raise ValueError("a leaf hash is 32 bytes")
        nodes, node, size, height = self.nodes, leaf_hash, self.size, 0
        while size & 1:
            node = hashlib.sha256(b"\x01" + nodes.pop() + node).digest()
            size >>= 1
            height += 1
            if self.level and height >= self.level:
                self.completed.append((height, ((self.size + 1) >> height) - 1, node))
        nodes.append(node)
        self.size += 1

    def frontier(self) -> Frontier:
        return Frontier(self.size, tuple(self.nodes))


def frontier_root(frontier: Frontier) -> bytes:
    """MTH of the tree the frontier ends: fold the peaks from the right."""
    if not frontier.nodes:
        return EMPTY_ROOT
    r = frontier.nodes[-1]
    for node in reversed(frontier.nodes[:-1]):
        r = node_hash(node, r)
    return r


def frontier_of(leaves: Sequence[bytes]) -> Frontier:
    """The frontier of a whole tree, in O(n) hashes."""
    nodes: list[bytes] = []
    lo, rest = 0, len(leaves)
    while rest:
        width = 1 << (rest.bit_length() - 1)
        nodes.append(_mth(leaves, lo, lo + width))
        lo, rest = lo + width, rest - width
    return Frontier(len(leaves), tuple(nodes))
