"""Held-out loss and bits per byte, per language, over the prepared held-out shards.

One implementation for the training log (every `train.eval_every` steps) and for `jaxcoder eval`'s
perplexity: the same rows give the same number whatever the number of hosts.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoder.data import pipeline, shards
from jaxcoder.model.config import ModelConfig
from jaxcoder.model.loss import summed_loss


def heldout_step(cfg: ModelConfig, byte_len: np.ndarray, **jit_kwargs) -> Callable:
    """Jitted (params, batch) -> (summed nll, target tokens, target bytes). The sums are taken
    inside the computation, so with a batch sharded over processes they are global."""
    table = jnp.asarray(byte_len, jnp.float32)

    def step(params, batch):
        nll, tokens = summed_loss(cfg, params, batch)
        mask = batch["loss_mask"].astype(jnp.float32)
        return nll, tokens, (table[batch["targets"]] * mask).sum()

    return jax.jit(step, **jit_kwargs)


def heldout_sums(step: Callable, params, pcfg: pipeline.LoaderConfig, max_batches: int, *,
                 place: Callable | None = None, process_index: int = 0, process_count: int = 1) -> dict:
    """{language: {"nll", "tokens", "bytes"}} over the first `max_batches` held-out batches of each
    language (`pcfg.batch_size` rows of `pcfg.seq_len` tokens: the global batch). `place` turns a
    process's rows into the step's input (default: device arrays). Every process builds the same
    batches and feeds its own slice of rows, so the result does not depend on the process count
    and every process calls `step` equally often (held-out data is small; reading it all on each
    host costs little)."""
    place = place or (lambda b: {k: jnp.asarray(v) for k, v in b.items()})
    if pcfg.batch_size % process_count:
        raise ValueError(f"the held-out batch ({pcfg.batch_size} rows) is not divisible by {process_count} processes")
    per = pcfg.batch_size // process_count
    rows = slice(process_index * per, (process_index + 1) * per)
    out = {}
    for language in sorted(shards.load_manifest(pcfg.data_dir).get("heldout_shards", {})):
        sums = np.zeros(3)
        for batch in itertools.islice(pipeline.heldout(pcfg, language=language), max_batches):
            sums += [float(x) for x in step(params, place({k: v[rows] for k, v in batch.items()}))]
        if sums[1]:
            out[language] = {"nll": sums[0], "tokens": int(sums[1]), "bytes": int(sums[2])}
    return out


def metrics(sums: dict) -> dict:
    """Loss (nats/token), perplexity and bits per byte from summed nll/tokens/bytes."""
    loss = sums["nll"] / sums["tokens"]
    return {"loss": loss, "perplexity": math.exp(loss),
            "bits_per_byte": sums["nll"] / math.log(2) / max(sums["bytes"], 1),
            "nll": sums["nll"], "tokens": sums["tokens"], "bytes": sums["bytes"]}


def overall(per_language: dict) -> dict:
    """All languages together: every held-out token counts once (token-weighted loss; bits per
    byte over all bytes)."""
    if not per_language:
        return {}
    return metrics({k: sum(v[k] for v in per_language.values()) for k in ("nll", "tokens", "bytes")})
