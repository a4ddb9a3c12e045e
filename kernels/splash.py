"""Splash attention, Google's production TPU flash-attention kernel shipped with JAX
(`jax.experimental.pallas.ops.tpu.splash_attention`, the one MaxText trains with), behind our
attention signature: q [B, T, H, D], k/v [B, T, KV, D], packed-document segment ids, causal or
sliding-window masks, GQA/MQA without repeating K/V.

We adapt rather than reimplement it: it streams K/V blocks through VMEM instead of keeping whole
rows there (our kernel's TPU limit, `block_sizes.tpu_vmem_bytes`), and it is tuned by the people
who build the TPU compiler. On CPU it runs in the Pallas interpreter (tests only).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jaxcoder_kernels.flash_attention import PAD_SEGMENT

# Sequence tiles: 512 amortises the per-grid-step overhead on every generation we compile for;
# short sequences use one tile of their own (padded to the 128-lane width).
MAX_BLOCK = 512
LANES = 128


def splash_problem(q_len: int, kv_len: int) -> str | None:
    """Why splash cannot compute this case, or None when it can (any head_dim compiles for v4 to
    v6e: tests/test_tpu_compile.py)."""
    if q_len != kv_len:
        return f"splash attention here takes whole sequences (q_len {q_len} != kv_len {kv_len}: decoding)"
    return None


def block_for(length: int) -> int:
    """The sequence tile for a length: MAX_BLOCK, or the length rounded up to lanes if shorter."""
    return min(MAX_BLOCK, -(-length // LANES) * LANES)


@functools.lru_cache(maxsize=64)
def _kernel(heads: int, length: int, window: int | None, block: int, interpret: bool):
    # Masks are processed in numpy when the kernel is built (per shape), hence the cache.
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_mask as sm

    shape = (length, length)
    mask = sm.CausalMask(shape) if window is None else sm.LocalMask(shape, (window - 1, 0), offset=0)
    sizes = sk.BlockSizes(block_q=block, block_kv=block, block_kv_compute=block, block_q_dkv=block,
                          block_kv_dkv=block, block_kv_dkv_compute=block, block_q_dq=block, block_kv_dq=block)
    # Concrete arrays even when first built inside a trace: the cached kernel outlives it.
    with jax.ensure_compile_time_eval():
        return sk.make_splash_mha(sm.MultiHeadMask([mask] * heads), block_sizes=sizes, head_shards=1,
                                  q_seq_shards=1, interpret=interpret)


def splash_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, q_segment_ids: jax.Array,
                     kv_segment_ids: jax.Array, sliding_window: int | None = None,
                     scale: float | None = None, interpret: bool = False) -> jax.Array:
    """Causal attention through splash. q: [B, T, H, D]; k, v: [B, T, KV, D] -> [B, T, H, D]."""
    from jax.experimental.pallas.ops.tpu.splash_attention import splash_attention_kernel as sk

    b, t, h, d = q.shape
    problem = splash_problem(t, k.shape[1])
    if problem:
        raise ValueError(f"model.attention_impl='splash': {problem}")
    block = block_for(t)
    pad = -t % block
    scale = d ** -0.5 if scale is None else scale
    # Splash applies no softmax scale of its own: it goes into q, as MaxText does.
    q = q * jnp.asarray(scale, q.dtype)
    if pad:
        q, k, v = (jnp.pad(x, ((0, 0), (0, pad), (0, 0), (0, 0))) for x in (q, k, v))
        q_segment_ids, kv_segment_ids = (jnp.pad(s, ((0, 0), (0, pad)), constant_values=PAD_SEGMENT)
                                         for s in (q_segment_ids, kv_segment_ids))
    kernel = _kernel(h, t + pad, sliding_window, block, interpret)

    def one_row(q, k, v, q_seg, kv_seg):
        out = kernel(q.swapaxes(0, 1), k.swapaxes(0, 1), v.swapaxes(0, 1),
                     segment_ids=sk.SegmentIds(q=q_seg, kv=kv_seg))
        return out.swapaxes(0, 1)

    out = jax.vmap(one_row)(q, k, v, q_segment_ids.astype(jnp.int32), kv_segment_ids.astype(jnp.int32))
    return out[:, :t]
