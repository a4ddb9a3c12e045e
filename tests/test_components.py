"""Near-dedup clusters at scale: Beam's large-star / small-star components equal an exact
single-process union-find, on 20K synthetic documents in chains of near-duplicates whose
clusters span many LSH buckets (the ends of a chain share no band)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from jaxcoder.data.components import converge, write_edges
from jaxcoder.data.config import BeamConfig
from jaxcoder.data.dedup import DedupConfig, MinHasher, bucket_edges, union_find_components
from jaxcoder.data.runner import Runner


def chains(n_chains: int, length: int, words: int = 120, edit: float = 0.03, seed: int = 0) -> list[str]:
    """Documents in chains: each a copy of the previous one with `edit` of its words replaced."""
    rng = np.random.default_rng(seed)
    docs = []
    for c in range(n_chains):
        doc = [f"w{c}_{i}_{rng.integers(1 << 30)}" for i in range(words)]
        for _ in range(length):
            docs.append(" ".join(doc))
            doc = list(doc)
            for i in rng.choice(words, size=max(1, int(edit * words)), replace=False):
                doc[i] = f"x{rng.integers(1 << 40)}"
    return docs


@pytest.mark.slow
def test_components_equal_union_find_on_20k_chained_documents(tmp_path):
    docs = chains(n_chains=400, length=50)
    assert len(docs) >= 20_000
    hasher = MinHasher(DedupConfig())
    buckets: dict[bytes, list[str]] = {}
    ids = [f"doc{i:06d}" for i in range(len(docs))]
    for doc_id, doc in zip(ids, docs, strict=True):
        for key in hasher.band_keys(hasher.signature(doc)):
            buckets.setdefault(key, []).append(doc_id)
    # Every pair that shares a band: the exact reference's graph.
    pairs = [(a, b) for members in buckets.values() for i, a in enumerate(members) for b in members[i + 1:]]
    reference = union_find_components(pairs)
    edges = [e for item in buckets.items() for e in bucket_edges(item)]
    sizes = np.bincount(np.unique(list(reference.values()), return_inverse=True)[1])
    assert sizes.max() >= 20  # clusters of many documents, chained through many buckets

    import apache_beam as beam

    runner = Runner(BeamConfig(), workers=2)
    runner.pipeline("edges", lambda p: write_edges(p | beam.Create(edges), f"{tmp_path}/edges"))
    pattern = converge(runner, str(tmp_path), f"{tmp_path}/edges")
    import glob

    got = {}
    for path in glob.glob(pattern):
        with open(path) as f:
            got.update(tuple(json.loads(line)) for line in f)
    expected = {node: root for node, root in reference.items() if node != root}
    assert got == expected
    rounds = max(int(k.rsplit("_", 1)[1]) for k in runner.counters if k.startswith("components/round_")) + 1
    assert rounds > 3  # the chains needed more than one pipeline of rounds
