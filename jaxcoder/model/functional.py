"""Pure-function view of the decoder: parameters are plain nested dicts of arrays.

Training, checkpoints and export all work on this one representation; the NNX module is
rebuilt around it inside `forward` (a cheap, trace-time operation).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from jaxcoder.model.config import ModelConfig
from jaxcoder.model.decoder import Decoder, init_cache

__all__ = ["abstract_params", "bind", "cast_params", "count_params", "decode", "forward", "init_cache",
           "init_params", "param_axes"]

Params = dict


@functools.lru_cache(maxsize=32)
def _template(cfg: ModelConfig):
    abstract = nnx.eval_shape(lambda: Decoder(cfg, rngs=nnx.Rngs(0)))
    return nnx.split(abstract)


def init_params(cfg: ModelConfig, seed: int = 0) -> Params:
    """Freshly initialised parameters (param_dtype)."""
    return nnx.to_pure_dict(nnx.state(Decoder(cfg, rngs=nnx.Rngs(params=seed))))


def abstract_params(cfg: ModelConfig) -> Params:
    """ShapeDtypeStructs of the parameters, without allocating."""
    return nnx.to_pure_dict(_template(cfg)[1])


def param_axes(cfg: ModelConfig) -> Params:
    """The logical axis names of every parameter, as a dict shaped like the parameters."""
    state = _template(cfg)[1]
    axes = jax.tree.map(lambda v: tuple(v.get_metadata()["axes"]), state,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))
    return nnx.to_pure_dict(axes) if isinstance(axes, nnx.State) else axes


def bind(cfg: ModelConfig, params: Params) -> Decoder:
    """The NNX module with `params` as its state (no copy)."""
    graphdef, template = _template(cfg)
    state = jax.tree.map(lambda v: v, template)
    nnx.replace_by_pure_dict(state, params)
    return nnx.merge(graphdef, state)


def forward(cfg: ModelConfig, params: Params, tokens: jax.Array, *, segment_ids: jax.Array | None = None,
            positions: jax.Array | None = None) -> jax.Array:
    """Logits [B, T, V] float32."""
    return bind(cfg, params)(tokens, segment_ids=segment_ids, positions=positions)


def decode(cfg: ModelConfig, params: Params, tokens: jax.Array, segment_ids: jax.Array, positions: jax.Array,
           cache: dict, start) -> tuple[jax.Array, dict]:
    """(logits [B, n, V], cache) for tokens [B, n] written at cache slots start..start+n."""
    return bind(cfg, params).decode(tokens, segment_ids, positions, cache, start)


def count_params(params: Params) -> int:
    return sum(int(x.size) for x in jax.tree.leaves(params))


def cast_params(params: Params, dtype) -> Params:
    return jax.tree.map(lambda x: x.astype(jnp.dtype(dtype)), params)
