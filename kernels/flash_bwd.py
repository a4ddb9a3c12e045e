"""Flash-attention backward (FlashAttention-2): probabilities are recomputed from the saved
log-sum-exp, never stored. Two kernels, so that neither needs atomics:

* dK/dV: one program per (batch, KV head, KV block) loops over the query heads of its group and
  the query blocks that can see it, so GQA gradients are summed in registers, not in memory;
* dQ: one program per (batch, query head, query block) loops over the KV blocks it sees.

delta = rowsum(dO * O) is computed outside (a cheap XLA reduction).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jaxcoder_kernels import flash_common as fc


def _probs_and_dscores(st, q, k, v, do, lse, delta, q_pos, kv_pos, q_seg, kv_seg):
    """P and dS for one [bq, bk] tile (float32)."""
    s = fc.dot_nt(q, k) * st.scale
    ok = fc.allowed(st, q_pos, kv_pos, q_seg, kv_seg)
    p = jnp.where(ok, jnp.exp(s - lse), 0.0)
    dp = fc.dot_nt(do, v)
    return p, p * (dp - delta)


def _dkv_kernel(q_bounds_ref, kv_bounds_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref,
                q_seg_ref, kv_seg_ref, dk_ref, dv_ref, *, st: fc.Static, group: int, num_q_blocks: int):
    bq, bk = st.blocks.block_q_dkv, st.blocks.block_kv_dkv
    j = pl.program_id(2)
    kv_start = j * bk
    k, v = k_ref[...], v_ref[...]
    kv_pos = fc.iota_row(bk, kv_start)
    kv_seg = kv_seg_ref[...]
    lo, hi = fc.q_block_range(st, kv_start, bk, bq, num_q_blocks)

    def tile(g, i, carry):
        dk, dv = carry
        start = pl.multiple_of(i * bq, bq)
        q = fc.group_rows(st, q_ref, g, start, bq)
        do = fc.group_rows(st, do_ref, g, start, bq)
        lse = lse_ref[g, pl.ds(start, bq), :]
        delta = delta_ref[g, pl.ds(start, bq), :]
        q_pos = fc.iota_col(bq, st.q_offset + start)
        p, ds = _probs_and_dscores(st, q, k, v, do, lse, delta, q_pos, kv_pos,
                                   q_seg_ref[pl.ds(start, bq), :], kv_seg)
        dv = dv + fc.dot_tn(p.astype(do.dtype), do)
        dk = dk + fc.dot_tn(ds.astype(q.dtype), q)
        return dk, dv

    def step(g, i, carry):
        return lax.cond(fc.segments_overlap(q_bounds_ref, i, kv_bounds_ref, j),
                        functools.partial(tile, g, i), lambda c: c, carry)

    def head(g, carry):
        return lax.fori_loop(lo, hi, functools.partial(step, g), carry)

    zeros = jnp.zeros(k.shape, jnp.float32)
    dk, dv = lax.fori_loop(0, group, head, (zeros, zeros))
    dk_ref[...] = (dk * st.scale).astype(dk_ref.dtype)
    dv_ref[...] = dv.astype(dv_ref.dtype)


def _dq_kernel(q_bounds_ref, kv_bounds_ref, q_ref, k_ref, v_ref, do_ref, lse_ref, delta_ref,
               q_seg_ref, kv_seg_ref, dq_ref, *, st: fc.Static, num_kv_blocks: int):
    bq, bk = st.blocks.block_q_dq, st.blocks.block_kv_dq
    i = pl.program_id(2)
    q, do, lse, delta = q_ref[...], do_ref[...], lse_ref[...], delta_ref[...]
    q_pos = fc.iota_col(bq, st.q_offset + i * bq)
    q_seg = q_seg_ref[...]

    def tile(j, dq):
        start = pl.multiple_of(j * bk, bk)
        k = k_ref[pl.ds(start, bk), :]
        v = v_ref[pl.ds(start, bk), :]
        _, ds = _probs_and_dscores(st, q, k, v, do, lse, delta, q_pos, fc.iota_row(bk, start),
                                   q_seg, kv_seg_ref[:, pl.ds(start, bk)])
        return dq + fc.dot_nn(ds.astype(k.dtype), k)

    def step(j, dq):
        return lax.cond(fc.segments_overlap(q_bounds_ref, i, kv_bounds_ref, j),
                        functools.partial(tile, j), lambda c: c, dq)

    lo, hi = fc.kv_block_range(st, i * bq, bq, bk, num_kv_blocks)
    dq = lax.fori_loop(lo, hi, step, jnp.zeros(q.shape, jnp.float32))
    dq_ref[...] = (dq * st.scale).astype(dq_ref.dtype)


def backward(st: fc.Static, q, k, v, o, lse, do, q_seg_ids, kv_seg_ids):
    """dq, dk, dv for padded inputs in the kernel layout. Segment ids are [B, T] and [B, S]."""
    batch, heads, q_len, head_dim, kv_heads, kv_len = fc.dims(st, q, k)
    delta = jnp.sum(o.astype(jnp.float32) * do.astype(jnp.float32), axis=-1)  # [B, H, T] or [B, T, H]
    delta = (delta if st.bhtd else delta.transpose(0, 2, 1))[..., None]  # stored like lse: [B, H, T, 1]
    group = heads // kv_heads
    blocks = st.blocks
    q_seg, kv_seg = q_seg_ids[:, :, None], kv_seg_ids[:, None, :]
    stats = (lse, delta)

    bq, bk = blocks.block_q_dkv, blocks.block_kv_dkv
    num_q = q_len // bq
    group_stat = pl.BlockSpec((None, group, q_len, 1), lambda b, h, idx: (b, h, 0, 0))
    dk, dv = fc.call(
        st, functools.partial(_dkv_kernel, st=st, group=group, num_q_blocks=num_q),
        grid=(batch, kv_heads, kv_len // bk), head_dim=head_dim, name="flash_attention_dkv",
        in_specs=[fc.bounds_spec(st, num_q), fc.bounds_spec(st, kv_len // bk),
                  fc.group_spec(st, q_len, group, head_dim), fc.rows_spec(st, bk, head_dim),
                  fc.rows_spec(st, bk, head_dim), fc.group_spec(st, q_len, group, head_dim),
                  group_stat, group_stat, fc.q_seg_spec(q_len), fc.kv_seg_spec(bk)],
        out_specs=[fc.rows_spec(st, bk, head_dim), fc.rows_spec(st, bk, head_dim)],
        out_shape=[jax.ShapeDtypeStruct(k.shape, k.dtype), jax.ShapeDtypeStruct(v.shape, v.dtype)],
    )(fc.segment_bounds(q_seg_ids, bq), fc.segment_bounds(kv_seg_ids, bk), q, k, v, do, *stats, q_seg, kv_seg)

    bq, bk = blocks.block_q_dq, blocks.block_kv_dq
    dq = fc.call(
        st, functools.partial(_dq_kernel, st=st, num_kv_blocks=kv_len // bk),
        grid=(batch, heads, q_len // bq), head_dim=head_dim, name="flash_attention_dq",
        in_specs=[fc.bounds_spec(st, q_len // bq), fc.bounds_spec(st, kv_len // bk),
                  fc.rows_spec(st, bq, head_dim), fc.whole_spec(st, kv_len, head_dim, group),
                  fc.whole_spec(st, kv_len, head_dim, group), fc.rows_spec(st, bq, head_dim),
                  fc.stat_spec(bq), fc.stat_spec(bq), fc.q_seg_spec(bq), fc.kv_seg_spec(kv_len)],
        out_specs=fc.rows_spec(st, bq, head_dim),
        out_shape=jax.ShapeDtypeStruct(q.shape, q.dtype),
    )(fc.segment_bounds(q_seg_ids, bq), fc.segment_bounds(kv_seg_ids, bk), q, k, v, do, *stats, q_seg, kv_seg)
    return dq, dk, dv
