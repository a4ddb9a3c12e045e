"""The train step (a pure function of params, optimizer state and a batch); the loss is model/loss.py.

A batch is a dict of [B, T] arrays: `inputs`, `targets`, `segment_ids`, `positions` and
`loss_mask` (0 where the target is padding or belongs to another document). The loss is the mean
over all unmasked target tokens of the global batch, however it is split into microbatches; the
optional z-loss (PaLM) is added to the objective but logged apart from the NLL.

A step whose loss or gradient norm is not finite changes nothing: parameters and optimizer state
(its step count included) stay as they were, and `metrics["skipped"]` is 1; the loop decides how
many such steps in a row a run survives. (Not `optax.apply_if_finite`: it looks at the gradients
only, applies the non-finite update once its limit is reached, and changes the optimizer state's
structure, so existing checkpoints would no longer resume.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxcoder.model.config import ModelConfig
from jaxcoder.model.loss import loss_sums
from jaxcoder.parallel.pipeline import split_microbatches


def make_train_step(cfg: ModelConfig, optimizer: optax.GradientTransformation, z_loss: float = 0.0,
                    grad_accum: int = 1) -> Callable:
    """(params, opt_state, batch) -> (params, opt_state, metrics). With grad_accum > 1 the batch is
    split into microbatches whose summed gradients give exactly the full-batch gradient."""
    def objective(p, b):
        sums = loss_sums(cfg, p, b, z_loss)
        return (sums["nll"] + z_loss * sums["z"] if z_loss else sums["nll"]), sums

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(params, opt_state, batch):
        with jax.named_scope("forward_backward"):
            sums, grads = gradients(params, batch)
        with jax.named_scope("optimizer"):
            return update(params, opt_state, sums, grads)

    def gradients(params, batch):
        if grad_accum == 1:
            (_, sums), grads = grad_fn(params, batch)
        else:
            def body(carry, micro):
                (_, s), g = grad_fn(params, micro)
                acc_g, acc_s = carry
                return (jax.tree.map(jnp.add, acc_g, g), jax.tree.map(jnp.add, acc_s, s)), None

            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
            micro = jax.tree.map(lambda x: split_microbatches(x, grad_accum), batch)
            init = {k: jnp.zeros((), jnp.float32) for k in ("nll", "z", "tokens")}
            (grads, sums), _ = jax.lax.scan(body, (zeros, init), micro)
        return sums, grads

    def update(params, opt_state, sums, grads):
        denom = jnp.maximum(sums["tokens"], 1.0)
        grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), grads, params)
        updates, new_opt_state = optimizer.update(grads, opt_state, params)
        new_params = optax.apply_updates(params, updates)
        # The logged loss is the NLL, comparable with the held-out loss; the z-loss term separately.
        metrics = {"loss": sums["nll"] / denom, "grad_norm": optax.tree.norm(grads), "tokens": sums["tokens"]}
        if z_loss:
            metrics["z_loss"] = z_loss * sums["z"] / denom
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(metrics["grad_norm"])
        keep = functools.partial(jax.tree.map, lambda new, old: jnp.where(finite, new, old))
        metrics["skipped"] = 1.0 - finite.astype(jnp.float32)
        return keep(new_params, params), keep(new_opt_state, opt_state), metrics

    return step
