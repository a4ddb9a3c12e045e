"""The decoder: pre-norm blocks stacked along a `layers` axis and run under `lax.scan`.

Blocks are created once per layer by `nnx.vmap`, so every block parameter has a leading
`layers` dimension whatever `scan_layers` says; checkpoints and exports see one layout. The
forward splits the stack into pure state and scans over it (with the configured remat
policy), which keeps compile time independent of depth.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcoder.model.attention_ops import attention_mask
from jaxcoder.model.config import ModelConfig
from jaxcoder.model.layers import Attention, Embed, Mlp, Norm
from jaxcoder.model.rope import rope_tables
from jaxcoder.parallel import pipeline
from jaxcoder.parallel.rules import constrain

_REMAT_POLICIES = {
    "full": jax.checkpoint_policies.nothing_saveable,
    "dots": jax.checkpoint_policies.checkpoint_dots,
    "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class Block(nnx.Module):
    """x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.attn_norm = Norm(cfg, rngs=rngs)
        self.attn = Attention(cfg, rngs=rngs)
        self.mlp_norm = Norm(cfg, rngs=rngs)
        self.mlp = Mlp(cfg, rngs=rngs)

    def __call__(self, x: jax.Array, segment_ids: jax.Array, rope, positions: jax.Array | None = None) -> jax.Array:
        return self._residual(x, lambda h: (self.attn(h, segment_ids, rope, positions), None))[0]

    def decode(self, x: jax.Array, rope, cache, mask: jax.Array, start):
        """The block over new tokens with this layer's KV cache: (x, updated cache)."""
        return self._residual(x, lambda h: self.attn.decode(h, rope, cache, mask, start))

    def _residual(self, x: jax.Array, attention):
        """The block's one structure; `attention(h)` returns (output, anything to pass out)."""
        out, aux = attention(self.attn_norm(x))
        x = constrain(x + out, ("batch", "length", "embed"))
        x = x + self.mlp(self.mlp_norm(x))
        return constrain(x, ("batch", "length", "embed")), aux


CACHE_AXES = ("layers", "batch", "length", "kv_heads", "head_dim")  # the logical axes of cached K and V


def init_cache(cfg: ModelConfig, batch: int, length: int, dtype=None) -> dict:
    """An empty KV cache for `Decoder.decode`: `batch` rows of `length` slots, K and V with
    n_kv_heads heads (GQA-sized) per layer, each slot's segment id (-1 = empty; padding 0, text 1)
    and each row's next position."""
    dtype = dtype or jnp.dtype(cfg.dtype)
    shape = (cfg.n_layers, batch, length, cfg.n_kv_heads, cfg.head_dim)
    return {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype),
            "seg": jnp.full((batch, length), -1, jnp.int32), "pos": jnp.zeros((batch,), jnp.int32)}


def _stack_axes(module: nnx.Module) -> None:
    """Prepends the `layers` logical name to every parameter of a vmapped stack."""
    for _, var in nnx.iter_graph(module):
        if isinstance(var, nnx.Param):
            var.set_metadata(axes=("layers", *var.get_metadata()["axes"]))


class Decoder(nnx.Module):
    """Token ids -> float32 logits. Packed rows are described by segment ids and positions."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = Embed(cfg.vocab_size, cfg.d_model, ("vocab", "embed"), cfg, rngs=rngs)
        if cfg.position == "learned":
            self.pos_embed = Embed(cfg.max_seq_len, cfg.d_model, ("position", "embed"), cfg, rngs=rngs)

        @nnx.split_rngs(splits=cfg.n_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make_blocks(rngs: nnx.Rngs) -> Block:
            return Block(cfg, rngs=rngs)

        self.blocks = make_blocks(rngs)
        _stack_axes(self.blocks)
        self.final_norm = Norm(cfg, rngs=rngs)
        if not cfg.tie_embeddings:
            self.lm_head = nnx.Param(
                cfg.init_std * jax.random.normal(rngs.params(), (cfg.d_model, cfg.vocab_size),
                                                 jnp.dtype(cfg.param_dtype)), axes=("embed", "vocab"))

    def embed_tokens(self, tokens: jax.Array, positions: jax.Array) -> jax.Array:
        x = self.embed(tokens)
        if self.cfg.position == "learned":
            x = x + self.pos_embed(positions)
        return constrain(x, ("batch", "length", "embed"))

    def run_blocks(self, x: jax.Array, segment_ids: jax.Array, positions: jax.Array) -> jax.Array:
        cfg = self.cfg
        graphdef, stacked = nnx.split(self.blocks)
        pcfg = pipeline.active()
        if pcfg is not None:
            def layer_fn(layer_state, h, seg, pos):
                rope = rope_tables(pos, cfg.rope, cfg.head_dim) if cfg.position == "rope" else None
                return nnx.merge(graphdef, layer_state)(h, seg, rope, pos)

            # Per-layer remat inside a stage: recomputing a stage for its backward then holds one
            # layer's intermediates at a time, not a whole stage's.
            if cfg.remat != "none":
                layer_fn = jax.checkpoint(layer_fn, policy=_REMAT_POLICIES[cfg.remat])
            return pipeline.run(pcfg, stacked, x, segment_ids, positions, layer_fn)
        rope = rope_tables(positions, cfg.rope, cfg.head_dim) if cfg.position == "rope" else None

        def body(h, layer_state):
            return nnx.merge(graphdef, layer_state)(h, segment_ids, rope, positions), None

        if cfg.remat != "none":
            body = jax.checkpoint(body, policy=_REMAT_POLICIES[cfg.remat], prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            x, _ = jax.lax.scan(body, x, stacked)
        else:
            for i in range(cfg.n_layers):
                x, _ = body(x, jax.tree.map(lambda a, i=i: a[i], stacked))
        return x

    def logits(self, x: jax.Array) -> jax.Array:
        x = self.final_norm(x)
        out = self.embed.attend(x) if self.cfg.tie_embeddings else x @ self.lm_head[...].astype(x.dtype)
        return constrain(out.astype(jnp.float32), ("batch", "length", "vocab"))

    def decode(self, tokens: jax.Array, segment_ids: jax.Array, positions: jax.Array, cache: dict,
               start: int | jax.Array) -> tuple[jax.Array, dict]:
        """tokens [B, n] into cache slots start..start+n (prefill or one decoding step): the
        logits [B, n, V] and the updated cache. Empty slots carry segment -1, which no query has;
        the sliding window applies by slot distance, as in training."""
        cfg = self.cfg
        x = self.embed_tokens(tokens, positions)
        rope = rope_tables(positions, cfg.rope, cfg.head_dim) if cfg.position == "rope" else None
        cache_seg = jax.lax.dynamic_update_slice(cache["seg"], segment_ids, (0, start))
        mask = attention_mask(segment_ids, cache_seg, cfg.sliding_window, q_offset=start)
        graphdef, stacked = nnx.split(self.blocks)
        n = tokens.shape[1]

        # The stacked cache rides in the loop's carry and each layer writes back only its n new
        # slots: scanning over it as xs/ys would copy the whole cache at every decoding step
        # (on CPU that copy outweighed the attention itself).
        def layer(carry, xs):
            h, k_all, v_all = carry
            state, i = xs
            h, (k_layer, v_layer) = nnx.merge(graphdef, state).decode(h, rope, (k_all[i], v_all[i]), mask, start)
            new = [jax.lax.dynamic_slice_in_dim(c, start, n, axis=1)[None] for c in (k_layer, v_layer)]
            k_all = jax.lax.dynamic_update_slice(k_all, new[0], (i, 0, start, 0, 0))
            v_all = jax.lax.dynamic_update_slice(v_all, new[1], (i, 0, start, 0, 0))
            return (h, k_all, v_all), None

        layers = jnp.arange(cfg.n_layers)
        (x, k_new, v_new), _ = jax.lax.scan(layer, (x, cache["k"], cache["v"]), (stacked, layers))
        return self.logits(x), {"k": constrain(k_new, CACHE_AXES), "v": constrain(v_new, CACHE_AXES),
                                "seg": cache_seg, "pos": cache["pos"]}

    def __call__(self, tokens: jax.Array, *, segment_ids: jax.Array | None = None,
                 positions: jax.Array | None = None) -> jax.Array:
        """tokens [B, T] int -> logits [B, T, vocab] float32.

        segment_ids: documents packed in a row (attention never crosses a change of id);
        defaults to one document per row. positions: per-token positions that restart at each
        document; default 0..T-1.
        """
        b, t = tokens.shape
        if segment_ids is None:
            segment_ids = jnp.ones((b, t), jnp.int32)
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
        x = self.embed_tokens(tokens, positions)
        x = self.run_blocks(x, segment_ids, positions)
        return self.logits(x)
