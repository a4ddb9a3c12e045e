"""Sampling from a jaxcoder model (no KV cache yet: each step re-runs the jitted forward over a
fixed-size buffer, which is simple and exact; the cached decoder replaces it later)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoder.model import functional as F
from jaxcoder.model.config import ModelConfig


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    max_new_tokens: int = 64
    temperature: float = 0.0  # 0 = greedy
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0


def sample_logits(logits: jax.Array, key: jax.Array, s: SamplingConfig) -> jax.Array:
    """logits [B, V] -> token ids [B]."""
    if s.temperature <= 0:
        return jnp.argmax(logits, axis=-1)
    logits = logits / s.temperature
    if s.top_k:
        kth = jax.lax.top_k(logits, s.top_k)[0][:, -1:]
        logits = jnp.where(logits < kth, -jnp.inf, logits)
    if s.top_p < 1.0:
        sorted_logits = jnp.sort(logits, axis=-1)[:, ::-1]
        cum = jnp.cumsum(jax.nn.softmax(sorted_logits, axis=-1), axis=-1)
        # Keep the smallest prefix whose mass reaches top_p (always at least one token).
        cutoff_idx = jnp.sum(cum < s.top_p, axis=-1, keepdims=True)
        cutoff = jnp.take_along_axis(sorted_logits, cutoff_idx, axis=-1)
        logits = jnp.where(logits < cutoff, -jnp.inf, logits)
    return jax.random.categorical(key, logits, axis=-1)


def generate(cfg: ModelConfig, params, prompts: list[list[int]], s: SamplingConfig,
             stop_ids: tuple[int, ...] = ()) -> list[list[int]]:
    """Continues each prompt by up to `max_new_tokens` tokens (stopping at any of stop_ids)."""
    lengths = [len(p) for p in prompts]
    if min(lengths) == 0:
        raise ValueError("every prompt needs at least one token")
    total = max(lengths) + s.max_new_tokens
    if total > cfg.max_seq_len:
        raise ValueError(f"prompt + max_new_tokens = {total} exceeds the model's max_seq_len {cfg.max_seq_len}")
    buf = np.zeros((len(prompts), total), np.int32)
    for i, p in enumerate(prompts):
        buf[i, : len(p)] = p

    @jax.jit
    def next_token(params, tokens, pos, key):
        logits = F.forward(cfg, params, tokens)
        last = jnp.take_along_axis(logits, (pos - 1)[:, None, None], axis=1)[:, 0]
        return sample_logits(last, key, s)

    pos = np.asarray(lengths, np.int32)
    done = np.zeros(len(prompts), bool)
    key = jax.random.PRNGKey(s.seed)
    for _ in range(s.max_new_tokens):
        key, sub = jax.random.split(key)
        tok = np.asarray(next_token(params, jnp.asarray(buf), jnp.asarray(pos), sub))
        for i in range(len(prompts)):
            if not done[i]:
                buf[i, pos[i]] = tok[i]
                pos[i] += 1
                done[i] = tok[i] in stop_ids
        if done.all():
            break
    return [buf[i, lengths[i]: pos[i]].tolist() for i in range(len(prompts))]
