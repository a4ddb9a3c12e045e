"""seqio adapters over prepared data, for both tokenizer kinds: the Vocabulary against jaxcoder's
tokenizer, the Tasks and Mixture against the shards, and T5X's decoder-only feature converter."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import numpy as np
import pytest
import seqio
import tensorflow as tf
from helpers import Prepared, prepare_configs

from jaxcoder.data import shards
from jaxcoder.data.languages import language_slug
from jaxcoder.data.seqio_tasks import TokenizerVocabulary, register, vocabulary
from jaxcoder.data.tokenizer import load_tokenizer

TEXTS = ["def f(x):\n\treturn x  # é\n", "    indented\n\n\n   trailing   ", "naïve café, 日本語 🙂\r\n", "x"]


@pytest.fixture(scope="module")
def hf_prepared(tmp_path_factory):
    """Python and C repositories prepared with a byte-level BPE (`hf`) tokenizer, long documents
    stored as several pieces; in process, as it is small."""
    from jaxcoder.data.config import BeamConfig
    from jaxcoder.data.prepare import prepare

    out = tmp_path_factory.mktemp("seqio") / "data"
    sources = (f"{sysconfig.get_paths()['stdlib']}/json", "/usr/include/asm-generic")
    run = Prepared(*prepare_configs(
        out, kind="hf", vocab_size=600, repo_dirs=sources,
        heldout_fraction=0.2, max_sample_tokens=300, near_dedup=False,
        beam=BeamConfig(options=("--direct_num_workers=1", "--direct_running_mode=in_memory"))))
    return run, prepare(run.data, run.tokenizer, progress=False)


@pytest.fixture(params=["sentencepiece", "hf"])
def prepared(request, prepared_data, hf_prepared):
    cfg, manifest = prepared_data if request.param == "sentencepiece" else hf_prepared
    assert manifest["tokenizer"]["kind"] == request.param
    return cfg, manifest


def test_vocabulary_encodes_and_decodes_as_the_tokenizer(prepared):
    cfg, _ = prepared
    vocab, tok = vocabulary(cfg.tokenizer_path), load_tokenizer(cfg.tokenizer_path)
    assert isinstance(vocab, seqio.SentencePieceVocabulary if tok.kind == "sentencepiece" else TokenizerVocabulary)
    assert vocab.eos_id == tok.eos_id and vocab.vocab_size == tok.vocab_size
    for text in TEXTS:
        ids = tok.encode(text)
        assert list(vocab.encode(text)) == ids
        assert vocab.encode_tf(tf.constant(text)).numpy().tolist() == ids
        assert vocab.decode(ids) == tok.decode(ids)
        if tok.kind == "hf":  # byte-level: every text comes back exactly
            assert tok.decode(ids) == text
        # Decoding stops at EOS, in Python and in TF; a padded row's tail is ignored.
        assert vocab.decode([*ids, tok.eos_id, *ids]) == tok.decode(ids)
        padded = tf.constant([*ids, tok.eos_id, *ids, 0, 0], tf.int32)
        assert vocab.decode_tf(padded).numpy().decode("utf-8") == tok.decode(ids)
    batch = vocab.encode_tf(tf.constant(TEXTS))
    assert batch.to_list() == [tok.encode(t) for t in TEXTS]


def _stored(cfg, manifest, language, split="train"):
    """The records of a language's shards as the Tasks should yield them: EOS after a document's
    last piece only."""
    eos = load_tokenizer(cfg.tokenizer_path).eos_id
    pieces = [p for path in shards.shard_paths(cfg.out_dir, manifest, language, split)
              for p in shards.read_pieces(Path(path))]
    return [p["tokens"].tolist() + ([eos] if p["last"] else []) for p in pieces], pieces


def test_tasks_yield_the_prepared_records(prepared):
    cfg, manifest = prepared
    kind = manifest["tokenizer"]["kind"]
    register(cfg.out_dir, prefix=f"jaxcoder_{kind}")
    for language in manifest["shards"]:
        task = seqio.get_mixture_or_task(f"jaxcoder_{kind}_{language_slug(language)}")
        for split in ["train", *(["validation"] if language in manifest["heldout_shards"] else [])]:
            want, _ = _stored(cfg, manifest, language, "train" if split == "train" else "heldout")
            got = [ex["targets"].tolist() for ex in
                   task.get_dataset(None, split=split, shuffle=False).as_numpy_iterator()]
            assert got == want, (language, split)
    if kind == "hf":  # the fixture stores long documents in pieces: only last pieces end with EOS
        pieces = [p for lang in manifest["shards"] for p in _stored(cfg, manifest, lang)[1]]
        assert any(not p["last"] for p in pieces) and any(p["last"] for p in pieces)


def test_mixture_draws_languages_at_their_token_shares(prepared):
    cfg, manifest = prepared
    kind = manifest["tokenizer"]["kind"]
    languages = sorted(manifest["shards"])
    assert len(languages) >= 2
    weights = {lang: (k + 1) / sum(range(1, len(languages) + 1)) for k, lang in enumerate(languages)}
    mixture = seqio.get_mixture_or_task(register(cfg.out_dir, prefix=f"jaxcoder_mix_{kind}", weights=weights))
    stored = {lang: _stored(cfg, manifest, lang)[0] for lang in languages}
    rates = {lang: mixture.get_rate(seqio.get_mixture_or_task(f"jaxcoder_mix_{kind}_{language_slug(lang)}"))
             for lang in languages}
    total = sum(rates.values())
    # Drawing records at these rates gives each language its weight's share of tokens (EOS aside).
    mean_tokens = {lang: manifest["tokens"][lang] / len(stored[lang]) for lang in languages}
    token_share = {lang: rates[lang] * mean_tokens[lang] for lang in languages}
    for lang in languages:
        assert token_share[lang] / sum(token_share.values()) == pytest.approx(weights[lang], rel=1e-9)
    owner = {tuple(r): lang for lang, records in stored.items() for r in records}
    n = 3000
    drawn = [owner[tuple(ex["targets"].tolist())] for ex in mixture.get_dataset(
        None, split="train", shuffle=True, seed=0, num_epochs=None).take(n).as_numpy_iterator()]
    for lang in languages:
        p = rates[lang] / total
        assert abs(drawn.count(lang) - n * p) <= 4.5 * np.sqrt(n * p * (1 - p)), (lang, drawn.count(lang), n * p)


def test_t5x_decoder_feature_converter_packs_the_mixture(prepared):
    """seqio's decoder-only converter (T5X's) packs the mixture's records into rows of segments.
    seqio reserves id 0 for padding, so where EOS is 0 (StarCoder's `<|endoftext|>`) it drops a
    document's final EOS: the segments still keep documents apart (the documented caveat)."""
    cfg, manifest = prepared
    kind = manifest["tokenizer"]["kind"]
    mixture = register(cfg.out_dir, prefix=f"jaxcoder_fc_{kind}")
    records = [r for lang in manifest["shards"] for r in _stored(cfg, manifest, lang)[0]]
    length = 2 * int(np.percentile([len(r) for r in records], 90))  # room for two records in most rows
    ds = seqio.get_dataset(mixture, task_feature_lengths={"targets": length}, dataset_split="train",
                           shuffle=True, seed=1, num_epochs=None,
                           feature_converter=seqio.LMFeatureConverter(pack=True))

    def as_seqio_keeps(r):
        r = r[:length]
        while r and r[-1] == 0:  # seqio's padding id
            r = r[:-1]
        return tuple(r)

    kept = {as_seqio_keeps(r) for r in records}
    rows = segments = 0
    for row in ds.take(10).as_numpy_iterator():
        targets, inputs = row["decoder_target_tokens"], row["decoder_input_tokens"]
        assert targets.shape == (length,)
        rows += 1
        for s in range(1, row["decoder_segment_ids"].max() + 1):
            at = np.flatnonzero(row["decoder_segment_ids"] == s)
            assert np.array_equal(at, np.arange(at[0], at[-1] + 1))  # a segment is contiguous
            seg = targets[at]
            assert tuple(seg.tolist()) in kept  # a stored record, cut to the length
            assert inputs[at].tolist() == [0, *seg[:-1].tolist()]  # teacher forcing within the segment
            assert row["decoder_positions"][at].tolist() == list(range(len(at)))
            assert row["decoder_loss_weights"][at].tolist() == [1] * len(at)
            segments += 1
        assert not row["decoder_loss_weights"][row["decoder_segment_ids"] == 0].any()  # padding
    assert segments > rows  # packing put more than one record in some rows
