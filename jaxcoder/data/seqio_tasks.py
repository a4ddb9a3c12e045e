"""seqio adapters (the `seqio` extra): jaxcoder's tokenizer as a seqio Vocabulary, and prepared
shards as seqio Tasks plus a Mixture, so seqio/T5X users can consume jaxcoder data.

seqio pulls in TensorFlow, so nothing in jaxcoder's training path imports this module.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jaxcoder.data import shards
from jaxcoder.data.languages import language_slug
from jaxcoder.data.pipeline import record_weights, resolve_mixture


def vocabulary(model_path: str | Path):
    """The sentencepiece tokenizer as a `seqio.SentencePieceVocabulary` (no extra ids)."""
    import seqio

    return seqio.SentencePieceVocabulary(str(model_path), extra_ids=0)


def _examples(paths: list[str]):
    import tensorflow as tf

    def gen():
        for p in paths:
            for doc in shards.read_shard(Path(p)):
                yield {"targets": doc}

    return tf.data.Dataset.from_generator(
        gen, output_signature={"targets": tf.TensorSpec(shape=[None], dtype=tf.int32)})


def register(data_dir: str | Path, prefix: str = "jaxcoder", weights: dict[str, float] | None = None) -> str:
    """Registers one Task per language (`{prefix}_{language}`; splits `train` and, when prepared,
    `validation`) and a Mixture `{prefix}_mixture` whose token shares follow `weights` (default:
    the token counts).
    Returns the mixture's name. Records are already tokenized, so the Tasks only append EOS."""
    import seqio

    data_dir = Path(data_dir)
    manifest = shards.load_manifest(data_dir)
    vocab = vocabulary(data_dir / manifest["tokenizer"]["path"])
    features = {"targets": seqio.Feature(vocabulary=vocab, add_eos=True, dtype=np.int32)}
    names = {}
    for language in sorted(manifest["shards"]):
        splits = {"train": shards.shard_paths(data_dir, manifest, language)}
        if language in manifest.get("heldout_shards", {}):
            splits["validation"] = shards.shard_paths(data_dir, manifest, language, "heldout")

        def dataset_fn(split, shuffle_files, seed=None, _splits=splits):
            del shuffle_files, seed
            return _examples(_splits[split])

        name = f"{prefix}_{language_slug(language)}"
        seqio.TaskRegistry.remove(name)
        seqio.TaskRegistry.add(name, source=seqio.FunctionDataSource(dataset_fn, splits=tuple(splits)),
                               preprocessors=[seqio.preprocessors.append_eos], output_features=features)
        names[language] = name
    # seqio rates are per example: token weights become record weights, as in the Grain pipeline.
    by_tokens = resolve_mixture(manifest, tuple((weights or {}).items()))
    rates = record_weights(manifest, by_tokens)
    mixture = f"{prefix}_mixture"
    seqio.MixtureRegistry.remove(mixture)
    seqio.MixtureRegistry.add(mixture, [(names[lang], r) for (lang, _), r in zip(by_tokens, rates, strict=True)])
    return mixture

