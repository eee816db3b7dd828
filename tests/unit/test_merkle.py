"""RFC 9162 §2.1 Merkle tree: published CT vectors, and the stored-node implementation
against a naive transcription of the RFC's recursive definitions for every small tree."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain import merkle
from domain.merkle import (
    EMPTY_ROOT,
    Frontier,
    consistency_proof,
    consistency_ranges,
    frontier_nodes,
    inclusion_proof,
    inclusion_ranges,
    leaf_hash,
    node_hash,
    nodes_needed,
    root_hash,
    subtree_hash,
    subtree_nodes,
    verify_consistency,
    verify_inclusion,
)

# --- published Certificate Transparency vectors --------------------------------------------
# From transparency-dev/merkle, proof/verify_test.go (commit 02194e9afb6c1d95b5381350007963aa70fff472):
# `leaves`, `roots` (sizes 1..8), `inclusionProofs` (leaf numbers there are 1-based) and
# `consistencyProofs`; the same vectors as google/certificate-transparency's merkle tests.

CT_LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f")
]
CT_ROOTS = {
    0: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    1: "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    2: "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    3: "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    4: "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    5: "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    6: "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    7: "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    8: "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
# (0-based leaf index, tree size, proof)
CT_INCLUSION = [
    (0, 1, []),
    (0, 8, [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]),
    (5, 8, [
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (1, 5, [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]),
]  # fmt: skip
# (first, second, proof)
CT_CONSISTENCY = [
    (1, 1, []),
    (1, 8, [
        "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    ]),
    (6, 8, [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]),
    (2, 5, [
        "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
        "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    ]),
    (6, 7, [
        "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
        "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    ]),
]  # fmt: skip

Store = dict[tuple[int, int], bytes]


def ct_store() -> tuple[list[bytes], Store, list[bytes]]:
    """Append the CT leaves; return their hashes, every stored node and the root after each."""
    frontier, store = Frontier(), {}
    roots = [frontier.root()]
    hashes = [leaf_hash(data) for data in CT_LEAVES]
    for h in hashes:
        store.update({(level, index): node for level, index, node in frontier.append(h)})
        roots.append(frontier.root())
    return hashes, store, roots


def reader(store: Store, size: int) -> Callable[[int, int], bytes]:
    """A ``get`` that fails on any node not complete within the first ``size`` leaves."""

    def get(level: int, index: int) -> bytes:
        assert (index + 1) << level <= size, f"read node ({level}, {index}) beyond size {size}"
        return store[(level, index)]

    return get


def test_roots_match_the_published_ct_vectors() -> None:
    _, store, roots = ct_store()
    for size, expected in CT_ROOTS.items():
        assert roots[size].hex() == expected
        assert root_hash(size, reader(store, size)).hex() == expected
        assert Frontier.from_nodes(size, reader(store, size)).root().hex() == expected


@pytest.mark.parametrize(("index", "size", "proof"), CT_INCLUSION)
def test_inclusion_proofs_match_the_published_ct_vectors(index: int, size: int, proof: list[str]) -> None:
    hashes, store, _ = ct_store()
    assert [p.hex() for p in inclusion_proof(index, size, reader(store, size))] == proof
    root = bytes.fromhex(CT_ROOTS[size])
    assert verify_inclusion(index, size, hashes[index], [bytes.fromhex(p) for p in proof], root)


@pytest.mark.parametrize(("first", "second", "proof"), CT_CONSISTENCY)
def test_consistency_proofs_match_the_published_ct_vectors(first: int, second: int, proof: list[str]) -> None:
    _, store, _ = ct_store()
    assert [p.hex() for p in consistency_proof(first, second, reader(store, second))] == proof
    old, new = bytes.fromhex(CT_ROOTS[first]), bytes.fromhex(CT_ROOTS[second])
    assert verify_consistency(first, second, old, new, [bytes.fromhex(p) for p in proof])


# --- a naive reference: RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1 over a list of leaves -------------
# Hashes with hashlib directly, so it shares nothing with the module under test.


def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < n:
        k *= 2
    if m <= k:
        return ref_subproof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_subproof(m - k, d[k:], False) + [ref_mth(d[:k])]


MAX_SIZE = 64
DATA = [f"leaf-{i}".encode() for i in range(MAX_SIZE)]


@cache
def built() -> tuple[Store, tuple[bytes, ...]]:
    """Every node a Frontier reports while appending DATA, and the root after each append."""
    frontier, store = Frontier(), {}
    roots = [frontier.root()]
    for data in DATA:
        created = frontier.append(leaf_hash(data))
        assert created[0] == (0, frontier.size - 1, leaf_hash(data))
        for level, index, node in created:
            assert (level, index) not in store
            store[(level, index)] = node
        roots.append(frontier.root())
    return store, tuple(roots)


@cache
def ref_root(size: int) -> bytes:
    return ref_mth(DATA[:size])


def fetched(store: Store, ranges: list[tuple[int, int]]) -> Callable[[int, int], bytes]:
    """What a caller does: one query for nodes_needed(ranges), then reads only from that."""
    rows = {node: store[node] for node in nodes_needed(ranges)}
    return lambda level, index: rows[(level, index)]


def flipped(proof: list[bytes], i: int) -> list[bytes]:
    return [bytes([p[0] ^ 1]) + p[1:] if j == i else p for j, p in enumerate(proof)]


def test_frontier_reports_exactly_the_complete_nodes_with_their_mth() -> None:
    store, roots = built()
    expected = {(lv, i) for lv in range(7) for i in range(MAX_SIZE >> lv)}
    assert set(store) == expected
    for (level, index), node in store.items():
        assert node == ref_mth(DATA[index << level : (index + 1) << level])
    assert [roots[size] for size in range(MAX_SIZE + 1)] == [ref_root(size) for size in range(MAX_SIZE + 1)]


def test_frontier_rebuilt_from_stored_nodes_continues_like_the_original() -> None:
    store, _ = built()
    for size in range(MAX_SIZE + 1):
        nodes = frontier_nodes(size)
        assert len(nodes) == size.bit_count()
        frontier = Frontier.from_nodes(size, reader(store, size))
        assert frontier.size == size and frontier.root() == ref_root(size) == root_hash(size, reader(store, size))
        if size < MAX_SIZE:
            created = frontier.append(leaf_hash(DATA[size]))
            assert all(store[(lv, i)] == node for lv, i, node in created)
            assert frontier.root() == ref_root(size + 1)


def test_every_inclusion_proof_matches_the_rfc_and_only_that_one_verifies() -> None:
    store, _ = built()
    for size in range(1, MAX_SIZE + 1):
        root = ref_root(size)
        for index in range(size):
            ranges = inclusion_ranges(index, size)
            proof = inclusion_proof(index, size, fetched(store, ranges))
            assert proof == ref_path(index, DATA[:size])
            assert proof == [ref_mth(DATA[a:b]) for a, b in ranges]
            leaf = leaf_hash(DATA[index])
            assert verify_inclusion(index, size, leaf, proof, root)
            assert not verify_inclusion(index, size, leaf, proof, ref_root(size - 1))
            assert not verify_inclusion(index, size, leaf_hash(b"other"), proof, root)
            assert not verify_inclusion(index, size * 2, leaf, proof, root)
            if index < size // 2:
                assert not verify_inclusion(index, size // 2, leaf, proof, root)
            assert not verify_inclusion(size, size, leaf, proof, root)
            assert not verify_inclusion(index, size, leaf, [*proof, root], root)
            if size > 1:
                assert not verify_inclusion(index ^ 1 if index ^ 1 < size else index - 1, size, leaf, proof, root)
                assert not verify_inclusion(index, size, leaf, proof[:-1], root)
            for i in range(len(proof)):
                assert not verify_inclusion(index, size, leaf, flipped(proof, i), root)


def test_every_consistency_proof_matches_the_rfc_and_only_that_one_verifies() -> None:
    store, _ = built()
    for second in range(1, MAX_SIZE + 1):
        new = ref_root(second)
        for first in range(1, second + 1):
            old = ref_root(first)
            ranges = consistency_ranges(first, second)
            proof = consistency_proof(first, second, fetched(store, ranges))
            assert proof == ref_subproof(first, DATA[:second], True)
            assert proof == [ref_mth(DATA[a:b]) for a, b in ranges]
            assert verify_consistency(first, second, old, new, proof)
            if first == second:
                assert proof == []
                assert not verify_consistency(first, second, old, ref_root(second - 1), proof)
                continue
            assert not verify_consistency(first, second, new, old, proof)
            assert not verify_consistency(first, second, ref_root(first - 1), new, proof)
            assert not verify_consistency(first, second, old, ref_root(second - 1), proof)
            assert not verify_consistency(first - 1, second, old, new, proof)
            assert not verify_consistency(first + 1, second, old, new, proof)
            assert not verify_consistency(first, second * 2, old, new, proof)
            if first <= second // 2:
                assert not verify_consistency(first, second // 2, old, new, proof)
            assert not verify_consistency(first, second, old, new, [])
            assert not verify_consistency(first, second, old, new, proof[:-1])
            assert not verify_consistency(first, second, old, new, [*proof, new])
            for i in range(len(proof)):
                assert not verify_consistency(first, second, old, new, flipped(proof, i))


@cache
def big_frontier() -> tuple[Store, Frontier]:
    frontier, store = Frontier(), {}
    for i in range(3000):
        store.update({(lv, ix): node for lv, ix, node in frontier.append(leaf_hash(i.to_bytes(4, "big")))})
    return store, frontier


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_proofs_in_larger_trees_round_trip_through_the_verifiers(data: st.DataObject) -> None:
    store, frontier = big_frontier()
    second = data.draw(st.integers(1, frontier.size), label="second")
    first = data.draw(st.integers(1, second), label="first")
    index = data.draw(st.integers(0, second - 1), label="index")
    new, old = root_hash(second, reader(store, second)), root_hash(first, reader(store, first))
    path = inclusion_proof(index, second, reader(store, second))
    assert verify_inclusion(index, second, store[(0, index)], path, new)
    assert verify_consistency(first, second, old, new, consistency_proof(first, second, reader(store, second)))


def test_hash_primitives_follow_rfc_prefixes() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert leaf_hash(b"x") == hashlib.sha256(b"\x00x").digest()
    assert node_hash(b"l", b"r") == hashlib.sha256(b"\x01lr").digest()


def test_subtree_decomposition_uses_complete_aligned_nodes() -> None:
    assert subtree_nodes(0, 0) == []
    assert subtree_nodes(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert subtree_nodes(8, 13) == [(2, 2), (0, 12)]
    assert subtree_nodes(16, 32) == [(4, 1)]
    store, _ = built()
    for start, end in [(0, 13), (8, 13), (16, 32), (32, 64), (48, 55)]:
        assert subtree_hash(start, end, reader(store, end)) == ref_mth(DATA[start:end])
    with pytest.raises(ValueError, match="complete subtrees"):
        subtree_nodes(2, 6)
    with pytest.raises(ValueError, match="invalid range"):
        subtree_nodes(5, 4)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: inclusion_ranges(3, 3), "not in a tree of size 3"),
        (lambda: inclusion_ranges(-1, 3), "not in a tree"),
        (lambda: inclusion_ranges(0, 0), "not in a tree of size 0"),
        (lambda: consistency_ranges(0, 5), "0 < first <= second"),
        (lambda: consistency_ranges(6, 5), "0 < first <= second"),
        (lambda: consistency_ranges(-1, -1), "0 < first <= second"),
        (lambda: frontier_nodes(-1), "size must be >= 0"),
        (lambda: root_hash(-1, lambda lv, i: b""), "size must be >= 0"),
        (lambda: Frontier().append(b"short"), "32 bytes"),
    ],
)
def test_invalid_arguments_are_refused(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_verifiers_refuse_sizes_outside_the_rfc_domain() -> None:
    h = leaf_hash(b"")
    assert not verify_inclusion(0, 0, h, [], h)
    assert not verify_inclusion(-1, 1, h, [], h)
    assert verify_inclusion(0, 1, h, [], h)
    assert not verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 1, EMPTY_ROOT, h, [])
    assert not verify_consistency(2, 1, h, h, [])
    assert not verify_consistency(1, 1, h, h, [h])
    assert verify_consistency(1, 1, h, h, [])


@pytest.mark.parametrize(("index", "size"), [(0, 1), (3, 10), (63, 64), (17, 33)])
def test_nodes_read_names_exactly_what_a_proof_reads(index: int, size: int) -> None:
    assert merkle.nodes_read(lambda get: merkle.inclusion_proof(index, size, get)) == merkle.nodes_needed(
        merkle.inclusion_ranges(index, size))
    assert merkle.nodes_read(lambda get: merkle.root_hash(size, get)) == set(merkle.frontier_nodes(size))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_the_stored_levels_and_the_leaves_give_every_root_and_proof(data: st.DataObject) -> None:
    """What the hub stores — nodes of level STORED_FROM and up, and the leaves — gives the
    same roots and proofs as the whole tree, and split_reads names every leaf they fold."""
    store, frontier = big_frontier()
    second = data.draw(st.integers(1, frontier.size), label="second")
    first = data.draw(st.integers(1, second), label="first")
    index = data.draw(st.integers(0, second - 1), label="index")
    for compute in (lambda get: root_hash(second, get), lambda get: inclusion_proof(index, second, get),
                    lambda get: consistency_proof(first, second, get)):
        nodes, leaves = merkle.split_reads(merkle.nodes_read(compute))
        assert all(level >= merkle.STORED_FROM for level, _ in nodes) and len(leaves) <= 4 * 2 ** merkle.STORED_FROM
        kept = merkle.reader({n: store[n] for n in nodes}, {i: store[(0, i)] for i in leaves})
        assert compute(kept) == compute(reader(store, second))


def test_a_node_the_reader_was_not_given_raises_key_error() -> None:
    store, _ = big_frontier()
    with pytest.raises(KeyError):
        merkle.reader({}, {0: store[(0, 0)]})(1, 0)
    with pytest.raises(KeyError):
        merkle.reader({}, {})(merkle.STORED_FROM, 0)
