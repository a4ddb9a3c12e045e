"""Ring attention whose blocks run through our Pallas flash kernel (`kernels/`), for
`model.attention_impl` pallas / splash / auto on GPU and TPU with context parallelism.

The ring is the one `context.py` describes (zigzag layout, K/V at n_kv_heads travelling by
`ppermute`, windowed rings travelling only as far as the window). What changes is the unit of
work: the kernel masks by index, not by position, so each device attends chunk against chunk.
A device holds zigzag chunks i and 2C-1-i; a query chunk a meets a key chunk b as

* b > a: nothing (later tokens),
* b = a: the causal kernel,
* b < a: the kernel with the query chunk placed (a - b) chunks after the keys (`q_offset`), which
  makes every key visible and puts the sliding window exactly where the packed row has it.

On TPU our kernel keeps whole rows in VMEM, which bounds its length per generation (a v5p takes
4K tokens of a GQA-4 head of 128); each chunk is then cut into equal pieces that fit, and pieces
meet pieces the same way.

Within a packed row a document's positions rise with its index, so this is the same mask as
(segment id, position): segment ids keep documents apart, as in the single-device kernel.

Partial results merge by the log-sum-exp the forward kernel returns; the backward pass is a
custom VJP in which each chunk pair runs the kernel's backward against the *final* output and
log-sum-exp (FlashAttention-2's recomputation), and dK/dV travel around the ring with their K/V
block and are sent home at the end, so a device keeps only its own K/V between the passes.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from jaxcoder.parallel.context import AXIS, _finite, _hops, _shift


@dataclasses.dataclass(frozen=True)
class RingStatic:
    """Trace-time facts of one ring (hashable: a custom_vjp nondiff argument)."""

    kernel: object  # the kernel's Static for a causal pair of pieces (q_offset 0)
    size: int       # devices on the context axis
    piece: int      # tokens per piece (unpadded); a zigzag chunk is `pieces` of them
    pieces: int
    depth: int      # piece distances computed with their own offset; farther ones reuse the last (no window) or skip
    legs: tuple     # ((direction, first displacement, blocks), ...) K/V travel
    axis: str = AXIS

    def variants(self):
        """The kernel Static for piece distance 0 (causal), 1, ..., depth."""
        return [dataclasses.replace(self.kernel, q_offset=d * self.piece) for d in range(self.depth + 1)]

    def index(self, device, i: int):
        """Where in the row the i-th local piece of `device` sits (zigzag: its chunks are
        `device` and 2 * size - 1 - device)."""
        half, p = i // self.pieces, i % self.pieces
        chunk = jnp.where(half == 0, device, 2 * self.size - 1 - device)
        return chunk * self.pieces + p


def _branch(rs: RingStatic, distance):
    """lax.switch index for a (query piece - key piece) distance: 0 skips, 1 + d runs variant d."""
    windowed = rs.kernel.window is not None
    skip = (distance < 0) | (distance > rs.depth) if windowed else distance < 0
    return jnp.where(skip, 0, jnp.minimum(distance, rs.depth) + 1)


def _to_rows(rs: RingStatic, stat):
    """[B, H, T, 1] per-row statistics broadcast against an output in the kernel layout."""
    return stat if rs.kernel.bhtd else stat.transpose(0, 2, 1, 3)


def _merge(rs: RingStatic, acc, new):
    """Two normalised partial results (out, lse) over disjoint keys merged into one."""
    (o1, l1), (o2, l2) = acc, new
    m = _finite(jnp.maximum(l1, l2))
    w1, w2 = jnp.exp(l1 - m), jnp.exp(l2 - m)
    total = w1 + w2
    safe = jnp.maximum(total, jnp.finfo(jnp.float32).tiny)
    out = (o1 * _to_rows(rs, w1 / safe) + o2.astype(jnp.float32) * _to_rows(rs, w2 / safe))
    return out, m + jnp.log(total)


def _over_pairs(rs: RingStatic, src, body, state):
    """state = body(state, a, b, switch index) for each of this device's pieces a against each of
    `src`'s pieces b: a loop, so the program does not grow with the number of pieces."""
    me = jax.lax.axis_index(rs.axis)
    n = 2 * rs.pieces

    def step(i, state):
        a, b = i // n, i % n
        return body(state, a, b, _branch(rs, rs.index(me, a) - rs.index(src, b)))

    return jax.lax.fori_loop(0, n * n, step, state)


def _walk(rs: RingStatic, local, visit, state):
    """state = visit(state, block, source device, direction, last) for every K/V block the ring
    brings here, leg by leg (`last`: the leg's final block); each block is sent on before it is
    visited, so the transfer can overlap the work."""
    me = jax.lax.axis_index(rs.axis)
    for direction, first, count in rs.legs:
        blk = _shift(local, rs.axis, rs.size, direction) if first else local

        def step(carry, s, direction=direction, first=first):
            state, blk = carry
            nxt = _shift(blk, rs.axis, rs.size, direction)
            state = visit(state, blk, (me - direction * (first + s)) % rs.size, direction, last=False)
            return (state, nxt), None

        (state, blk), _ = jax.lax.scan(step, (state, blk), jnp.arange(count - 1))
        state = visit(state, blk, (me - direction * (first + count - 1)) % rs.size, direction, last=True)
    return state


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def _ring(rs: RingStatic, q2, k2, v2, qseg2, kseg2):
    return _ring_fwd(rs, q2, k2, v2, qseg2, kseg2)[0]


def _ring_fwd(rs: RingStatic, q2, k2, v2, qseg2, kseg2):
    from jaxcoder_kernels import flash_fwd

    def skip(q, k, v, qs, ks):
        b, h = qs.shape[0], q.shape[1] if rs.kernel.bhtd else q.shape[2]
        return jnp.zeros_like(q), jnp.full((b, h, qs.shape[1], 1), -jnp.inf, jnp.float32)

    branches = [skip] + [functools.partial(flash_fwd.forward, st) for st in rs.variants()]

    def visit(acc, blk, src, direction, last):
        k_, v_, ks_ = blk

        def pair(acc, a, b, idx):
            outs, lses = acc
            new = jax.lax.switch(idx, branches, q2[a], k_[b], v_[b], qseg2[a], ks_[b])
            o, lse = _merge(rs, (outs[a], lses[a]), new)
            return outs.at[a].set(o), lses.at[a].set(lse)

        return _over_pairs(rs, src, pair, acc)

    b, h = q2.shape[1], q2.shape[2] if rs.kernel.bhtd else q2.shape[3]
    acc = (jnp.zeros(q2.shape, jnp.float32), jnp.full((q2.shape[0], b, h, qseg2.shape[2], 1), -jnp.inf, jnp.float32))
    out, lse = _walk(rs, (k2, v2, kseg2), visit, acc)
    out = out.astype(q2.dtype)
    return out, (q2, k2, v2, qseg2, kseg2, out, lse)


def _ring_bwd(rs: RingStatic, res, dout):
    from jaxcoder_kernels import flash_bwd

    q2, k2, v2, qseg2, kseg2, out, lse = res

    def skip(q, k, v, o, lse, do, qs, ks):
        return jnp.zeros_like(q), jnp.zeros_like(k), jnp.zeros_like(v)

    branches = [skip] + [functools.partial(flash_bwd.backward, st) for st in rs.variants()]
    zeros = lambda x: jnp.zeros(x.shape, jnp.float32)

    def visit(state, blk, src, direction, last):
        k_, v_, ks_ = blk

        def pair(grads, a, b, idx):
            dq, dk, dv = grads
            g = jax.lax.switch(idx, branches, q2[a], k_[b], v_[b], out[a], lse[a], dout[a], qseg2[a], ks_[b])
            g = [x.astype(jnp.float32) for x in g]
            return dq.at[a].add(g[0]), dk.at[b].add(g[1]), dv.at[b].add(g[2])

        dq, dk, dv = _over_pairs(rs, src, pair, (state[0], *state[1]))
        travelling = (dk, dv)
        if not last:  # this block's dK/dV go on with it
            travelling = _shift(travelling, rs.axis, rs.size, direction)
        return dq, travelling

    dq = zeros(q2)
    dk = dv = zeros(k2)
    for leg in rs.legs:  # each leg's dK/dV travel with its blocks, then go home in one send
        direction, first, count = leg
        one = dataclasses.replace(rs, legs=(leg,))
        dq, (dk_leg, dv_leg) = _walk(one, (k2, v2, kseg2), visit, (dq, (zeros(k2), zeros(v2))))
        home = _shift((dk_leg, dv_leg), rs.axis, rs.size, -direction * (first + count - 1))
        dk, dv = dk + home[0], dv + home[1]
    no_grad = np.zeros(qseg2.shape, jax.dtypes.float0), np.zeros(kseg2.shape, jax.dtypes.float0)
    return dq.astype(q2.dtype), dk.astype(k2.dtype), dv.astype(v2.dtype), *no_grad


_ring.defvjp(_ring_fwd, _ring_bwd)


MAX_PIECE: int | None = None  # an upper bound on the piece length (tests cut chunks with it)


def ring_flash_attention(q, k, v, q_seg, kv_seg, *, size: int, sliding_window: int | None, scale: float,
                         kernel_options: dict, axis: str = AXIS):
    """Per-device body (inside `shard_map` over `axis`): the local queries [B, T, H, D] (two
    zigzag chunks) against every device's K/V [B, T, KV, D]. Returns [B, T, H, D].
    `kernel_options` go to `flash_attention.prepare` (platform, interpret, block sizes, ...)."""
    from jaxcoder_kernels.flash_attention import prepare, restore

    t, head_dim = q.shape[1], q.shape[3]
    c = t // 2
    piece = piece_length(c, q, k, kernel_options)
    prepared = [prepare(q[:, s], k[:, s], v[:, s], q_segment_ids=q_seg[:, s], kv_segment_ids=kv_seg[:, s],
                        q_offset=0, sliding_window=sliding_window, scale=scale, **kernel_options)
                for s in (slice(i, i + piece) for i in range(0, t, piece))]
    st = prepared[0][0]
    q2, k2, v2, qseg2, kseg2 = (jnp.stack([p[1][i] for p in prepared]) for i in range(5))
    forward, backward = _hops(size, sliding_window, c)
    legs = ((1, 0, forward + 1),) + (((-1, 1, backward),) if backward else ())
    pieces = c // piece
    # Without a window every earlier piece is wholly visible (one offset serves them all); with
    # one, pieces farther than it reaches are skipped.
    depth = 1 if sliding_window is None else min(-(-(sliding_window - 1) // piece), 2 * size * pieces - 1)
    rs = RingStatic(kernel=st, size=size, piece=piece, pieces=pieces, depth=depth, legs=legs, axis=axis)
    out = _ring(rs, q2, k2, v2, qseg2, kseg2)
    return jnp.concatenate([restore(st, out[i], piece, head_dim) for i in range(len(prepared))], axis=1)


def piece_length(chunk: int, q, k, kernel_options: dict) -> int:
    """The longest divisor of `chunk` our kernel runs whole on the target: the chunk itself on GPU
    and in the interpreter; on TPU the longest whose rows fit in VMEM (`check_blocks`)."""
    from jaxcoder_kernels.block_sizes import BlockShapeError, check_blocks, default_blocks

    limit = min(chunk, MAX_PIECE or chunk)
    candidates = [p for p in range(limit, 0, -1) if chunk % p == 0]
    if kernel_options.get("platform") != "tpu" or kernel_options.get("interpret", True):
        return candidates[0]
    blocks = kernel_options.get("block_sizes") or default_blocks("tpu")
    for p in candidates:
        try:
            check_blocks(blocks, "tpu", head_dim=q.shape[3], itemsize=q.dtype.itemsize,
                         kv_len=-(-p // blocks.kv_multiple) * blocks.kv_multiple,
                         q_len=-(-p // blocks.q_multiple) * blocks.q_multiple, group=q.shape[2] // k.shape[2],
                         device_kind=kernel_options.get("device_kind"))
            return p
        except BlockShapeError:
            continue
    return candidates[0]  # nothing fits: `prepare` names the limit
