"""storage/merkle.py against RFC 6962's tree, the CT reference test vectors, and a
verifier written here from RFC 9162's text that shares no code with it."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence

import pytest

from storage import merkle

# Test vectors. The 8 leaves, the roots of their prefixes and the proofs are those of
# github.com/transparency-dev/merkle proof/verify_test.go (formerly google/trillian
# merkle/log_verifier_test.go) and of google/certificate-transparency
# python/ct/crypto/merkle_test.py ("lifted from the C++ branch"); the single-hash
# vectors and the real CT log audit path are from the latter (both Apache-2.0).
LEAF_INPUTS = [
    "",
    "00",
    "10",
    "2021",
    "3031",
    "40414243",
    "5051525354555657",
    "606162636465666768696a6b6c6d6e6f",
]
LEAVES = [merkle.leaf_hash(bytes.fromhex(d)) for d in LEAF_INPUTS]
EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
ROOTS = [  # ROOTS[i] is the root of the first i + 1 leaves
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (index, tree size, PATH); verify_test.go numbers leaves from 1, these from 0.
INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (size1, size2, PROOF)
CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]
# A certificate from a real CT log (merkle_test.py): leaf hash, index, tree size, root.
CT_LEAF = "7a395c866d5ecdb0cccb623e011dbc392cd348d1d1d72776174e127a24b09c78"
CT_INDEX, CT_SIZE = 848049, 3630887
CT_ROOT = "78316a05c9bcf14a3a4548f5b854a9adfcd46a4c034401b3ce7eb7ac2f1d0ecb"
CT_PATH = [
    "1a208aeebcd1b39fe2de247ee8db9454e1e93a312d206b87f6ca9cc6ec6f1ddd",
    "0a1b78b383f580856f433c01a5741e160d451c185910027f6cc9f828687a40c4",
    "3d1745789bc63f2da15850de1c12a5bf46ed81e1cc90f086148b1662e79aab3d",
    "9095b61e14d8990acf390905621e62b1714fb8e399fbb71de5510e0aef45affe",
    "0a332b91b8fab564e6afd1dd452449e04619b18accc0ff9aa8393cd4928451f2",
    "2336f0181d264aed6d8f3a6507ca14a8d3b3c3a23791ac263e845d208c1ee330",
    "b4ce56e300590500360c146c6452edbede25d4ed83919278749ee5dbe178e048",
    "933f6ddc848ea562e4f9c5cfb5f176941301dad0c6fdb9d1fbbe34fac1be6966",
    "b95a6222958a86f74c030be27c44f57dbe313e5e7c7f4ffb98bcbd3a03bb52f2",
    "daeeb3ce5923defd0faeb8e0c210b753b85b809445d7d3d3cd537a9aabaa9c45",
    "7fadd0a13e9138a2aa6c3fdec4e2275af233b94812784f66bcca9aa8e989f2bc",
    "1864e6ba3e32878610546539734fb5eeae2529991f130c575c73a7e25a2a7c56",
    "12842d1202b1dc6828a17ab253c02e7ce9409b5192430feba44189f39cc02d66",
    "29af64b16fa3053c13d02ac63aa75b23aa468506e44c3a2315edc85d2dc22b11",
    "b527b99934a0bd9edd154e449b0502e2c499bba783f3bc3dfe23364b6b532009",
    "4584db8ae8e351ace08e01f306378a92bfd43611714814f3d834a2842d69faa8",
    "86a9a41573b0d6e4292f01e93243d6cc65b30f06606fc6fa57390e7e90ed580f",
    "a88b98fbe84d4c6aae8db9d1605dfac059d9f03fe0fcb0d5dff1295dacba09e6",
    "06326dc617a6d1f7021dc536026dbfd5fffc6f7c5531d48ef6ccd1ed1569f2a1",
    "f41fe8fdc3a2e4e8345e30216e7ebecffee26ff266eeced208a6c2a3cf08f960",
    "40cf5bde8abb76983f3e98ba97aa36240402975674e120f234b3448911090f8d",
    "b3222dc8658538079883d980d7fdc2bef9285344ea34338968f736b04aeb387a",
]


def unhex(hashes: Sequence[str]) -> list[bytes]:
    return [bytes.fromhex(h) for h in hashes]


# --- An independent reference, from the RFCs' text; it never calls storage/merkle.py ---


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def ref_mth(d: Sequence[bytes]) -> bytes:
    """RFC 6962 2.1, literally (d holds leaf hashes, so MTH({d(0)}) is d(0))."""
    if not d:
        return _h(b"")
    if len(d) == 1:
        return d[0]
    k = 1
    while k * 2 < len(d):
        k *= 2
    return _h(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:]))


def ref_path(m: int, d: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 2.1.1 PATH(m, D[n])."""
    if len(d) == 1:
        return []
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m < k:
        return ref_path(m, d[:k]) + [ref_mth(d[k:])]
    return ref_path(m - k, d[k:]) + [ref_mth(d[:k])]


def ref_proof(m: int, d: Sequence[bytes], b: bool = True) -> list[bytes]:
    """RFC 6962 2.1.2 SUBPROOF(m, D[n], b)."""
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = 1
    while k * 2 < len(d):
        k *= 2
    if m <= k:
        return ref_proof(m, d[:k], b) + [ref_mth(d[k:])]
    return ref_proof(m - k, d[k:], False) + [ref_mth(d[:k])]


def ref_verify_inclusion(
    leaf: bytes, leaf_index: int, tree_size: int, path: Sequence[bytes], root_hash: bytes
) -> bool:
    """RFC 9162 2.1.3.2, step by step."""
    # 1. leaf_index >= tree_size fails.
    if leaf_index >= tree_size:
        return False
    # 2.-3.
    fn, sn, r = leaf_index, tree_size - 1, leaf
    # 4.
    for p in path:
        if sn == 0:  # a.
            return False
        if fn % 2 == 1 or fn == sn:  # b.
            r = _h(b"\x01" + p + r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn //= 2
                    sn //= 2
        else:
            r = _h(b"\x01" + r + p)
        fn //= 2  # c.
        sn //= 2
    # 5.
    return sn == 0 and r == root_hash


def ref_verify_consistency(
    first: int, second: int, first_hash: bytes, second_hash: bytes, path: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2, step by step (it assumes 0 < first < second)."""
    assert 0 < first < second
    # 1.
    if not path:
        return False
    path = list(path)
    # 2. first an exact power of 2
    if bin(first).count("1") == 1:
        path = [first_hash, *path]
    # 3.
    fn, sn = first - 1, second - 1
    # 4.
    while fn % 2 == 1:
        fn //= 2
        sn //= 2
    # 5.
    fr = sr = path[0]
    # 6.
    for c in path[1:]:
        if sn == 0:  # a.
            return False
        if fn % 2 == 1 or fn == sn:  # b.
            fr = _h(b"\x01" + c + fr)
            sr = _h(b"\x01" + c + sr)
            while fn % 2 == 0 and fn != 0:
                fn //= 2
                sn //= 2
        else:
            sr = _h(b"\x01" + sr + c)
        fn //= 2  # c.
        sn //= 2
    # 7.
    return fr == first_hash and sr == second_hash and sn == 0


# --- The vectors ---


def test_hashes() -> None:
    assert merkle.EMPTY_ROOT.hex() == EMPTY
    assert merkle.leaf_hash(b"").hex() == ROOTS[0]
    assert (
        merkle.leaf_hash(bytes.fromhex("101112131415161718191a1b1c1d1e1f")).hex()
        == "3bfb960453ebaebf33727da7a1f4db38acc051d381b6da20d6d4e88f0eabfd7a"
    )
    left = bytes.fromhex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f")
    right = bytes.fromhex("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f")
    assert (
        merkle.node_hash(left, right).hex()
        == "1a378704c17da31e2d05b6d121c2bb2c7d76f6ee6fa8f983e596c2d034963c57"
    )


def test_roots() -> None:
    assert merkle.root([]).hex() == EMPTY
    for size, want in enumerate(ROOTS, start=1):
        assert merkle.root(LEAVES[:size]).hex() == want
        assert ref_mth(LEAVES[:size]).hex() == want  # the reference is right, too
        assert merkle.frontier_root(merkle.frontier_of(LEAVES[:size])).hex() == want


@pytest.mark.parametrize(("index", "size", "path"), INCLUSION)
def test_inclusion_vectors(index: int, size: int, path: list[str]) -> None:
    proof = merkle.inclusion_proof(LEAVES[:size], index)
    assert proof == unhex(path)
    root = bytes.fromhex(ROOTS[size - 1])
    assert merkle.verify_inclusion(LEAVES[index], index, size, proof, root)
    assert ref_verify_inclusion(LEAVES[index], index, size, proof, root)
    # The corruptions of verify_test.go's corruptInclusionProof.
    some = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")
    bad: list[tuple[bytes, int, int, list[bytes], bytes]] = [
        (LEAVES[index], index - 1, size, proof, root),
        (LEAVES[index], index + 1, size, proof, root),
        (LEAVES[index], index ^ 2, size, proof, root),
        (LEAVES[index], index, size * 2, proof, root),
        (LEAVES[index], index, size // 2, proof, root),
        (b"WrongLeaf", index, size, proof, root),
        (LEAVES[index], index, size, proof, merkle.EMPTY_ROOT),
        (LEAVES[index], index, size, proof, some),
        (LEAVES[index], index, size, [*proof, b""], root),
        (LEAVES[index], index, size, [*proof, root], root),
        (LEAVES[index], index, size, [b"", *proof], root),
        (LEAVES[index], index, size, [root, *proof], root),
    ]
    if proof:
        bad.append((LEAVES[index], index, size, proof[:-1], root))
    if len(proof) > 1:
        bad.append((LEAVES[index], index, size, [proof[0], some, *proof[1:]], root))
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 8]) + flipped[i][1:]
        bad.append((LEAVES[index], index, size, flipped, root))
    for case in bad:
        assert not merkle.verify_inclusion(*case), case


@pytest.mark.parametrize(("size1", "size2", "path"), CONSISTENCY)
def test_consistency_vectors(size1: int, size2: int, path: list[str]) -> None:
    proof = merkle.consistency_proof(LEAVES[:size2], size1)
    assert proof == unhex(path)
    root1, root2 = bytes.fromhex(ROOTS[size1 - 1]), bytes.fromhex(ROOTS[size2 - 1])
    assert merkle.verify_consistency(size1, size2, root1, root2, proof)
    if size1 == size2:
        assert not merkle.verify_consistency(size1, size2, root1, root2, [root1])
        return
    assert ref_verify_consistency(size1, size2, root1, root2, proof)
    # The corruptions of verify_test.go's corruptConsistencyProof.
    wrong = b"WrongRoot" + bytes(23)
    bad: list[tuple[int, int, bytes, bytes, list[bytes]]] = [
        (size1 - 1, size2, root1, root2, proof),
        (size1 + 1, size2, root1, root2, proof),
        (size1 ^ 2, size2, root1, root2, proof),
        (size1, size2 * 2, root1, root2, proof),
        (size1, size2 // 2, root1, root2, proof),
        (size1, size2, wrong, root2, proof),
        (size1, size2, root1, wrong, proof),
        (size1, size2, root2, root1, proof),
        (size1, size2, root1, root2, []),
        (size1, size2, root1, root2, [*proof, b""]),
        (size1, size2, root1, root2, [*proof, root1]),
        (size1, size2, root1, root2, [*proof, root2]),
        (size1, size2, root1, root2, [b"", *proof]),
        (size1, size2, root1, root2, [root1, *proof]),
        (size1, size2, root1, root2, [root2, *proof]),
        (size1, size2, root1, root2, [proof[0], *proof]),
        (size1, size2, root1, root2, proof[:-1]),
    ]
    for i in range(len(proof)):
        flipped = list(proof)
        flipped[i] = bytes([flipped[i][0] ^ 16]) + flipped[i][1:]
        bad.append((size1, size2, root1, root2, flipped))
    for case in bad:
        assert not merkle.verify_consistency(*case), case


def test_consistency_edges() -> None:
    """verify_test.go TestVerifyConsistency, where hashes are hashes (ours checks sizes)."""
    r1, r2 = hashlib.sha256(b"1").digest(), hashlib.sha256(b"2").digest()
    empty = merkle.EMPTY_ROOT
    v = merkle.verify_consistency
    assert not v(0, 0, r1, r2, [])
    assert not v(1, 1, r1, r2, [])
    assert v(0, 0, empty, empty, [])
    assert not v(0, 0, r1, r1, [])  # equal, but not the empty tree's root
    assert v(0, 1, empty, r2, [])
    assert not v(0, 1, r1, r2, [])  # the empty tree's root is known
    assert v(1, 1, r2, r2, [])
    assert not v(1, 0, r1, r2, [])
    assert not v(2, 1, r1, r2, [])
    assert not v(1, 2, r1, r2, [])
    assert not v(0, 0, empty, r2, [])
    assert not v(1, 1, empty, r2, [])
    assert not v(0, 0, empty, empty, [empty])
    assert not v(0, 1, empty, empty, [empty])
    assert not v(1, 1, empty, empty, [empty])
    assert merkle.consistency_proof(LEAVES, 0) == []
    assert merkle.consistency_proof(LEAVES, 8) == []
    with pytest.raises(ValueError):
        merkle.consistency_proof(LEAVES, 9)
    with pytest.raises(ValueError):
        merkle.consistency_proof(LEAVES, -1)


def test_inclusion_edges() -> None:
    some = hashlib.sha256(b"some").digest()
    for index, size in [(0, 0), (0, 1), (1, 0), (2, 1), (-1, 1)]:
        assert not merkle.verify_inclusion(some, index, size, [], b"")
        assert not merkle.verify_inclusion(b"", index, size, [], merkle.EMPTY_ROOT)
        assert not merkle.verify_inclusion(some, index, size, [], merkle.EMPTY_ROOT)
    assert merkle.verify_inclusion(some, 0, 1, [], some)  # one leaf: it is the root
    assert not merkle.verify_inclusion(b"", 0, 1, [], b"")  # not a hash
    with pytest.raises(IndexError):
        merkle.inclusion_proof(LEAVES, 8)
    with pytest.raises(IndexError):
        merkle.inclusion_proof(LEAVES, -1)
    with pytest.raises(IndexError):
        merkle.inclusion_proof([], 0)


def test_real_ct_log_audit_path() -> None:
    leaf, root, path = bytes.fromhex(CT_LEAF), bytes.fromhex(CT_ROOT), unhex(CT_PATH)
    assert merkle.verify_inclusion(leaf, CT_INDEX, CT_SIZE, path, root)
    assert ref_verify_inclusion(leaf, CT_INDEX, CT_SIZE, path, root)
    assert not merkle.verify_inclusion(leaf, CT_INDEX, CT_SIZE, path, bytes(32))
    far = CT_INDEX + 2 ** (len(path) + 1)  # the path is too short for it
    assert not merkle.verify_inclusion(leaf, far, CT_SIZE, path, root)
    assert not merkle.verify_inclusion(leaf, CT_INDEX, CT_SIZE, path[:-1], root)


# --- Every proof of small trees, checked by the reference ---

N = 40
RNG = random.Random(6962)
DATA = [RNG.randbytes(32) for _ in range(2 * N + 2)]  # random leaf hashes
PREFIX_ROOTS = [ref_mth(DATA[:n]) for n in range(len(DATA) + 1)]


def _flips(proof: list[bytes]) -> list[list[bytes]]:
    out = []
    for i in range(len(proof)):
        for pos in (0, 31):
            p = list(proof)
            p[i] = p[i][:pos] + bytes([p[i][pos] ^ 1]) + p[i][pos + 1 :]
            out.append(p)
    return out


def _drops(proof: list[bytes]) -> list[list[bytes]]:
    return [proof[:i] + proof[i + 1 :] for i in range(len(proof))]


@pytest.mark.parametrize("n", range(1, N + 1))
def test_every_inclusion_proof(n: int) -> None:
    leaves = DATA[:n]
    root = merkle.root(leaves)
    assert root == PREFIX_ROOTS[n]
    for i in range(n):
        proof = merkle.inclusion_proof(leaves, i)
        assert proof == ref_path(i, leaves)
        assert ref_verify_inclusion(leaves[i], i, n, proof, root)
        assert merkle.verify_inclusion(leaves[i], i, n, proof, root)
        tampered = [(leaves[i], i, n, p, root) for p in _flips(proof) + _drops(proof)]
        tampered += [(leaves[i], i, n, [*proof, DATA[-1]], root)]
        tampered += [(leaves[i], i, n, [DATA[-1], *proof], root)]
        tampered += [(leaves[j], j, n, proof, root) for j in range(n) if j != i]  # other leaf
        tampered += [(leaves[i], j, n, proof, root) for j in range(n) if j != i]  # index
        # The wrong size, against that size's real root.
        tampered += [
            (leaves[i], i, s, proof, PREFIX_ROOTS[s]) for s in range(i + 1, 2 * n + 2) if s != n
        ]
        tampered += [(leaves[i], i, 2 * n, proof, root), (leaves[i], i, n // 2, proof, root)]
        for case in tampered:
            assert not ref_verify_inclusion(*case), case
            assert not merkle.verify_inclusion(*case), case


@pytest.mark.parametrize("n", range(1, N + 1))
def test_every_consistency_proof(n: int) -> None:
    leaves = DATA[:n]
    root2 = PREFIX_ROOTS[n]
    for m in range(1, n):
        root1 = PREFIX_ROOTS[m]
        proof = merkle.consistency_proof(leaves, m)
        assert proof == ref_proof(m, leaves)
        assert ref_verify_consistency(m, n, root1, root2, proof)
        assert merkle.verify_consistency(m, n, root1, root2, proof)
        tampered = [(m, n, root1, root2, p) for p in _flips(proof) + _drops(proof)]
        tampered += [(m, n, root1, root2, [*proof, DATA[-1]])]
        tampered += [(m, n, root1, root2, [DATA[-1], *proof])]
        tampered += [(m, n, root2, root1, proof)]
        # Another old size or new size, each against its real root.
        tampered += [(k, n, PREFIX_ROOTS[k], root2, proof) for k in range(1, n) if k != m]
        tampered += [
            (m, k, root1, PREFIX_ROOTS[k], proof) for k in range(m + 1, 2 * n + 2) if k != n
        ]
        tampered += [(m, 2 * n, root1, root2, proof)]
        for case in tampered:
            assert not ref_verify_consistency(*case), case
            assert not merkle.verify_consistency(*case), case
    assert merkle.consistency_proof(leaves, n) == []
    assert merkle.verify_consistency(n, n, root2, root2, [])
    assert merkle.verify_consistency(0, n, merkle.EMPTY_ROOT, root2, [])


@pytest.mark.parametrize("chunk", [1, 2, 4, 8])
def test_chunked_roots(monkeypatch: pytest.MonkeyPatch, chunk: int) -> None:
    """Big ranges are hashed in chunks of perfect subtrees: the same tree, the same proofs."""
    monkeypatch.setattr(merkle, "_CHUNK", chunk)
    for n in range(len(DATA) + 1):
        assert merkle.root(DATA[:n]) == PREFIX_ROOTS[n]
    for n in (1, 7, 13, 32, 33, 40):
        leaves = DATA[:n]
        assert [merkle.inclusion_proof(leaves, i) for i in range(n)] == [
            ref_path(i, leaves) for i in range(n)
        ]
        assert [merkle.consistency_proof(leaves, m) for m in range(1, n)] == [
            ref_proof(m, leaves) for m in range(1, n)
        ]


def test_a_bigger_tree() -> None:
    """Sizes around a power of two, far from the small cases; no recursion limits."""
    rng = random.Random(9162)
    n = 2**15 + 3
    leaves = [rng.randbytes(32) for _ in range(n)]
    root = merkle.root(leaves)
    assert root == merkle.frontier_root(merkle.frontier_of(leaves))
    for i in (0, 1, 2**15 - 1, 2**15, n - 1, rng.randrange(n)):
        proof = merkle.inclusion_proof(leaves, i)
        assert ref_verify_inclusion(leaves[i], i, n, proof, root)
    for m in (1, 2**14, 2**15 - 1, 2**15, 2**15 + 1, n - 1, rng.randrange(1, n)):
        proof = merkle.consistency_proof(leaves, m)
        assert ref_verify_consistency(m, n, merkle.root(leaves[:m]), root, proof)


# --- The frontier ---


def test_frontier_follows_every_prefix() -> None:
    rng = random.Random(300)
    leaves = [rng.randbytes(32) for _ in range(300)]
    frontier = merkle.EMPTY_FRONTIER
    assert merkle.frontier_root(frontier) == merkle.EMPTY_ROOT
    for k in range(1, 301):
        frontier = merkle.frontier_append(frontier, leaves[k - 1])
        assert frontier.size == k
        assert merkle.frontier_root(frontier) == merkle.root(leaves[:k]) == ref_mth(leaves[:k])
        assert merkle.frontier_of(leaves[:k]) == frontier


def test_frontier_is_checked() -> None:
    leaf = merkle.leaf_hash(b"x")
    with pytest.raises(ValueError):
        merkle.Frontier(3, (leaf,))  # 3 = 2 + 1 has two peaks
    with pytest.raises(ValueError):
        merkle.Frontier(1, (b"short",))
    with pytest.raises(ValueError):
        merkle.Frontier(-1, ())
    with pytest.raises(ValueError):
        merkle.frontier_append(merkle.EMPTY_FRONTIER, b"data, not a hash")


# -- proofs from stored interior nodes (what the server keeps so a proof is O(log n)) -----


def stored_nodes(leaves: Sequence[bytes], keep_from: int) -> dict[tuple[int, int], bytes]:
    tree = merkle.Growing(keep_from=keep_from)
    for leaf in leaves:
        tree.append(leaf)
    return {(level, index): node for level, index, node in tree.completed}


def from_nodes(
    leaves: Sequence[bytes], nodes: dict[tuple[int, int], bytes], lo: int, hi: int
) -> bytes:
    """MTH(D[lo:hi]) from its pieces: a stored node where there is one, else the leaves."""
    found = []
    for a, b in merkle.pieces(lo, hi):
        level = (b - a).bit_length() - 1
        node = nodes.get((level, a >> level))
        found.append(node if node is not None else merkle.root(leaves[a:b]))
    return merkle.fold(found)


@pytest.mark.parametrize("keep_from", [1, 2, 4])
def test_proofs_from_stored_nodes_are_the_proofs(keep_from: int) -> None:
    rng = random.Random(6962)
    leaves = [merkle.leaf_hash(rng.randbytes(8)) for _ in range(300)]
    nodes = stored_nodes(leaves, keep_from)
    # Every stored node is the root of the leaves it covers, and none is below the level.
    for (level, index), node in nodes.items():
        assert level >= keep_from
        assert node == merkle.root(leaves[index << level : (index + 1) << level])
    assert len(nodes) == sum(300 >> level for level in range(keep_from, 9))
    for n in [1, 2, 3, 5, 8, 16, 17, 100, 255, 256, 257, 300]:
        for index in {0, n // 2, n - 1}:
            path = [
                from_nodes(leaves, nodes, lo, hi) for lo, hi in merkle.inclusion_ranges(index, n)
            ]
            assert path == merkle.inclusion_proof(leaves[:n], index)
        for m in range(0, n + 1, max(1, n // 7)):
            proof = [
                from_nodes(leaves, nodes, lo, hi) for lo, hi in merkle.consistency_ranges(m, n)
            ]
            assert proof == merkle.consistency_proof(leaves[:n], m)


def test_pieces_are_aligned_perfect_subtrees() -> None:
    for n in range(1, 70):
        for index in range(n):
            for lo, hi in merkle.inclusion_ranges(index, n):
                parts = merkle.pieces(lo, hi)
                assert parts[0][0] == lo and parts[-1][1] == hi
                for a, b in parts:
                    width = b - a
                    assert width & (width - 1) == 0 and a % width == 0
