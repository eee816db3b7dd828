"""RFC 9162 §2.1 (= RFC 6962 §2.1) Merkle tree hashing, proofs and verification.

The tree is kept as *complete-subtree nodes*: node ``(level, index)`` is the MTH of leaves
``[index * 2**level, (index + 1) * 2**level)``, level 0 being the leaf hashes. A complete
node never changes once its last leaf is appended, so it can be written once and read
forever; everything else (the root of any size, every RFC proof) is derived from a few of
them. Only the nodes of level ``STORED_FROM`` and up are stored; the few lower ones a proof
needs are folded from their leaves (``split_reads``, ``reader``). Generation therefore works
in two steps a caller can run around its SQL queries: ``*_ranges`` says which MTH(D[a:b]) the
RFC asks for, ``nodes_needed`` says which nodes those ranges decompose into, and ``get``
(usually a dict lookup) supplies them.

Verification is written separately from generation, straight from the RFC's fn/sn bit
algorithms, so that a bug in one cannot hide a bug in the other.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence

Node = tuple[int, int]
"""Coordinates ``(level, index)`` of a stored complete-subtree node."""

GetNode = Callable[[int, int], bytes]
"""Reads the stored hash of node ``(level, index)``; a missing node is the caller's bug."""

Range = tuple[int, int]
"""A leaf range ``[start, end)`` whose MTH is one proof element."""

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}): the root of the empty tree."""


def leaf_hash(data: bytes) -> bytes:
    """MTH({d}) = SHA-256(0x00 || d); the prefix keeps a leaf from passing for a node."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right), the interior node of the RFC tree."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The RFC's k: the largest power of two strictly smaller than ``n`` (n > 1)."""
    assert n > 1
    return 1 << ((n - 1).bit_length() - 1)


# --- complete-subtree decomposition -------------------------------------------------------


def subtree_nodes(start: int, end: int) -> list[Node]:
    """The stored nodes that make up D[start:end], left to right, largest first.

    MTH of n leaves is ``node_hash(MTH(first k), MTH(rest))`` with k the highest power of
    two below n, so it is the right fold of the binary decomposition of n, provided each
    piece is a complete node, i.e. ``start`` is a multiple of the largest power of two
    <= n. Every range the RFC recursion produces satisfies this (its start is aligned to a
    power of two >= its length), and so does ``[0, size)``.
    """
    if not 0 <= start <= end:
        raise ValueError(f"invalid range [{start}, {end}): need 0 <= start <= end")
    n = end - start
    if n and start % (1 << (n.bit_length() - 1)):
        raise ValueError(f"range [{start}, {end}) is not made of complete subtrees")
    nodes: list[Node] = []
    position = start
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            nodes.append((level, position >> level))
            position += 1 << level
    return nodes


def subtree_hash(start: int, end: int, get: GetNode) -> bytes:
    """MTH(D[start:end]) from stored nodes (EMPTY_ROOT for an empty range)."""
    hashes = [get(level, index) for level, index in subtree_nodes(start, end)]
    if not hashes:
        return EMPTY_ROOT
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = node_hash(left, root)
    return root


def frontier_nodes(size: int) -> list[Node]:
    """The right edge of a tree of ``size`` leaves: the complete nodes covering [0, size)."""
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    return subtree_nodes(0, size)


def root_hash(size: int, get: GetNode) -> bytes:
    """MTH(D[0:size]), the signed tree head's root, from at most log2(size)+1 nodes."""
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    return subtree_hash(0, size, get)


def nodes_needed(ranges: Iterable[Range]) -> set[Node]:
    """Every stored node the given ranges read, so a caller can fetch them in one query."""
    return {node for start, end in ranges for node in subtree_nodes(start, end)}


def nodes_read(compute: Callable[[GetNode], object]) -> set[Node]:
    """The stored nodes a computation over ``get`` reads. The algorithms read the same nodes
    whatever their hashes are, so a dry run with placeholder hashes names them, and a caller
    can fetch them all in one query before the real run."""
    seen: set[Node] = set()

    def record(level: int, index: int) -> bytes:
        seen.add((level, index))
        return bytes(HASH_SIZE)

    compute(record)
    return seen


# --- what is stored: the nodes of level STORED_FROM and up --------------------------------

STORED_FROM = 4
"""The lowest level of stored nodes. A node below it covers at most 2**(STORED_FROM - 1) leaves
and is recomputed from their hashes when a root or proof needs it: storing levels 0–3 wrote
15 of every 16 node rows, a fifth of the write-ahead log of a swipe (measured, issue 18),
while a proof reads at most a few dozen leaves more."""


def split_reads(wanted: Iterable[Node]) -> tuple[list[Node], list[int]]:
    """The stored nodes and the leaf indexes that the nodes ``wanted`` are made of."""
    stored: set[Node] = set()
    leaves: set[int] = set()
    for level, index in wanted:
        if level >= STORED_FROM:
            stored.add((level, index))
        else:
            leaves.update(range(index << level, (index + 1) << level))
    return sorted(stored), sorted(leaves)


def reader(stored: Mapping[Node, bytes], leaves: Mapping[int, bytes]) -> GetNode:
    """``get`` over the stored nodes and the leaf hashes that ``split_reads`` named: a node
    below ``STORED_FROM`` is folded from its leaves. A missing one raises KeyError."""

    def get(level: int, index: int) -> bytes:
        if level >= STORED_FROM:
            return stored[(level, index)]
        hashes = [leaves[i] for i in range(index << level, (index + 1) << level)]
        while len(hashes) > 1:
            hashes = [node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
        return hashes[0]

    return get


# --- the incremental right edge ------------------------------------------------------------


class Frontier:
    """Append-only tree state that keeps only the right edge, O(log n) hashes.

    ``append`` reports each complete node it finishes so the caller can store it; those
    rows are all that proofs and roots are ever computed from.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self) -> None:
        self._size = 0
        self._hashes: list[bytes] = []  # the nodes of frontier_nodes(size), in that order

    @property
    def size(self) -> int:
        return self._size

    @classmethod
    def from_nodes(cls, size: int, get: GetNode) -> Frontier:
        """Resume a tree of ``size`` leaves from its stored right edge (``frontier_nodes``)."""
        frontier = cls()
        frontier._hashes = [get(level, index) for level, index in frontier_nodes(size)]
        frontier._size = size
        return frontier

    def append(self, leaf: bytes) -> list[tuple[int, int, bytes]]:
        """Add one leaf hash; return the new complete nodes ``(level, index, hash)``, leaf first.

        Each trailing 1-bit of the old size is a complete left sibling on the edge waiting
        for exactly this right neighbour, so merging them is all an append has to do.
        """
        if len(leaf) != HASH_SIZE:
            raise ValueError(f"a leaf hash is {HASH_SIZE} bytes, got {len(leaf)}")
        index = self._size
        created = [(0, index, leaf)]
        current, level = leaf, 0
        while index & 1:
            current = node_hash(self._hashes.pop(), current)
            level, index = level + 1, index >> 1
            created.append((level, index, current))
        self._hashes.append(current)
        self._size += 1
        return created

    def root(self) -> bytes:
        """MTH of the current tree: the right fold of the edge (EMPTY_ROOT when empty)."""
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            root = node_hash(left, root)
        return root


# --- proof generation (RFC 9162 §2.1.3.1, §2.1.4.1) ------------------------------------


def inclusion_ranges(index: int, size: int) -> list[Range]:
    """The ranges whose MTH form PATH(index, D[size]), bottom (leaf sibling) first.

    The RFC recursion PATH(m, D[n]) = PATH(m, D[0:k]) : MTH(D[k:n]) (or the mirror image)
    walks from the root down; the sibling met first is the last proof element.
    """
    if size < 0 or not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    siblings: list[Range] = []
    low, high = 0, size
    while high - low > 1:
        middle = low + _split(high - low)
        if index < middle:
            siblings.append((middle, high))
            high = middle
        else:
            siblings.append((low, middle))
            low = middle
    siblings.reverse()
    return siblings


def consistency_ranges(first: int, second: int) -> list[Range]:
    """The ranges whose MTH form PROOF(first, D[second]) = SUBPROOF(first, D[second], true).

    SUBPROOF(m, D[m], b) is empty when b (the old root is known to the verifier) and
    MTH(D[m]) otherwise; each recursive step appends the sibling subtree after the deeper
    proof, so the list is built root-down and reversed.
    """
    if first <= 0 or second < first:
        raise ValueError(f"consistency needs 0 < first <= second, got first={first}, second={second}")
    steps: list[Range] = []
    low, high, whole_old_tree = 0, second, True
    while True:
        m = first - low
        if m == high - low:
            if not whole_old_tree:
                steps.append((low, high))
            break
        middle = low + _split(high - low)
        if m <= middle - low:
            steps.append((middle, high))
            high = middle
        else:
            steps.append((low, middle))
            low, whole_old_tree = middle, False
    steps.reverse()
    return steps


def inclusion_proof(index: int, size: int, get: GetNode) -> list[bytes]:
    """PATH(index, D[size]) read from stored nodes."""
    return [subtree_hash(start, end, get) for start, end in inclusion_ranges(index, size)]


def consistency_proof(first: int, second: int, get: GetNode) -> list[bytes]:
    """PROOF(first, D[second]) read from stored nodes; empty when first == second."""
    return [subtree_hash(start, end, get) for start, end in consistency_ranges(first, second)]


# --- verification (RFC 9162 §2.1.3.2, §2.1.4.2), independent of the above --------------


def verify_inclusion(
    leaf_index: int, tree_size: int, leaf: bytes, inclusion_path: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 §2.1.3.2, step by step: does ``inclusion_path`` lead ``leaf`` to ``root``?"""
    if not 0 <= leaf_index < tree_size:
        return False
    fn, sn = leaf_index, tree_size - 1
    r = leaf
    for p in inclusion_path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, consistency_path: Sequence[bytes]
) -> bool:
    """RFC 9162 §2.1.4.2, step by step: is the tree of ``second_hash`` an extension of ``first_hash``?

    The RFC's steps assume 0 < first < second. first == second is accepted only with an
    empty path and equal hashes (PROOF(m, D[m]) is empty); first == 0 is rejected, as the
    RFC defines proofs only for 0 < first.
    """
    if first <= 0 or second < first:
        return False
    if first == second:
        return not consistency_path and first_hash == second_hash
    if not consistency_path:
        return False
    path = list(consistency_path)
    if first & (first - 1) == 0:
        path.insert(0, first_hash)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == first_hash and sr == second_hash and sn == 0
