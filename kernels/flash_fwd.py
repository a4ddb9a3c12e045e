"""Flash-attention forward: one program per (batch, query head, query block), an online softmax
over the KV blocks the mask lets it see, and the log-sum-exp saved for the backward."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jaxcoder_kernels import flash_common as fc


def _kernel(q_bounds_ref, kv_bounds_ref, q_ref, k_ref, v_ref, q_seg_ref, kv_seg_ref, o_ref, lse_ref,
            *, st: fc.Static, num_kv_blocks: int):
    bq, bk = st.blocks.block_q, st.blocks.block_kv
    i = pl.program_id(2)
    q = q_ref[...]
    q_pos = fc.iota_col(bq, st.q_offset + i * bq)
    q_seg = q_seg_ref[...]
    head_dim = q.shape[-1]

    def tile(j, carry):
        m, row_sum, acc = carry
        start = pl.multiple_of(j * bk, bk)
        k = k_ref[pl.ds(start, bk), :]
        v = v_ref[pl.ds(start, bk), :]
        s = fc.dot_nt(q, k) * st.scale
        ok = fc.allowed(st, q_pos, fc.iota_row(bk, start), q_seg, kv_seg_ref[:, pl.ds(start, bk)])
        s = jnp.where(ok, s, -jnp.inf)
        m_new = jnp.maximum(m, jnp.max(s, axis=1, keepdims=True))
        p = jnp.exp(s - m_new)
        alpha = jnp.exp(m - m_new)
        row_sum = alpha * row_sum + jnp.sum(p, axis=1, keepdims=True)
        acc = alpha * acc + fc.dot_nn(p.astype(v.dtype), v)
        return m_new, row_sum, acc

    def step(j, carry):
        return lax.cond(fc.segments_overlap(q_bounds_ref, i, kv_bounds_ref, j),
                        functools.partial(tile, j), lambda c: c, carry)

    lo, hi = fc.kv_block_range(st, i * bq, bq, bk, num_kv_blocks)
    init = (jnp.full((bq, 1), fc.M_INIT, jnp.float32), jnp.zeros((bq, 1), jnp.float32),
            jnp.zeros((bq, head_dim), jnp.float32))
    m, row_sum, acc = lax.fori_loop(lo, hi, step, init)
    # A row that sees no key at all (only possible with foreign segment ids) outputs zeros.
    l_safe = jnp.where(row_sum == 0.0, 1.0, row_sum)
    o_ref[...] = (acc / l_safe).astype(o_ref.dtype)
    lse_ref[...] = m + jnp.log(l_safe)


def forward(st: fc.Static, q, k, v, q_seg_ids, kv_seg_ids):
    """q [B, T, H, D] (or [B, H, T, D] on TPU), k/v with KV heads, padded to whole blocks;
    segment ids [B, T] and [B, S]. Returns (out, lse [B, H, T, 1] float32)."""
    batch, heads, q_len, head_dim, kv_heads, kv_len = fc.dims(st, q, k)
    bq, bk = st.blocks.block_q, st.blocks.block_kv
    group = heads // kv_heads
    num_q, num_kv = q_len // bq, kv_len // bk
    kernel = functools.partial(_kernel, st=st, num_kv_blocks=num_kv)
    return fc.call(
        st, kernel, grid=(batch, heads, num_q), head_dim=head_dim, name="flash_attention_fwd",
        in_specs=[fc.bounds_spec(st, num_q), fc.bounds_spec(st, num_kv),
                  fc.rows_spec(st, bq, head_dim), fc.whole_spec(st, kv_len, head_dim, group),
                  fc.whole_spec(st, kv_len, head_dim, group), fc.q_seg_spec(bq),
                  fc.kv_seg_spec(kv_len)],
        out_specs=[fc.rows_spec(st, bq, head_dim), fc.stat_spec(bq)],
        out_shape=[jax.ShapeDtypeStruct(q.shape, q.dtype),
                   jax.ShapeDtypeStruct((batch, heads, q_len, 1), jnp.float32)],
    )(fc.segment_bounds(q_seg_ids, bq), fc.segment_bounds(kv_seg_ids, bk), q, k, v,
      q_seg_ids[:, :, None], kv_seg_ids[:, None, :])
