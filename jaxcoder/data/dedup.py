"""Exact and near deduplication (MinHash LSH with StarCoder's parameters).

Near-dedup follows bigcode-dataset's `minhash_deduplication.py`: tokens are the pieces between
non-alphanumeric characters, shingles are space-joined 5-grams, 256 permutations, Jaccard
threshold 0.7 with LSH bands chosen by datasketch's false-positive/negative optimum (25 bands x
10 rows); each bucket's members are joined to its smallest id, the clusters are the connected
components of that graph (in Beam for the corpus: components.py; `union_find_components` here
for bounded graphs and as the reference), one document kept per cluster.

Written here rather than calling datasketch because the per-shingle Python hashing dominates
its cost: we hash each token once with CRC32 (C speed), combine token hashes into 5-gram hashes
with vectorised polynomial arithmetic, and apply all permutations as one uint32 affine
matrix product. `bench/dedup.py` compares speed and clusters with datasketch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import zlib
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from jaxcoder.fields import check, field

NON_ALPHA = re.compile("[^A-Za-z_0-9]")  # bigcode splits on this
# The same split on bytes, twice as fast as a regex: every other byte becomes a space.
_WORD_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_SPLIT_TABLE = bytes(c if c in _WORD_BYTES else 0x20 for c in range(256))


@dataclasses.dataclass(frozen=True)
class DedupConfig:
    ngram: int = field(5, ge=1)
    num_perm: int = field(256, ge=1)
    threshold: float = field(0.7, gt=0, le=1)
    min_tokens: int = field(5, ge=0)  # documents with fewer tokens get no signature (never near-duplicates)
    seed: int = field(42, ge=0)

    def __post_init__(self):
        check(self, "data.dedup")


def optimal_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) minimising equal-weight false positive + false negative areas (datasketch's rule)."""

    def integrate(f, a, b, steps=200):
        xs = np.linspace(a, b, steps + 1)
        return float(np.trapezoid(f(xs), xs)) if hasattr(np, "trapezoid") else float(np.trapz(f(xs), xs))

    best, best_err = (1, num_perm), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = integrate(lambda s, b=b, r=r: 1 - (1 - s ** r) ** b, 0.0, threshold)
            fn = integrate(lambda s, b=b, r=r: 1 - (1 - (1 - s ** r) ** b), threshold, 1.0)
            err = 0.5 * fp + 0.5 * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class MinHasher:
    """Signatures of `num_perm` uint32 minima; bands are hashed into LSH buckets."""

    def __init__(self, cfg: DedupConfig = DedupConfig()):
        self.cfg = cfg
        rng = np.random.RandomState(cfg.seed)
        # Random affine permutations of the 32-bit hash space, x -> (a*x + b) mod 2^32 with a odd.
        # 32-bit lanes run ~6x faster than datasketch's 64-bit mod-prime arithmetic.
        self.a = (rng.randint(0, 2**31, cfg.num_perm, dtype=np.int64).astype(np.uint32) << np.uint32(1)) | np.uint32(1)
        self.b = rng.randint(0, 2**32, cfg.num_perm, dtype=np.int64).astype(np.uint32)
        self.bands, self.rows = optimal_bands(cfg.threshold, cfg.num_perm)

    def shingle_hashes(self, text: str, distinct: bool = True) -> np.ndarray:
        """uint32 hashes of the token n-grams of `text` (empty when too short); `distinct=False`
        keeps repeats, which change no minimum and save a sort."""
        toks = text.encode("utf-8", "surrogatepass").translate(_SPLIT_TABLE).split()
        n = self.cfg.ngram
        if len(toks) < max(n, self.cfg.min_tokens):
            return np.zeros(0, np.uint32)
        th = np.fromiter(map(zlib.crc32, toks), np.uint64, len(toks))
        # Polynomial combination of n consecutive token hashes (mod 2^64), folded to 32 bits.
        h = np.zeros(len(toks) - n + 1, np.uint64)
        base = np.uint64(0x100000001B3)
        with np.errstate(over="ignore"):
            for k in range(n):
                h = h * base + th[k: len(toks) - n + 1 + k]
        h32 = ((h >> np.uint64(32)) ^ h).astype(np.uint32)
        return np.unique(h32) if distinct else h32

    def signature(self, text: str) -> np.ndarray | None:
        """uint32[num_perm] MinHash signature, or None for documents too short to compare."""
        h = self.shingle_hashes(text, distinct=False)
        if not h.size:
            return None
        sig = np.full(self.cfg.num_perm, np.iinfo(np.uint32).max, np.uint32)
        for start in range(0, h.size, 8192):  # bounded memory for huge files
            # [num_perm, n] with contiguous rows: the min reduces along memory order.
            block = np.multiply.outer(self.a, h[start:start + 8192])
            block += self.b[:, None]
            np.minimum(sig, block.min(axis=1), out=sig)
        return sig

    def band_keys(self, sig: np.ndarray) -> list[bytes]:
        r = self.rows
        return [bytes([i]) + sig[i * r:(i + 1) * r].tobytes() for i in range(self.bands)]


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))


def bucket_edges(bucket) -> list[tuple]:
    """(band key, member ids) -> edges joining each member to the bucket's smallest id, as
    (larger, smaller): the near-duplicate graph (as in bigcode's pipeline, band collisions are
    merged directly, with no re-check against the threshold)."""
    _, ids = bucket
    ids = sorted(set(ids))
    return [(other, ids[0]) for other in ids[1:]]


def union_find_components(edges) -> dict:
    """node -> the smallest node of its component (nodes on at least one edge), in one process:
    for bounded edge sets only (one repository's files; references in tests and benchmarks)."""
    parent: dict = {}

    def find(x):
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: find(x) for x in list(parent)}


def near_duplicate_clusters(signatures: Sequence[np.ndarray | None], hasher: MinHasher) -> list[int]:
    """Cluster id (the smallest member index) for every document, computed in one process: the
    reference `data prepare`'s Beam components are checked against (tests, bench/dedup.py)."""
    buckets: dict[bytes, list[int]] = defaultdict(list)
    for i, sig in enumerate(signatures):
        if sig is not None:
            for key in hasher.band_keys(sig):
                buckets[key].append(i)
    roots = union_find_components(e for item in buckets.items() for e in bucket_edges(item))
    return [roots.get(i, i) for i in range(len(signatures))]
