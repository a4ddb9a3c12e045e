"""Held-out loss, perplexity and bits per byte, per language (from the prepared held-out shards).

The training loop's held-out loss and `jaxcoder eval` both read the held-out data through
`heldout_sums`, so one checkpoint with the same settings reports one number in both places.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoder.data import pipeline, shards
from jaxcoder.data.tokenizer import load_tokenizer
from jaxcoder.model.config import ModelConfig
from jaxcoder.train.step import summed_loss


def heldout_step(cfg: ModelConfig, byte_len: np.ndarray, **jit_kwargs) -> Callable:
    """Jitted (params, batch) -> (summed nll, target tokens, target bytes). The sums are taken
    inside the computation, so with a batch sharded over processes they are global."""
    table = jnp.asarray(byte_len, jnp.float32)

    def step(params, batch):
        nll, tokens = summed_loss(cfg, params, batch)
        mask = batch["loss_mask"].astype(jnp.float32)
        return nll, tokens, (table[batch["targets"]] * mask).sum()

    return jax.jit(step, **jit_kwargs)


def heldout_sums(step: Callable, params, pcfg: pipeline.PipelineConfig, max_batches: int, *,
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


def evaluate(cfg: ModelConfig, params, data_dir: str, seq_len: int, batch_size: int, max_batches: int) -> dict:
    """Per-language held-out metrics of one model (`overall` combines them)."""
    manifest = shards.load_manifest(data_dir)
    tok = load_tokenizer(Path(data_dir) / manifest["tokenizer"]["path"])
    step = heldout_step(cfg, tok.byte_lengths())
    pcfg = pipeline.PipelineConfig(data_dir=data_dir, seq_len=seq_len, batch_size=batch_size)
    return {lang: metrics(s) for lang, s in heldout_sums(step, params, pcfg, max_batches).items()}


def continuation_nll(cfg: ModelConfig, params, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16) -> float:
    """Mean negative log-likelihood (nats/token) of each target given its prompt, teacher-forced:
    for FIM, how well the model predicts the true middle after the infilling prompt. Rows are
    right-padded to a power-of-two length (few compiles); padding is causal-invisible and masked."""
    total, count = 0.0, 0
    step = jax.jit(lambda p, b: summed_loss(cfg, p, b))
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        longest = max(len(p) + len(t) for p, t in chunk)
        width = max(32, 1 << (longest - 2).bit_length())  # inputs are one shorter than the sequence
        rows = np.zeros((len(chunk), width + 1), np.int32)
        mask = np.zeros((len(chunk), width), np.float32)
        for r, (prompt, target) in enumerate(chunk):
            seq = [*prompt, *target]
            rows[r, :len(seq)] = seq
            mask[r, len(prompt) - 1:len(seq) - 1] = 1.0  # positions whose next token is a target token
        t = jnp.arange(width, dtype=jnp.int32)
        batch = {"inputs": jnp.asarray(rows[:, :-1]), "targets": jnp.asarray(rows[:, 1:]),
                 "segment_ids": jnp.ones((len(chunk), width), jnp.int32),
                 "positions": jnp.broadcast_to(t, (len(chunk), width)), "loss_mask": jnp.asarray(mask)}
        s, c = step(params, batch)
        total, count = total + float(s), count + float(c)
    return total / max(count, 1.0)
