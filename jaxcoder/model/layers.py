"""Building blocks: normalisation, MLP, attention and embeddings (Flax NNX).

Parameters are stored in `param_dtype` and cast to the compute `dtype` at use; norms, softmax
and RoPE run in float32. Each parameter carries its logical axis names as `axes` metadata.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcoder.model.attention_ops import attend, attend_block
from jaxcoder.model.config import ModelConfig
from jaxcoder.model.rope import apply_rope
from jaxcoder.parallel.context import context_size
from jaxcoder.parallel.rules import active_mesh, constrain


def _param(rngs: nnx.Rngs | None, shape, axes, dtype, std: float | None) -> nnx.Param:
    """A parameter: normal(std) when std is given, zeros for std=0, ones for std=None."""
    if std is None:
        value = jnp.ones(shape, dtype)
    elif std == 0:
        value = jnp.zeros(shape, dtype)
    else:
        value = std * jax.random.normal(rngs.params(), shape, dtype)
    return nnx.Param(value, axes=tuple(axes))


def _dtype(name: str):
    return jnp.dtype(name)


class Norm(nnx.Module):
    """RMSNorm (Llama: x * rsqrt(mean(x^2) + eps) * w) or LayerNorm with bias."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        pd = _dtype(cfg.param_dtype)
        self.kind, self.eps = cfg.norm, cfg.norm_eps
        self.scale = _param(rngs, (cfg.d_model,), ("norm",), pd, None)
        if cfg.norm == "layernorm":
            self.bias = _param(rngs, (cfg.d_model,), ("norm",), pd, 0)

    def __call__(self, x: jax.Array) -> jax.Array:
        dtype = x.dtype
        x = x.astype(jnp.float32)
        if self.kind == "rmsnorm":
            x = x * jax.lax.rsqrt(jnp.mean(x * x, axis=-1, keepdims=True) + self.eps)
            return (x.astype(dtype) * self.scale[...].astype(dtype)).astype(dtype)
        mean = jnp.mean(x, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
        x = (x - mean) * jax.lax.rsqrt(var + self.eps)
        x = x * self.scale[...].astype(jnp.float32) + self.bias[...].astype(jnp.float32)
        return x.astype(dtype)


class Mlp(nnx.Module):
    """SwiGLU (silu(x W_gate) * x W_up) W_down, or GELU-tanh (x W_in + b) W_out + b."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        pd, d, f = _dtype(cfg.param_dtype), cfg.d_model, cfg.d_ff
        out_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
        self.kind, self.dtype = cfg.mlp, _dtype(cfg.dtype)
        if cfg.mlp == "swiglu":
            self.wi_gate = _param(rngs, (d, f), ("embed", "mlp"), pd, cfg.init_std)
            self.wi_up = _param(rngs, (d, f), ("embed", "mlp"), pd, cfg.init_std)
        else:
            self.wi = _param(rngs, (d, f), ("embed", "mlp"), pd, cfg.init_std)
        self.wo = _param(rngs, (f, d), ("mlp", "embed"), pd, out_std)
        self.use_bias = cfg.mlp_bias
        if cfg.mlp_bias:
            if cfg.mlp == "swiglu":
                self.bi_gate = _param(rngs, (f,), ("mlp",), pd, 0)
                self.bi_up = _param(rngs, (f,), ("mlp",), pd, 0)
            else:
                self.bi = _param(rngs, (f,), ("mlp",), pd, 0)
            self.bo = _param(rngs, (d,), ("embed",), pd, 0)

    def __call__(self, x: jax.Array) -> jax.Array:
        c = self.dtype
        if self.kind == "swiglu":
            gate = x @ self.wi_gate[...].astype(c)
            up = x @ self.wi_up[...].astype(c)
            if self.use_bias:
                gate, up = gate + self.bi_gate[...].astype(c), up + self.bi_up[...].astype(c)
            h = jax.nn.silu(gate) * up
        else:
            h = x @ self.wi[...].astype(c)
            if self.use_bias:
                h = h + self.bi[...].astype(c)
            h = jax.nn.gelu(h, approximate=True)
        h = constrain(h, ("batch", "length", "mlp"))
        out = h @ self.wo[...].astype(c)
        if self.use_bias:
            out = out + self.bo[...].astype(c)
        return out


class Attention(nnx.Module):
    """Multi-head / grouped-query / multi-query self-attention with optional RoPE."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        pd, d, h, kv, hd = _dtype(cfg.param_dtype), cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        out_std = cfg.init_std / math.sqrt(2 * cfg.n_layers)
        self.cfg = cfg
        self.wq = _param(rngs, (d, h, hd), ("embed", "heads", "head_dim"), pd, cfg.init_std)
        self.wk = _param(rngs, (d, kv, hd), ("embed", "kv_heads", "head_dim"), pd, cfg.init_std)
        self.wv = _param(rngs, (d, kv, hd), ("embed", "kv_heads", "head_dim"), pd, cfg.init_std)
        self.wo = _param(rngs, (h, hd, d), ("heads", "head_dim", "embed"), pd, out_std)
        if cfg.attn_bias:
            self.bq = _param(rngs, (h, hd), ("heads", "head_dim"), pd, 0)
            self.bk = _param(rngs, (kv, hd), ("kv_heads", "head_dim"), pd, 0)
            self.bv = _param(rngs, (kv, hd), ("kv_heads", "head_dim"), pd, 0)
            self.bo = _param(rngs, (d,), ("embed",), pd, 0)

    def project_qkv(self, x: jax.Array, rope: tuple[jax.Array, jax.Array] | None):
        c = _dtype(self.cfg.dtype)
        q = jnp.einsum("btd,dhk->bthk", x, self.wq[...].astype(c))
        k = jnp.einsum("btd,dhk->bthk", x, self.wk[...].astype(c))
        v = jnp.einsum("btd,dhk->bthk", x, self.wv[...].astype(c))
        if self.cfg.attn_bias:
            q, k, v = q + self.bq[...].astype(c), k + self.bk[...].astype(c), v + self.bv[...].astype(c)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q = constrain(q, ("batch", "length", "heads", "head_dim"))
        k = constrain(k, ("batch", "length", "kv_heads", "head_dim"))
        v = constrain(v, ("batch", "length", "kv_heads", "head_dim"))
        return q, k, v

    def output(self, o: jax.Array) -> jax.Array:
        c = _dtype(self.cfg.dtype)
        out = jnp.einsum("bthk,hkd->btd", o, self.wo[...].astype(c))
        if self.cfg.attn_bias:
            out = out + self.bo[...].astype(c)
        return out

    def __call__(self, x: jax.Array, segment_ids: jax.Array,
                 rope: tuple[jax.Array, jax.Array] | None, positions: jax.Array | None = None) -> jax.Array:
        q, k, v = self.project_qkv(x, rope)
        o = attend(q, k, v, q_segment_ids=segment_ids, kv_segment_ids=segment_ids,
                   sliding_window=self.cfg.sliding_window, impl=self.cfg.attention_impl, positions=positions)
        return self.output(o)

    def decode(self, x: jax.Array, rope, cache: tuple[jax.Array, jax.Array], mask: jax.Array,
               start: int | jax.Array) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
        """x [B, n] at cache slots start..start+n: writes its K/V into the layer's cache
        ([B, S, KV, hd] each) and attends over the cache under `mask` [B, n, S]."""
        q, k, v = self.project_qkv(x, rope)
        k_cache, v_cache = cache
        k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), (0, start, 0, 0))
        v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), (0, start, 0, 0))
        b, n, heads, hd = q.shape
        qg = q.reshape(b, n, self.cfg.n_kv_heads, heads // self.cfg.n_kv_heads, hd)
        o = attend_block(qg, k_cache, v_cache, mask, hd ** -0.5).reshape(b, n, heads, hd).astype(q.dtype)
        return self.output(o), (k_cache, v_cache)


class Embed(nnx.Module):
    """A lookup table that can also serve as the (tied) output projection."""

    def __init__(self, num: int, dim: int, axes: tuple[str, str], cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.embedding = _param(rngs, (num, dim), axes, _dtype(cfg.param_dtype), cfg.init_std)
        self.dtype = _dtype(cfg.dtype)
        self.rows = axes[0]

    def __call__(self, ids: jax.Array) -> jax.Array:
        table = self.embedding[...]
        if context_size(active_mesh()) > 1:
            # With the sequence sharded (context parallelism) GSPMD cannot move a lookup made along
            # the table's sharded `embed` axis onto batch-and-length-sharded activations without
            # replicating them; gathering the table first (as FSDP gathers every weight) can.
            table = constrain(table.astype(self.dtype), (self.rows, None))
        return jnp.take(table, ids, axis=0).astype(self.dtype)

    def attend(self, x: jax.Array) -> jax.Array:
        """x @ table.T, the tied LM head."""
        return x @ self.embedding[...].astype(self.dtype).T
