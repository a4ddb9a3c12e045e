"""Context parallelism: a sequence sharded over the `context` mesh axis, attention as a ring.

Every token-wise part of the model (embeddings, MLPs, norms, the loss) needs nothing: activations
carry the logical `length` axis, which the rules table maps onto `context`. Attention is the one
place tokens meet. Each device keeps its query block; the K/V blocks (with their segment ids and
positions; K/V at n_kv_heads, never repeated for GQA) travel around the ring with `ppermute`, and
the partial results are merged by their log-sum-exp, as in flash attention.

Two layout choices make it work on packed batches:

* **Load balance.** Causal attention on contiguous chunks gives the last device the most work and
  the first almost none. `zigzag` permutes each row when the batch is placed so that device i
  holds chunks i and 2C-1-i of 2C: every device gets an early and a late chunk. The loss is a
  masked sum over tokens, so nothing needs the inverse permutation.
* **The mask from (segment id, position) pairs**, not from indices: within a document positions
  increase with the packed index, so "same segment and key position <= query position" is exactly
  the causal, packed mask (and the sliding window is a position difference), whatever order the
  tokens are stored in. Different documents never attend to each other; padding (segment 0)
  attends only padding, which the loss masks.

A block that no local query can see (a later chunk, another document, outside the window) is not
computed (`lax.cond`); with a sliding window no wider than `h` chunks, K/V travel only h hops each
way instead of around the whole ring.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

AXIS = "context"
Q_CHUNK = 1024  # local queries per score tile (ring_attention)


def zigzag(batch: dict, size: int) -> dict:
    """Each [B, T] field of `batch` with its columns in the load-balanced order for `size` devices:
    T split into 2*size chunks, device i's contiguous share = chunks i and 2*size-1-i."""
    if size == 1:
        return batch
    arrays = {k: np.asarray(v) for k, v in batch.items()}
    return {k: a[:, zigzag_order(a.shape[1], size)] if a.ndim == 2 else a for k, a in arrays.items()}


def zigzag_order(length: int, size: int) -> np.ndarray:
    """The column order `zigzag` applies (an index permutation of range(length))."""
    if length % (2 * size):
        raise ValueError(f"train.seq_len ({length}) must be a multiple of 2 x mesh.context ({2 * size}) for "
                         f"context parallelism's load-balanced layout")
    chunks = np.arange(length).reshape(2 * size, length // (2 * size))
    return np.concatenate([np.concatenate([chunks[i], chunks[2 * size - 1 - i]]) for i in range(size)])


def _finite(m):
    return jnp.where(jnp.isfinite(m), m, 0.0)


def _block(qg, k, v, mask, scale):
    """Attention of the local queries on one K/V block, unnormalised: (o [B,T,KV,G,D], max m and
    denominator l [B,KV,G,T]), float32; m is -inf (and o, l zero) for queries that see no key."""
    s = jnp.einsum("btkgd,bskd->bkgts", qg, k, preferred_element_type=jnp.float32) * scale
    s = jnp.where(mask[:, None, None], s, -jnp.inf)
    m = jnp.max(s, axis=-1)
    p = jnp.exp(s - _finite(m)[..., None])  # masked keys: exp(-inf) = 0, and no NaN in the gradient
    o = jnp.einsum("bkgts,bskd->btkgd", p.astype(v.dtype), v, preferred_element_type=jnp.float32)
    return o, m, p.sum(-1)


def _merge(acc, new):
    """Two partial results over disjoint key sets merged into one (the flash-attention update)."""
    (o1, m1, l1), (o2, m2, l2) = acc, new
    m = jnp.maximum(m1, m2)
    a1, a2 = jnp.exp(m1 - _finite(m)), jnp.exp(m2 - _finite(m))
    w = lambda a: jnp.moveaxis(a, -1, 1)[..., None]  # [B,KV,G,T] -> [B,T,KV,G,1]
    return o1 * w(a1) + o2 * w(a2), m, l1 * a1 + l2 * a2


def ring_attention(q, k, v, q_seg, kv_seg, q_pos, kv_pos, *, size: int, sliding_window: int | None,
                   scale: float, axis: str = AXIS, q_chunk: int | None = None):
    """Per-device body (inside `shard_map` over `axis`): the local queries [B, T, H, D] against
    every device's K/V [B, T, KV, D], by (segment id, position). Returns [B, T, H, D].

    Each K/V block is attended `q_chunk` local queries at a time, each chunk rematerialised in the
    backward pass: a device holds one [q_chunk, T] score tile, never [T, T] (at 64K tokens over 4
    devices that would be 32 GiB per layer for 32 heads)."""
    b, t, h, d = q.shape
    kv, g = k.shape[2], h // k.shape[2]
    q_chunk = q_chunk or Q_CHUNK
    n = t // q_chunk if t > q_chunk and t % q_chunk == 0 else 1
    rows = lambda x: jnp.moveaxis(x.reshape(b, n, t // n, *x.shape[2:]), 1, 0)  # [B,T,...] -> [n,B,T/n,...]
    qg, qseg, qpos = rows(q.reshape(b, t, kv, g, d)), rows(q_seg), rows(q_pos)

    def visible(qseg, qpos, kseg, kpos):
        mask = (qseg[:, :, None] == kseg[:, None, :]) & (kpos[:, None, :] <= qpos[:, :, None])
        if sliding_window is not None:
            mask &= qpos[:, :, None] - kpos[:, None, :] < sliding_window
        return mask

    def attend(acc, blk):
        k, v, kseg, kpos = blk

        # Recomputed in the backward pass: a step keeps its K/V block, not its scores.
        @jax.checkpoint
        def chunk(xs):
            acc, qg, qseg, qpos = xs
            mask = visible(qseg, qpos, kseg, kpos)  # a chunk that sees nothing here costs nothing
            return jax.lax.cond(jnp.any(mask), lambda: _merge(acc, _block(qg, k, v, mask, scale)), lambda: acc)

        return jax.lax.map(chunk, (acc, qg, qseg, qpos))

    acc = (jnp.zeros((n, b, t // n, kv, g, d), jnp.float32), jnp.full((n, b, kv, g, t // n), -jnp.inf),
           jnp.zeros((n, b, kv, g, t // n), jnp.float32))
    local = (k, v, kv_seg, kv_pos)
    forward, backward = _hops(size, sliding_window, t // 2)

    def travel(acc, blk, direction, hops):
        """Attends `blk` and the `hops` blocks after it on the ring; each block is sent on before
        it is attended, so the transfer can overlap the computation."""
        def step(carry, _):
            acc, blk = carry
            nxt = _shift(blk, axis, size, direction)
            return (attend(acc, blk), nxt), None

        (acc, blk), _ = jax.lax.scan(step, (acc, blk), length=hops)
        return attend(acc, blk)

    acc = travel(acc, local, 1, forward)
    if backward:  # the local block is attended already: start one hop back
        acc = travel(acc, _shift(local, axis, size, -1), -1, backward - 1)
    o, _, denom = acc
    o = o / jnp.maximum(jnp.moveaxis(denom, -1, 2)[..., None], jnp.finfo(jnp.float32).tiny)
    return jnp.moveaxis(o, 0, 1).reshape(b, t, h, d).astype(q.dtype)


def _shift(blk, axis: str, size: int, direction: int):
    """Every device's block sent to its neighbour `direction` (+1 / -1) steps along the ring."""
    perm = [(i, (i + direction) % size) for i in range(size)]
    return jax.tree.map(lambda x: jax.lax.ppermute(x, axis, perm), blk)


def _hops(size: int, sliding_window: int | None, chunk: int) -> tuple[int, int]:
    """How far K/V blocks travel each way: around the whole ring, or, when a window spans at most
    `reach` zigzag chunks, `reach` hops each way (zigzag puts every chunk a query can see within
    that many devices)."""
    if sliding_window is None or chunk == 0:
        return size - 1, 0
    reach = -(-(sliding_window - 1) // chunk)
    return (reach, reach) if 2 * reach < size - 1 else (size - 1, 0)


def context_size(mesh) -> int:
    """The size of the mesh's `context` axis (1 without one)."""
    return int(mesh.shape.get(AXIS, 1)) if mesh is not None else 1


def sharded_ring_attention(q, k, v, *, q_segment_ids, kv_segment_ids, mesh, specs, q_positions=None,
                           kv_positions=None, sliding_window=None, scale=None, kernel_options=None):
    """The ring under `shard_map` on `mesh`: batch, length and heads sharded as `specs` (query,
    K/V, token) say, the length over the context axis. Blocks run through XLA (`ring_attention`,
    masked by positions) or, given `kernel_options`, through our Pallas kernel
    (`context_flash.ring_flash_attention`, masked by index)."""
    size = context_size(mesh)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    qs, kvs, tok = specs
    if kernel_options is not None:
        from jaxcoder.parallel.context_flash import ring_flash_attention

        body = functools.partial(ring_flash_attention, size=size, sliding_window=sliding_window, scale=scale,
                                 kernel_options=kernel_options)
        return jax.shard_map(body, mesh=mesh, in_specs=(qs, kvs, kvs, tok, tok), out_specs=qs,
                             check_vma=False)(q, k, v, q_segment_ids, kv_segment_ids)
    body = functools.partial(ring_attention, size=size, sliding_window=sliding_window, scale=scale)
    return jax.shard_map(body, mesh=mesh, in_specs=(qs, kvs, kvs, tok, tok, tok, tok), out_specs=qs,
                         check_vma=False)(q, k, v, q_segment_ids, kv_segment_ids, q_positions, kv_positions)
