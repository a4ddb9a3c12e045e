"""seqio adapters; run only where the `seqio` extra (with TensorFlow) is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

seqio = pytest.importorskip("seqio")


def test_vocabulary_matches_sentencepiece(prepared_data):
    from jaxcoder.data.seqio_tasks import vocabulary
    from jaxcoder.data.tokenizer import load_tokenizer

    cfg, _ = prepared_data
    path = Path(cfg.out_dir) / "tokenizer.model"
    vocab, tok = vocabulary(path), load_tokenizer(path)
    text = "def f(x):\n\treturn x  # é\n"
    assert list(vocab.encode(text)) == tok.encode(text) and vocab.decode(tok.encode(text)) == text


def test_tasks_and_mixture_yield_the_prepared_documents(prepared_data):
    from jaxcoder.data import shards
    from jaxcoder.data.seqio_tasks import register

    cfg, manifest = prepared_data
    mixture = register(cfg.out_dir, prefix="jaxcoder_test")
    lang = max(manifest["documents"], key=manifest["documents"].get)
    task = seqio.get_mixture_or_task(f"jaxcoder_test_{lang}")
    got = [ex["targets"] for ex in task.get_dataset(None, split="train", shuffle=False).as_numpy_iterator()]
    docs = [d for p in shards.shard_paths(cfg.out_dir, manifest, lang) for d in shards.read_shard(Path(p))]
    assert len(got) == len(docs)
    assert all(np.array_equal(g[:-1], d) and g[-1] == 3 for g, d in zip(got, docs, strict=True))
    assert seqio.get_mixture_or_task(mixture).tasks
