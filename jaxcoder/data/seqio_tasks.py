"""seqio adapters (the `seqio` extra): jaxcoder's tokenizers as seqio Vocabularies, and prepared
shards as seqio Tasks plus a Mixture, so seqio/T5X users can consume jaxcoder data.

seqio pulls in TensorFlow, so nothing in jaxcoder's training path imports this module.

A caveat for StarCoder's byte-level vocabulary: its `<|endoftext|>` (EOS) is id 0, which seqio
reserves for padding, so seqio's feature converters drop a document's final EOS (packed segments
still keep documents apart, but the model is not taught to end a file; a converter that keeps it
needs lengths that do not come from `!= 0`). DeepSeek-Coder's and the sentencepiece layouts keep
id 0 apart from EOS.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import seqio
import tensorflow as tf

from jaxcoder.data import shards
from jaxcoder.data.languages import language_slug
from jaxcoder.data.pipeline import record_weights, resolve_mixture
from jaxcoder.data.tokenizer import Tokenizer, load_tokenizer


class TokenizerVocabulary(seqio.Vocabulary):
    """A jaxcoder tokenizer (the `hf` kind: byte-level BPE through `tokenizers`) as a seqio
    Vocabulary. seqio ships only a sentencepiece one; `tokenizers` has no TensorFlow op, so the TF
    methods run the same Python tokenizer through `tf.py_function`: fine in a tf.data input
    pipeline (what seqio uses them for), not inside a saved TF graph."""

    def __init__(self, tokenizer: Tokenizer):
        super().__init__(extra_ids=0)
        self.tokenizer = tokenizer

    @property
    def eos_id(self) -> int | None:
        return self.tokenizer.eos_id

    @property
    def bos_id(self) -> int | None:
        return self.tokenizer.bos_id

    @property
    def unk_id(self) -> int | None:
        # Byte-level BPE encodes every byte, so most such vocabularies have no unknown token.
        return self.tokenizer.token_id("<unk>") if self.tokenizer.has_token("<unk>") else None

    @property
    def _base_vocab_size(self) -> int:
        return self.tokenizer.vocab_size

    def _encode(self, s: str) -> list[int]:
        return self.tokenizer.encode(s)

    def _decode(self, ids) -> str:
        ids = [int(i) for i in ids if 0 <= int(i) < self._base_vocab_size]
        if self.eos_id in ids:  # seqio's decode keeps the first EOS; the text ends before it
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode(ids)

    def _encode_tf(self, s: tf.Tensor) -> tf.Tensor:
        def one(text):
            return tf.py_function(lambda t: np.asarray(self._encode(t.numpy().decode("utf-8")), np.int32),
                                  [text], tf.int32)

        if s.shape.rank == 0:
            out = one(s)
            out.set_shape([None])
            return out
        return tf.map_fn(one, s, fn_output_signature=tf.RaggedTensorSpec([None], tf.int32))

    def _decode_tf(self, ids: tf.Tensor) -> tf.Tensor:
        def one(row):
            def run(r):
                r = [int(i) for i in r.numpy()]
                while r and r[-1] == self.pad_id:  # a padded row's tail (id 0 may also be a real token)
                    r.pop()
                return self._decode(r).encode("utf-8")

            return tf.py_function(run, [row], tf.string)

        if ids.shape.rank == 1:
            out = one(ids)
            out.set_shape([])
            return out
        return tf.map_fn(one, ids, fn_output_signature=tf.TensorSpec([], tf.string))

    def __eq__(self, other) -> bool:
        return isinstance(other, TokenizerVocabulary) and other.tokenizer.sha256() == self.tokenizer.sha256()

    def __hash__(self) -> int:
        return hash(self.tokenizer.sha256())


def vocabulary(path: str | Path) -> seqio.Vocabulary:
    """The tokenizer at `path` as a seqio Vocabulary: seqio's own `SentencePieceVocabulary` for a
    sentencepiece model (TF ops, no extra ids), `TokenizerVocabulary` for the `hf` kind."""
    tok = load_tokenizer(path)
    if tok.kind == "sentencepiece":
        return seqio.SentencePieceVocabulary(str(tok.path), extra_ids=0)
    return TokenizerVocabulary(tok)


def _examples(paths: list[str], eos_id: int):
    """One example per stored record: a piece of a long document, or a whole document; EOS
    follows only a document's last piece, as in the Grain pipeline."""

    def gen():
        for p in paths:
            for piece in shards.read_pieces(Path(p)):
                tokens = piece["tokens"]
                yield {"targets": np.append(tokens, eos_id).astype(np.int32) if piece["last"] else tokens}

    return tf.data.Dataset.from_generator(
        gen, output_signature={"targets": tf.TensorSpec(shape=[None], dtype=tf.int32)})


def register(data_dir: str | Path, prefix: str = "jaxcoder", weights: dict[str, float] | None = None) -> str:
    """Registers one Task per language (`{prefix}_{language}`; splits `train` and, when prepared,
    `validation`) and a Mixture `{prefix}_mixture` whose token shares follow `weights` (default:
    the token counts). Returns the mixture's name.

    Records are already tokenized (with the vocabulary the Tasks declare, chosen by the prepared
    tokenizer's kind) and end their documents with EOS, so the Tasks have no preprocessors."""
    manifest = shards.load_manifest(data_dir)
    tok_path = shards.tokenizer_path(data_dir, manifest)
    vocab = vocabulary(tok_path)
    eos = load_tokenizer(tok_path).eos_id
    features = {"targets": seqio.Feature(vocabulary=vocab, add_eos=False, dtype=tf.int32)}
    names = {}
    for language in sorted(manifest["shards"]):
        splits = {"train": shards.shard_paths(data_dir, manifest, language)}
        if language in manifest.get("heldout_shards", {}):
            splits["validation"] = shards.shard_paths(data_dir, manifest, language, "heldout")

        def dataset_fn(split, shuffle_files, seed=None, _splits=splits):
            del shuffle_files, seed
            return _examples(_splits[split], eos)

        name = f"{prefix}_{language_slug(language)}"
        seqio.TaskRegistry.remove(name)
        seqio.TaskRegistry.add(name, source=seqio.FunctionDataSource(dataset_fn, splits=tuple(splits)),
                               preprocessors=[], output_features=features)
        names[language] = name
    # seqio rates are per example: token weights become record weights, as in the Grain pipeline.
    by_tokens = resolve_mixture(manifest, tuple((weights or {}).items()))
    rates = record_weights(manifest, by_tokens)
    mixture = f"{prefix}_mixture"
    seqio.MixtureRegistry.remove(mixture)
    seqio.MixtureRegistry.add(mixture, [(names[lang], r) for (lang, _), r in zip(by_tokens, rates, strict=True)])
    return mixture
