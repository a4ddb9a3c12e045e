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
from jaxcoder_kernels.splash import splash_problem

from jaxcoder.parallel.context import context_size, sharded_ring_attention
from jaxcoder.parallel.rules import active_mesh, active_spec, target_device, target_platform

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


def _attention_specs():
    """The active PartitionSpecs of queries [B, T, H, D], K/V [B, S, KV, D] and per-token ids [B, T]."""
    return (active_spec(("batch", "length", "heads", "head_dim")), active_spec(("batch", "length", "kv_heads",
            "head_dim")), active_spec(("batch", "length")))


def _sharded(fn: AttentionFn) -> AttentionFn:
    """Runs a kernel per device under the active mesh.

    A Pallas or cuDNN custom call is opaque to GSPMD, which would gather its inputs onto every
    device; inside `shard_map` each device instead attends its own batch rows and heads (the
    logical rules decide which mesh axes those are), which needs no communication at all.
    """
    def sharded(q, k, v, *, q_segment_ids, kv_segment_ids, **kwargs):
        mesh = active_mesh()
        if mesh is None or mesh.size == 1:
            return fn(q, k, v, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids, **kwargs)
        qs, kvs, seg = _attention_specs()
        if (qs[2] is None) != (kvs[2] is None):
            # Sharding query heads but not KV heads (or the reverse) would break the GQA grouping.
            raise ValueError(f"attention heads sharded as {qs[2]} but KV heads as {kvs[2]}; "
                             "the mesh rules must shard both or neither")
        body = functools.partial(fn, **kwargs)
        return jax.shard_map(
            lambda q, k, v, qs_, ks_: body(q, k, v, q_segment_ids=qs_, kv_segment_ids=ks_),
            mesh=mesh, in_specs=(qs, kvs, kvs, seg, seg), out_specs=qs, check_vma=False,
        )(q, k, v, q_segment_ids, kv_segment_ids)
    return sharded


def pallas_attention(q, k, v, *, q_segment_ids, kv_segment_ids, sliding_window=None, scale=None):
    """Our Pallas flash-attention kernel (`kernels/`) for the target platform (a TPU topology's
    when compiling ahead of time); on CPU it runs in the interpreter."""
    from jaxcoder_kernels.flash_attention import flash_attention  # kernels import this module's registry

    return flash_attention(q, k, v, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids,
                           sliding_window=sliding_window, scale=scale, **kernel_target())


def kernel_target() -> dict:
    """Our kernel's lowering for the target (a TPU topology's when compiling ahead of time):
    platform and device kind, or the interpreter on CPU."""
    platform = target_platform()
    target = {"platform": platform, "interpret": False} if platform in ("gpu", "tpu") else {}
    return {"device_kind": target_device().device_kind, **target}


def splash_attention(q, k, v, *, q_segment_ids, kv_segment_ids, sliding_window=None, scale=None):
    """JAX's TPU splash-attention kernel (`kernels/splash.py`); interpreted off TPU."""
    from jaxcoder_kernels.splash import splash_attention as splash

    return splash(q, k, v, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids,
                  sliding_window=sliding_window, scale=scale, interpret=target_platform() != "tpu")


CUDNN_DTYPES = ("bfloat16", "float16")


def cudnn_problem(q: jax.Array, platform: str | None = None) -> str | None:
    """Why cuDNN flash attention cannot compute this case, or None when it can."""
    platform = platform or jax.default_backend()
    if platform not in ("gpu", "cuda"):
        return f"cuDNN attention needs a CUDA GPU (the backend is {platform})"
    if q.dtype.name not in CUDNN_DTYPES:
        return f"cuDNN flash attention takes {'/'.join(CUDNN_DTYPES)}, not {q.dtype.name} (model.dtype)"
    head_dim = q.shape[-1]
    if head_dim % 8 or head_dim > 256:
        return f"cuDNN flash attention needs head_dim a multiple of 8 and <= 256; got {head_dim}"
    return None


def cudnn_attention(q, k, v, *, q_segment_ids=None, kv_segment_ids=None, sliding_window=None,
                    scale=None, implementation: str = "cudnn"):
    """cuDNN's fused attention through `jax.nn.dot_product_attention`.

    It has no segment-id argument, so packed documents become a dense [B, 1, T, S] mask
    (correct, but O(T*S) memory per row and slower than the kernel: `auto` sends packed batches
    to Pallas). `implementation="xla"` runs the same call through XLA (used to test the
    argument mapping on CPU).
    """
    if implementation == "cudnn":
        problem = cudnn_problem(q)
        if problem:
            raise ValueError(f"model.attention_impl='cudnn': {problem}")
    mask = None
    if q_segment_ids is not None:
        mask = (q_segment_ids[:, :, None] == kv_segment_ids[:, None, :])[:, None]
    window = None if sliding_window is None else (sliding_window - 1, 0)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, scale=scale, is_causal=True,
                                        local_window_size=window, implementation=implementation)


register_attention("pallas", _sharded(pallas_attention))
register_attention("splash", _sharded(splash_attention))
register_attention("cudnn", _sharded(cudnn_attention))


def resolve_impl(impl: str, q: jax.Array | None = None, *, packed: bool = True,
                 platform: str | None = None, k_len: int | None = None) -> str:
    """Maps `auto` to a concrete implementation for the platform and the case.

    The platform is the target's (`rules.target_platform`: a TPU topology's when compiling ahead
    of time). CPU: XLA (the kernels only run interpreted there). GPU: cuDNN when the batch is not
    packed and cuDNN takes the dtype/head size, else our Pallas kernel (segment ids and windows
    without a dense mask). TPU: splash attention, JAX's production TPU kernel, for whole
    sequences (XLA when decoding); ours keeps whole rows in VMEM, which bounds its length per
    TPU generation (README, attention table).
    """
    if impl != "auto":
        return impl
    platform = platform or target_platform()
    if platform in ("gpu", "cuda", "rocm"):
        if not packed and q is not None and cudnn_problem(q, "gpu") is None:
            return "cudnn"
        return "pallas"
    if platform == "tpu" and (q is None or k_len is None or splash_problem(q.shape[1], k_len) is None):
        return "splash"
    return "xla"


def attend(q: jax.Array, k: jax.Array, v: jax.Array, *, q_segment_ids: jax.Array | None,
           kv_segment_ids: jax.Array | None, sliding_window: int | None, impl: str = "auto",
           scale: float | None = None, positions: jax.Array | None = None) -> jax.Array:
    """Dispatches to the selected attention implementation (segment ids None: one document).

    Under a mesh whose `context` axis shards the sequence, attention runs as a ring over it
    (`parallel/context.py`): with XLA blocks masked by segment ids and `positions` (the tokens'
    positions within their documents: the rows are in the load-balanced order), with our kernel's
    blocks (`ring_blocks`) by segment ids and each chunk's place in the row."""
    mesh = active_mesh()
    name = resolve_impl(impl, q, packed=q_segment_ids is not None, k_len=k.shape[1])
    if context_size(mesh) > 1 and "context" in jax.tree.leaves(tuple(active_spec(("length",)))):
        return _context_parallel(q, k, v, q_segment_ids, kv_segment_ids, positions, sliding_window, scale, mesh,
                                 kernel=ring_blocks(name) == "pallas")
    fn = _REGISTRY.get(name)
    if fn is None:
        raise ValueError(
            f"model.attention_impl={impl!r} is not available here (available: {', '.join(sorted(_REGISTRY))})")
    if q_segment_ids is None and name != "cudnn":
        q_segment_ids = jnp.zeros(q.shape[:2], jnp.int32)
        kv_segment_ids = jnp.zeros(k.shape[:2], jnp.int32)
    return fn(q, k, v, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids,
              sliding_window=sliding_window, scale=scale)


def ring_blocks(impl: str) -> str:
    """What computes a context-parallel ring's blocks for a resolved `model.attention_impl`: XLA,
    or our Pallas kernel for every kernel implementation (splash and cuDNN return no log-sum-exp
    for a ring to merge by, and their backward passes cannot take the ring's)."""
    return "xla" if impl == "xla" else "pallas"


def _context_parallel(q, k, v, q_segment_ids, kv_segment_ids, positions, sliding_window, scale, mesh, kernel):
    if q_segment_ids is None:
        q_segment_ids = kv_segment_ids = jnp.ones(q.shape[:2], jnp.int32)
    if positions is None and not kernel:  # the kernel's blocks mask by index, XLA's by position
        raise ValueError("context parallelism needs the tokens' positions (the mask is built from them)")
    return sharded_ring_attention(q, k, v, q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids,
                                  q_positions=positions, kv_positions=positions, mesh=mesh, specs=_attention_specs(),
                                  sliding_window=sliding_window, scale=scale,
                                  kernel_options=kernel_target() if kernel else None)
