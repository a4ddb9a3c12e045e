"""Rotary position embeddings in Hugging Face's half-rotation (`rotate_half`) layout.

Using HF's layout natively keeps export a plain transpose: no per-head permutation of the
query and key projections, which is a classic source of silent export bugs.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jaxcoder.model.config import RopeConfig


def inverse_frequencies(rope: RopeConfig, head_dim: int) -> tuple[np.ndarray, float]:
    """Returns (inv_freq[head_dim // 2], attention_factor) for the configured scaling.

    Computed in float64 on the host then rounded to float32, so every backend sees the same
    constants. Formulas follow the published scaling methods (linear interpolation, Llama 3.1's
    wavelength bands, YaRN's ramp) in the parameterisation Hugging Face configs use.
    """
    dim = head_dim
    exponents = np.arange(0, dim, 2, dtype=np.float64) / dim
    inv_freq = 1.0 / (rope.theta ** exponents)
    attention_factor = 1.0
    if rope.scaling == "linear":
        inv_freq = inv_freq / rope.factor
    elif rope.scaling == "llama3":
        old_ctx = rope.original_max_position
        low_wavelen = old_ctx / rope.low_freq_factor
        high_wavelen = old_ctx / rope.high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > low_wavelen, inv_freq / rope.factor, inv_freq)
        smooth = (old_ctx / wavelen - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
        smoothed = (1 - smooth) * scaled / rope.factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv_freq = np.where(medium, smoothed, scaled)
    elif rope.scaling == "yarn":
        base, factor, old_ctx = rope.theta, rope.factor, rope.original_max_position

        def correction_dim(rotations):
            return dim * math.log(old_ctx / (rotations * 2 * math.pi)) / (2 * math.log(base))

        low, high = correction_dim(rope.beta_fast), correction_dim(rope.beta_slow)
        if rope.truncate:
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = np.clip((np.arange(dim // 2, dtype=np.float64) - low) / (high - low), 0, 1)
        extrapolation = 1 - ramp
        inv_freq = (inv_freq / factor) * (1 - extrapolation) + inv_freq * extrapolation

        def mscale(scale):
            return 0.1 * scale * math.log(factor) + 1.0 if factor > 1 else 1.0

        if rope.attention_factor is not None:
            attention_factor = rope.attention_factor
        elif rope.mscale and rope.mscale_all_dim:
            attention_factor = mscale(rope.mscale) / mscale(rope.mscale_all_dim)
        else:
            attention_factor = mscale(1.0)
    return inv_freq.astype(np.float32), float(attention_factor)


def rope_tables(positions: jnp.ndarray, rope: RopeConfig, head_dim: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """cos and sin of shape positions.shape + (head_dim,), float32."""
    inv_freq, attention_factor = inverse_frequencies(rope, head_dim)
    angles = positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    angles = jnp.concatenate([angles, angles], axis=-1)
    return jnp.cos(angles) * attention_factor, jnp.sin(angles) * attention_factor


def apply_rope(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """x: [batch, length, heads, head_dim]; cos/sin: [batch, length, head_dim]."""
    dtype = x.dtype
    x = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    out = x * cos[:, :, None, :] + rotated * sin[:, :, None, :]
    return out.astype(dtype)
