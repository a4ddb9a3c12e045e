"""The attention interface: one function signature, several implementations.

`attend(q, k, v, segment_ids, ...)` is what the model calls. `xla_attention` here is the plain
numerical reference; faster kernels (Pallas, cuDNN) register themselves with
`register_attention` and must match it. The mask semantics every implementation must honour:

* causal: query i sees key j only if j <= i (indices within the packed row);
* segments: query and key must carry the same segment id (packed documents never mix);
* sliding window W: additionally i - j < W (Hugging Face's Mistral/StarCoder2 convention).

K and V keep their `n_kv_heads`; grouped queries are reshaped onto them, so K/V are never
repeated in memory.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

AttentionFn = Callable[..., jax.Array]
_REGISTRY: dict[str, AttentionFn] = {}


def register_attention(name: str, fn: AttentionFn) -> None:
    """Makes `fn` selectable as `model.attention_impl=name`."""
    _REGISTRY[name] = fn


def attention_mask(q_segment_ids: jax.Array, kv_segment_ids: jax.Array,
                   sliding_window: int | None, q_offset: int | jax.Array | None = None) -> jax.Array:
    """Boolean [batch, q_len, kv_len] mask (True = attend). Query i sits at key index q_offset + i
    (default: the queries are the last q_len keys)."""
    q_len, kv_len = q_segment_ids.shape[1], kv_segment_ids.shape[1]
    q_idx = jnp.arange(q_len)[:, None] + (kv_len - q_len if q_offset is None else q_offset)
    kv_idx = jnp.arange(kv_len)[None, :]
    mask = kv_idx <= q_idx
    if sliding_window is not None:
        mask &= (q_idx - kv_idx) < sliding_window
    same_doc = q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]
    return mask[None] & same_doc


def attend_block(qg, k, v, mask, scale):
    """qg [B, T, KV, G, D] against all keys [B, S, KV, D] under mask [B, T, S] -> [B, T, KV, G, D].

    Float32 scores and softmax. Also used by the KV-cache decoder."""
    scores = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
    scores = jnp.where(mask[:, None, None], scores, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    return jnp.einsum("bkgts,bskd->btkgd", probs, v, preferred_element_type=jnp.float32)


def xla_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, q_segment_ids: jax.Array,
                  kv_segment_ids: jax.Array, sliding_window: int | None = None,
                  scale: float | None = None, q_chunk: int | None = None) -> jax.Array:
    """Reference attention. q: [B, T, H, D]; k, v: [B, S, KV, D] -> [B, T, H, D].

    Scores and softmax are float32 whatever the input dtype. With `q_chunk` (dividing T), queries
    are processed a chunk at a time under `jax.checkpoint`, so forward and backward hold one
    chunk's [chunk, S] scores instead of [T, S]: the same numbers in O(chunk * S) memory.
    """
    b, t, h, d = q.shape
    kv = k.shape[2]
    if h % kv:
        raise ValueError(f"query heads ({h}) must be a multiple of key/value heads ({kv})")
    scale = d ** -0.5 if scale is None else scale
    qg = q.reshape(b, t, kv, h // kv, d)
    mask = attention_mask(q_segment_ids, kv_segment_ids, sliding_window)
    if not q_chunk or t <= q_chunk or t % q_chunk:
        out = attend_block(qg, k, v, mask, scale)
    else:
        n = t // q_chunk
        q_chunks = qg.reshape(b, n, q_chunk, kv, h // kv, d).swapaxes(0, 1)
        m_chunks = mask.reshape(b, n, q_chunk, mask.shape[-1]).swapaxes(0, 1)
        block = jax.checkpoint(lambda xs: attend_block(xs[0], k, v, xs[1], scale))
        out = jax.lax.map(block, (q_chunks, m_chunks)).swapaxes(0, 1).reshape(b, t, kv, h // kv, d)
    return out.reshape(b, t, h, d).astype(q.dtype)


# Long sequences go through the chunked path: 16K-token training then fits like 4K does.
register_attention("xla", functools.partial(xla_attention, q_chunk=1024))


def resolve_impl(impl: str) -> str:
    """Maps `auto` to a concrete implementation for the current backend."""
    if impl != "auto":
        return impl
    # Only the reference exists until the kernels land; `auto` will then pick per platform.
    return "xla"


def attend(q: jax.Array, k: jax.Array, v: jax.Array, *, q_segment_ids: jax.Array, kv_segment_ids: jax.Array,
           sliding_window: int | None, impl: str = "auto", scale: float | None = None) -> jax.Array:
    """Dispatches to the selected attention implementation."""
    name = resolve_impl(impl)
    fn = _REGISTRY.get(name)
    if fn is None:
        raise ValueError(
            f"model.attention_impl={impl!r} is not available here (available: {', '.join(sorted(_REGISTRY))})")
    return fn(q, k, v, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids,
              sliding_window=sliding_window, scale=scale)
