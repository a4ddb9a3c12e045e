"""Causal flash attention with GQA, packed-document segment ids and sliding windows.

`flash_attention(q, k, v, ...)` takes the model's layout (q [B, T, H, D], k/v [B, S, KV, D]),
pads any length to whole blocks, picks the platform's lowering (Triton on GPU, Mosaic on TPU,
the Pallas interpreter on CPU), and differentiates through a custom VJP whose backward is two
more Pallas kernels. Fully masked tiles (above the diagonal, outside the window, or between
different documents) are skipped, not computed and masked.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxcoder_kernels import flash_bwd, flash_fwd
from jaxcoder_kernels.block_sizes import BlockSizes, check_blocks, default_blocks
from jaxcoder_kernels.flash_common import Static

# Padding rows carry this segment id: they only ever see each other, never a real token.
PAD_SEGMENT = -1


def platform_of_backend(backend: str | None = None) -> str:
    """'gpu', 'tpu' or 'cpu' for a jax backend name (default: the current default backend)."""
    backend = backend or jax.default_backend()
    if backend in ("gpu", "cuda", "rocm"):
        return "gpu"
    return backend if backend == "tpu" else "cpu"


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _flash(st: Static, q, k, v, q_seg, kv_seg):
    return flash_fwd.forward(st, q, k, v, q_seg, kv_seg)[0]


def _flash_fwd(st: Static, q, k, v, q_seg, kv_seg):
    out, lse = flash_fwd.forward(st, q, k, v, q_seg, kv_seg)
    return out, (q, k, v, q_seg, kv_seg, out, lse)


def _flash_bwd(st: Static, residuals, do):
    q, k, v, q_seg, kv_seg, out, lse = residuals
    dq, dk, dv = flash_bwd.backward(st, q, k, v, out, lse, do, q_seg, kv_seg)
    no_grad = np.zeros(q_seg.shape, jax.dtypes.float0), np.zeros(kv_seg.shape, jax.dtypes.float0)
    return dq, dk, dv, *no_grad


_flash.defvjp(_flash_fwd, _flash_bwd)


def _pad_axis(x, axis: int, multiple: int, value=0):
    extra = -x.shape[axis] % multiple
    if not extra:
        return x
    widths = [(0, 0)] * x.ndim
    widths[axis] = (0, extra)
    return jnp.pad(x, widths, constant_values=value)


def flash_attention(q: jax.Array, k: jax.Array, v: jax.Array, *,
                    q_segment_ids: jax.Array | None = None, kv_segment_ids: jax.Array | None = None,
                    sliding_window: int | None = None, scale: float | None = None,
                    block_sizes: BlockSizes | None = None, platform: str | None = None,
                    interpret: bool | None = None, num_stages: int = 2,
                    device_kind: str | None = None) -> jax.Array:
    """Causal attention. q: [B, T, H, D]; k, v: [B, S, KV, D] with H % KV == 0 -> [B, T, H, D].

    Query i sits at key position S - T + i. Segment ids ([B, T] / [B, S] integers, >= 0) keep
    packed documents apart; `sliding_window` W lets query i see keys i - W < j <= i.
    `platform` ('gpu' or 'tpu') selects the lowering and the block-shape rules; by default it
    follows the current backend, and on CPU the GPU kernel runs in the Pallas interpreter
    (`interpret`, default: True exactly on CPU). Block shapes the hardware cannot run are
    refused with `BlockShapeError`; `device_kind` names the target hardware's generation
    (default: this process's first device; the model passes the mesh's, which is a TPU
    topology's when compiling ahead of time on CPU).
    """
    st, args = prepare(q, k, v, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids,
                       q_offset=k.shape[1] - q.shape[1], sliding_window=sliding_window, scale=scale,
                       block_sizes=block_sizes, platform=platform, interpret=interpret,
                       num_stages=num_stages, device_kind=device_kind)
    return restore(st, _flash(st, *args), q.shape[1], q.shape[3])


def prepare(q: jax.Array, k: jax.Array, v: jax.Array, *, q_segment_ids: jax.Array | None,
            kv_segment_ids: jax.Array | None, q_offset: int, sliding_window: int | None = None,
            scale: float | None = None, block_sizes: BlockSizes | None = None, platform: str | None = None,
            interpret: bool | None = None, num_stages: int = 2, device_kind: str | None = None):
    """Checks a call (arguments as `flash_attention`'s) and brings it into the kernels' terms:
    (Static, (q, k, v, q_seg, kv_seg)) padded to whole blocks in the platform's layout, for
    `flash_fwd.forward` / `flash_bwd.backward`. Query i sits at key position `q_offset + i` (a
    ring passes the distance between a query chunk and a key chunk)."""
    backend_platform = platform_of_backend()
    interpret = backend_platform == "cpu" if interpret is None else interpret
    platform = platform or ("gpu" if backend_platform == "cpu" else backend_platform)
    if q.ndim != 4 or k.ndim != 4 or v.shape != k.shape:
        raise ValueError(f"expected q [B, T, H, D] and k, v [B, S, KV, D]; got {q.shape}, "
                         f"{k.shape}, {v.shape}")
    batch, q_len, heads, head_dim = q.shape
    kv_len, kv_heads = k.shape[1], k.shape[2]
    if k.shape[0] != batch or k.shape[3] != head_dim or heads % kv_heads:
        raise ValueError(f"q {q.shape} and k/v {k.shape} disagree on batch/head_dim, or query heads "
                         f"are not a multiple of key/value heads")
    if q_len > kv_len:
        raise ValueError(f"queries ({q_len}) must not outnumber keys ({kv_len})")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype; got {q.dtype}, {k.dtype}, {v.dtype}")
    if sliding_window is not None and sliding_window < 1:
        raise ValueError(f"sliding_window={sliding_window} must be >= 1")
    scale = head_dim ** -0.5 if scale is None else float(scale)
    blocks = block_sizes or default_blocks(platform)

    if q_segment_ids is None:
        q_segment_ids = jnp.zeros((batch, q_len), jnp.int32)
    if kv_segment_ids is None:
        kv_segment_ids = jnp.zeros((batch, kv_len), jnp.int32)
    q_seg = _pad_axis(q_segment_ids.astype(jnp.int32), 1, blocks.q_multiple, PAD_SEGMENT)
    kv_seg = _pad_axis(kv_segment_ids.astype(jnp.int32), 1, blocks.kv_multiple, PAD_SEGMENT)

    # Triton tiles need a power-of-two head dim: zero columns change neither scores nor outputs.
    padded_dim = head_dim
    if platform == "gpu":
        padded_dim = max(16, 1 << (head_dim - 1).bit_length())
    if not interpret:
        check_blocks(blocks, platform, head_dim=padded_dim, itemsize=q.dtype.itemsize,
                     kv_len=kv_seg.shape[1], q_len=q_seg.shape[1], group=heads // kv_heads,
                     num_stages=num_stages,
                     device_kind=device_kind or jax.devices()[0].device_kind)
    q = _pad_axis(_pad_axis(q, 3, padded_dim), 1, blocks.q_multiple)
    k = _pad_axis(_pad_axis(k, 3, padded_dim), 1, blocks.kv_multiple)
    v = _pad_axis(_pad_axis(v, 3, padded_dim), 1, blocks.kv_multiple)

    st = Static(scale=scale, window=sliding_window, q_offset=q_offset, blocks=blocks,
                platform=platform, interpret=interpret, num_stages=num_stages)
    if st.bhtd:
        q, k, v = (x.transpose(0, 2, 1, 3) for x in (q, k, v))
    return st, (q, k, v, q_seg, kv_seg)


def restore(st: Static, out: jax.Array, q_len: int, head_dim: int) -> jax.Array:
    """A kernel output in the model's layout [B, T, H, D] without the padding `prepare` added."""
    if st.bhtd:
        out = out.transpose(0, 2, 1, 3)
    return out[:, :q_len, :, :head_dim]
