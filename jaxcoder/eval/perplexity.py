"""Held-out perplexity per language and the teacher-forced NLL of FIM middles, for `jaxcoder eval`.

The held-out sums are train/heldout.py's, the same code the training log uses, so one checkpoint
with the same settings reports one number in both places.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoder.data import pipeline, shards
from jaxcoder.data.tokenizer import load_tokenizer
from jaxcoder.model.config import ModelConfig
from jaxcoder.model.loss import summed_loss
from jaxcoder.train.heldout import heldout_step, heldout_sums, metrics, overall

__all__ = ["continuation_nll", "evaluate", "overall"]


def evaluate(cfg: ModelConfig, params, data_dir: str, seq_len: int, batch_size: int, max_batches: int) -> dict:
    """Per-language held-out metrics of one model (`overall` combines them)."""
    manifest = shards.load_manifest(data_dir)
    tok = load_tokenizer(shards.tokenizer_path(data_dir, manifest))
    step = heldout_step(cfg, tok.byte_lengths())
    pcfg = pipeline.LoaderConfig(data_dir=data_dir, seq_len=seq_len, batch_size=batch_size)
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
