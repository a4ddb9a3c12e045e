"""Held-out loss, perplexity and bits per byte, per language (from the prepared held-out shards)."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoder.data import pipeline, shards
from jaxcoder.data.tokenizer import Tokenizer
from jaxcoder.model.config import ModelConfig
from jaxcoder.train.step import summed_loss


def evaluate(cfg: ModelConfig, params, data_dir: str, seq_len: int, batch_size: int, max_batches: int) -> dict:
    manifest = shards.load_manifest(data_dir)
    tok = Tokenizer(Path(data_dir) / manifest["tokenizer"]["path"])
    byte_len = tok.byte_lengths()
    step = jax.jit(lambda p, b: summed_loss(cfg, p, b))
    out = {}
    pcfg = pipeline.PipelineConfig(data_dir=data_dir, seq_len=seq_len, batch_size=batch_size)
    for language in sorted(manifest.get("heldout_shards", {})):
        nll = tokens = nbytes = 0.0
        for i, batch in enumerate(pipeline.heldout(pcfg, language=language)):
            if i >= max_batches:
                break
            s, n = step(params, {k: jnp.asarray(v) for k, v in batch.items()})
            nll, tokens = nll + float(s), tokens + float(n)
            nbytes += float((byte_len[batch["targets"]] * batch["loss_mask"]).sum())
        if tokens:
            out[language] = {"loss": nll / tokens, "perplexity": math.exp(nll / tokens), "tokens": int(tokens),
                             "bits_per_byte": nll / math.log(2) / max(nbytes, 1.0)}
    return out


def overall(per_language: dict) -> dict:
    tokens = sum(v["tokens"] for v in per_language.values())
    if not tokens:
        return {}
    loss = sum(v["loss"] * v["tokens"] for v in per_language.values()) / tokens
    return {"loss": loss, "perplexity": math.exp(loss), "tokens": tokens,
            "bits_per_byte": float(np.average([v["bits_per_byte"] for v in per_language.values()],
                                              weights=[v["tokens"] for v in per_language.values()]))}


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
