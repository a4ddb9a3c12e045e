"""Shardings of the train state and the batch, and sharded initialisation.

Parameters take their shardings from their logical axes through the rules table; optimizer
moments mirror the parameters (optax.tree_map_params); scalars are replicated. Initialisation runs
under `jit` with these output shardings, so no host ever holds a full copy of the model.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxcoder.model import functional as F
from jaxcoder.model.config import ModelConfig
from jaxcoder.parallel.context import context_size, zigzag
from jaxcoder.parallel.rules import Rules, named_sharding, tree_shardings


@dataclasses.dataclass(frozen=True)
class TrainShardings:
    mesh: Mesh
    params: dict
    opt_state: object
    batch: NamedSharding
    replicated: NamedSharding


def make_shardings(mcfg: ModelConfig, optimizer: optax.GradientTransformation, mesh: Mesh, rules: Rules
                   ) -> TrainShardings:
    replicated = NamedSharding(mesh, PartitionSpec())
    params = tree_shardings(F.param_axes(mcfg), mesh, rules)
    abstract_opt = jax.eval_shape(optimizer.init, F.abstract_params(mcfg))
    opt_state = optax.tree_map_params(optimizer, lambda _, s: s, abstract_opt, params,
                                      transform_non_params=lambda _: replicated)
    batch = named_sharding(("batch", "length"), mesh, rules)
    return TrainShardings(mesh, params, opt_state, batch, replicated)


def init_state(mcfg: ModelConfig, optimizer: optax.GradientTransformation, sh: TrainShardings, seed: int):
    """Sharded parameters and optimizer state, created in place on their devices."""
    params = jax.jit(lambda: F.init_params(mcfg, seed), out_shardings=sh.params)()
    opt_state = jax.jit(optimizer.init, out_shardings=sh.opt_state)(params)
    return params, opt_state


def abstract_state(mcfg: ModelConfig, optimizer: optax.GradientTransformation, sh: TrainShardings):
    """ShapeDtypeStructs carrying the target shardings (restore targets, AOT compilation)."""
    params = jax.tree.map(lambda s, shd: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=shd),
                          F.abstract_params(mcfg), sh.params)
    opt = jax.eval_shape(optimizer.init, F.abstract_params(mcfg))
    opt = jax.tree.map(lambda s, shd: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=shd), opt, sh.opt_state)
    return params, opt


def global_batch(local: dict, sharding: NamedSharding) -> dict:
    """Assembles each process's rows into global arrays laid out by `sharding` (with context
    parallelism, each row's tokens in the load-balanced order first: `context.zigzag`)."""
    local = zigzag(local, context_size(sharding.mesh))
    if jax.process_count() == 1:
        return jax.device_put(local, sharding)
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local.items()}


def bytes_per_device(tree) -> int:
    """Largest per-device footprint of a tree of (possibly abstract) sharded arrays."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        shard = leaf.sharding.shard_shape(leaf.shape)
        total += int(np.prod(shard)) * np.dtype(leaf.dtype).itemsize
    return total
