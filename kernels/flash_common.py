"""What the forward and both backward kernels share: the mask, the block ranges that skip fully
masked tiles, the two memory layouts, and the per-platform compiler parameters.

Positions: key j sits at position j; query i at `q_offset + i` (queries are the last keys).
Query i may see key j when j <= pos(i) (causal), pos(i) - j < window (sliding window, the
Mistral/StarCoder2 convention) and their segment ids are equal (packed documents).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton
from jaxcoder_kernels.block_sizes import BlockSizes, num_warps

# The running max starts finite so that a tile whose scores are all masked (-inf) leaves
# exp(m_old - m_new) = 1 instead of exp(-inf - -inf) = nan.
M_INIT = -1e30


@dataclasses.dataclass(frozen=True)
class Static:
    """Everything about a call that is fixed at trace time (hashable: a custom_vjp nondiff arg)."""

    scale: float
    window: int | None
    q_offset: int
    blocks: BlockSizes
    platform: str          # "gpu" (Triton, [B, T, H, D]) or "tpu" (Mosaic, [B, H, T, D])
    interpret: bool
    num_stages: int = 2

    @property
    def bhtd(self) -> bool:
        return self.platform == "tpu"


def dims(st: Static, q, k) -> tuple[int, int, int, int, int, int]:
    """(batch, heads, q_len, head_dim, kv_heads, kv_len) of arrays in the kernel layout."""
    if st.bhtd:
        batch, heads, q_len, head_dim = q.shape
        kv_heads, kv_len = k.shape[1], k.shape[2]
    else:
        batch, q_len, heads, head_dim = q.shape
        kv_len, kv_heads = k.shape[1], k.shape[2]
    return batch, heads, q_len, head_dim, kv_heads, kv_len


def allowed(st: Static, q_pos: jax.Array, kv_pos: jax.Array, q_seg: jax.Array,
            kv_seg: jax.Array) -> jax.Array:
    """[bq, bk] boolean: q_pos/q_seg are [bq, 1] columns, kv_pos/kv_seg [1, bk] rows."""
    ok = (kv_pos <= q_pos) & (q_seg == kv_seg)
    if st.window is not None:
        ok &= (q_pos - kv_pos) < st.window
    return ok


def _div_floor0(x, d: int):
    """max(x, 0) // d without signed division (Mosaic lowers `sign` only on a real TPU)."""
    return lax.div(jnp.maximum(x, 0), jnp.int32(d))


def kv_block_range(st: Static, q_start, bq: int, bk: int, num_kv_blocks: int):
    """[lo, hi) KV blocks a query tile [q_start, q_start + bq) can see; the rest are skipped."""
    first_pos = st.q_offset + q_start
    hi = jnp.minimum(num_kv_blocks, _div_floor0(first_pos + bq - 1, bk) + 1)
    lo = 0 if st.window is None else _div_floor0(first_pos - st.window + 1, bk)
    return lo, hi


def q_block_range(st: Static, kv_start, bk: int, bq: int, num_q_blocks: int):
    """[lo, hi) query blocks that can see the KV tile [kv_start, kv_start + bk)."""
    lo = _div_floor0(kv_start - st.q_offset, bq)
    if st.window is None:
        return lo, num_q_blocks
    last_idx = kv_start + bk - 1 + st.window - 1 - st.q_offset
    hi = jnp.where(last_idx < 0, 0, jnp.minimum(num_q_blocks, _div_floor0(last_idx, bq) + 1))
    return lo, hi


def segments_overlap(q_bounds_ref, i, kv_bounds_ref, j):
    """Whether query block i and KV block j share any segment id (else the tile is skipped).

    The refs hold per-block [min; max] of the segment ids, computed outside the kernel."""
    return (kv_bounds_ref[0, j] <= q_bounds_ref[1, i]) & (kv_bounds_ref[1, j] >= q_bounds_ref[0, i])


def segment_bounds(seg: jax.Array, block: int) -> jax.Array:
    """[B, L] segment ids -> [B, 2, L / block] per-block min and max."""
    b, length = seg.shape
    tiles = seg.reshape(b, length // block, block)
    return jnp.stack([tiles.min(-1), tiles.max(-1)], axis=1)


def iota_col(n: int, start) -> jax.Array:
    return start + lax.broadcasted_iota(jnp.int32, (n, 1), 0)


def iota_row(n: int, start) -> jax.Array:
    return start + lax.broadcasted_iota(jnp.int32, (1, n), 1)


def _dot(a, b, dims):
    # 16-bit operands are exact in one MXU pass; a higher `jax_default_matmul_precision` (fp32)
    # on them is refused by Mosaic on TPU v4 ("Bad lhs type"), so they always ask for the default.
    precision = lax.Precision.DEFAULT if a.dtype.itemsize == 2 and b.dtype.itemsize == 2 else None
    return lax.dot_general(a, b, (dims, ((), ())), precision=precision, preferred_element_type=jnp.float32)


def dot_nt(a, b):
    """a [m, k] @ b[n, k].T in float32."""
    return _dot(a, b, ((1,), (1,)))


def dot_tn(a, b):
    """a[k, m].T @ b [k, n] in float32."""
    return _dot(a, b, ((0,), (0,)))


def dot_nn(a, b):
    return _dot(a, b, ((1,), (0,)))


# ---- memory layouts ---------------------------------------------------------------------------
# Grids are (batch, head, block). GPU kernels read [B, T, H, D] in place (a transpose would cost
# several HBM passes); TPU tiles need the sequence on the sublane axis, so they see [B, H, T, D].

def _kv_head(h, kv_group: int):
    # lax.div, not //: floor division lowers through `sign`, which Mosaic resolves only on a TPU.
    return h if kv_group == 1 else lax.div(h, jnp.int32(kv_group))


def rows_spec(st: Static, block: int, head_dim: int, kv_group: int = 1) -> pl.BlockSpec:
    """One head's `block` rows at block index `idx`; with kv_group > 1, query head h reads KV head
    _kv_head(h, kv_group) (GQA without repeating K/V)."""
    if st.bhtd:
        return pl.BlockSpec((None, None, block, head_dim),
                            lambda b, h, idx: (b, _kv_head(h, kv_group), idx, 0))
    return pl.BlockSpec((None, block, None, head_dim), lambda b, h, idx: (b, idx, _kv_head(h, kv_group), 0))


def whole_spec(st: Static, length: int, head_dim: int, kv_group: int = 1) -> pl.BlockSpec:
    """One head's whole sequence (the loop inside the kernel walks it)."""
    if st.bhtd:
        return pl.BlockSpec((None, None, length, head_dim), lambda b, h, idx: (b, _kv_head(h, kv_group), 0, 0))
    return pl.BlockSpec((None, length, None, head_dim), lambda b, h, idx: (b, 0, _kv_head(h, kv_group), 0))


def group_spec(st: Static, length: int, group: int, head_dim: int) -> pl.BlockSpec:
    """The whole sequence of the `group` query heads that share KV head h (dK/dV kernel)."""
    if st.bhtd:
        return pl.BlockSpec((None, group, length, head_dim), lambda b, h, idx: (b, h, 0, 0))
    return pl.BlockSpec((None, length, group, head_dim), lambda b, h, idx: (b, 0, h, 0))


def group_rows(st: Static, ref, g, start, size: int):
    """Rows [start, start + size) of query head g from a `group_spec` block."""
    if st.bhtd:
        return ref[g, pl.ds(start, size), :]
    return ref[pl.ds(start, size), g, :]


def stat_spec(block: int, kv_group: int = 1) -> pl.BlockSpec:
    """Per-row statistics (log-sum-exp, delta) stored [B, H, T, 1]."""
    return pl.BlockSpec((None, None, block, 1), lambda b, h, idx: (b, _kv_head(h, kv_group), idx, 0))


def q_seg_spec(block: int) -> pl.BlockSpec:
    """Query segment ids [B, T, 1] as a column tile."""
    return pl.BlockSpec((None, block, 1), lambda b, h, idx: (b, idx, 0))


def kv_seg_spec(block: int) -> pl.BlockSpec:
    """Key segment ids [B, 1, S] as a row tile."""
    return pl.BlockSpec((None, 1, block), lambda b, h, idx: (b, 0, idx))


def bounds_spec(st: Static, num_blocks: int) -> pl.BlockSpec:
    """Per-block segment [min; max] of one batch row, [B, 2, n]; read as scalars."""
    kwargs = {"memory_space": pltpu.SMEM} if st.bhtd and not st.interpret else {}
    return pl.BlockSpec((None, 2, num_blocks), lambda b, h, idx: (b, 0, 0), **kwargs)


def call(st: Static, kernel, *, grid, in_specs, out_specs, out_shape, head_dim: int, name: str):
    """pallas_call with the platform's compiler parameters (explicit, so Triton is chosen on
    GPU whatever `jax_pallas_use_mosaic_gpu` says)."""
    if st.interpret:
        params = None
    elif st.bhtd:
        params = pltpu.CompilerParams(dimension_semantics=("parallel", "parallel", "parallel"),
                                      vmem_limit_bytes=96 * 1024 * 1024)
    else:
        params = pltriton.CompilerParams(num_warps=num_warps(head_dim), num_stages=st.num_stages)
    return pl.pallas_call(kernel, grid=grid, in_specs=in_specs, out_specs=out_specs,
                          out_shape=out_shape, compiler_params=params, interpret=st.interpret,
                          name=name)
