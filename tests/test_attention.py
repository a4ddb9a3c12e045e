"""The reference attention against a float64 NumPy implementation that repeats K/V explicitly,
across GQA ratios, packed segments and sliding windows; and a check that K/V are never repeated."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcoder.model.attention_ops import attend, xla_attention


def naive(q, k, v, seg, window):
    b, t, h, d = q.shape
    kv = k.shape[2]
    k = np.repeat(k.astype(np.float64), h // kv, axis=2)
    v = np.repeat(v.astype(np.float64), h // kv, axis=2)
    s = np.einsum("bthd,bshd->bhts", q.astype(np.float64), k) / np.sqrt(d)
    i, j = np.arange(t)[:, None], np.arange(t)[None, :]
    mask = (j <= i) & ((i - j) < window if window else True)
    mask = mask[None] & (seg[:, :, None] == seg[:, None, :])
    s = np.where(mask[:, None], s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return np.einsum("bhts,bshd->bthd", p, v)


def segments(rng, b, t):
    seg = np.zeros((b, t), np.int32)
    for row in range(b):
        cuts = np.sort(rng.choice(np.arange(1, t), size=rng.integers(0, 4), replace=False))
        seg[row] = np.searchsorted(cuts, np.arange(t), side="right") + 1
    return seg


@pytest.mark.parametrize("heads,kv", [(4, 4), (8, 2), (8, 1)])
@pytest.mark.parametrize("window", [None, 5, 64])
def test_matches_float64_reference(heads, kv, window):
    rng = np.random.default_rng(heads * 10 + kv + (window or 0))
    b, t, d = 2, 37, 16
    q = rng.standard_normal((b, t, heads, d)).astype(np.float32)
    k = rng.standard_normal((b, t, kv, d)).astype(np.float32)
    v = rng.standard_normal((b, t, kv, d)).astype(np.float32)
    seg = segments(rng, b, t)
    got = xla_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), q_segment_ids=jnp.asarray(seg),
                        kv_segment_ids=jnp.asarray(seg), sliding_window=window)
    np.testing.assert_allclose(np.asarray(got), naive(q, k, v, seg, window), rtol=1e-5, atol=1e-5)


def test_kv_heads_are_never_repeated():
    b, t, h, kv, d = 2, 16, 8, 2, 8
    q = jnp.zeros((b, t, h, d))
    k = v = jnp.zeros((b, t, kv, d))
    seg = jnp.ones((b, t), jnp.int32)
    jaxpr = jax.make_jaxpr(lambda q, k, v: xla_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg))(q, k, v)
    repeated_shapes = {(b, t, h, d), (b, h, t, d)}
    for eqn in jaxpr.eqns:
        for out in eqn.outvars:
            assert tuple(out.aval.shape) not in repeated_shapes or eqn.primitive.name in (
                "dot_general", "reshape", "convert_element_type"), eqn
            if eqn.primitive.name in ("broadcast_in_dim", "concatenate", "gather"):
                assert tuple(out.aval.shape) not in repeated_shapes, f"K/V repeated by {eqn.primitive.name}"


def test_unknown_implementation_is_refused():
    x = jnp.zeros((1, 4, 2, 8))
    seg = jnp.ones((1, 4), jnp.int32)
    with pytest.raises(ValueError, match="attention_impl='nope' is not available"):
        attend(x, x, x, q_segment_ids=seg, kv_segment_ids=seg, sliding_window=None, impl="nope")


@pytest.mark.parametrize("window", [None, 100])
def test_query_chunked_path_matches_and_differentiates_identically(window):
    rng = np.random.default_rng(7)
    b, t, h, kv, d = 2, 256, 4, 2, 8
    q, k, v = (jnp.asarray(rng.standard_normal(s).astype(np.float32))
               for s in ((b, t, h, d), (b, t, kv, d), (b, t, kv, d)))
    seg = jnp.asarray(segments(rng, b, t))

    def loss(q, k, v, chunk):
        out = xla_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, sliding_window=window, q_chunk=chunk)
        return (out * jnp.cos(out)).sum()

    full = jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v, None)
    chunked = jax.value_and_grad(loss, argnums=(0, 1, 2))(q, k, v, 64)
    np.testing.assert_allclose(chunked[0], full[0], rtol=1e-6)
    for a, g in zip(chunked[1], full[1], strict=True):
        np.testing.assert_allclose(a, g, rtol=1e-5, atol=1e-6)
