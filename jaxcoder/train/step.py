"""The loss and the jitted train / eval steps (pure functions of params and a batch).

A batch is a dict of [B, T] arrays: `inputs`, `targets`, `segment_ids`, `positions` and
`loss_mask` (0 where the target is padding or belongs to another document). The loss is the mean
over all unmasked target tokens of the global batch, however it is split into microbatches.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxcoder.model import functional as F
from jaxcoder.model.config import ModelConfig
from jaxcoder.parallel.pipeline import split_microbatches


def token_nll(logits: jax.Array, targets: jax.Array, z_loss: float = 0.0) -> jax.Array:
    """Per-token negative log-likelihood (float32); optional z-loss on log Z."""
    logz = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = logz - target_logit
    return nll + z_loss * jnp.square(logz) if z_loss else nll


def summed_loss(cfg: ModelConfig, params, batch, z_loss: float = 0.0):
    """(sum of masked token losses, number of unmasked tokens)."""
    logits = F.forward(cfg, params, batch["inputs"], segment_ids=batch["segment_ids"],
                       positions=batch["positions"])
    mask = batch["loss_mask"].astype(jnp.float32)
    return (token_nll(logits, batch["targets"], z_loss) * mask).sum(), mask.sum()


def make_train_step(cfg: ModelConfig, optimizer: optax.GradientTransformation, z_loss: float = 0.0,
                    grad_accum: int = 1) -> Callable:
    """(params, opt_state, batch) -> (params, opt_state, metrics). With grad_accum > 1 the batch is
    split into microbatches whose summed gradients give exactly the full-batch gradient."""
    grad_fn = jax.value_and_grad(lambda p, b: summed_loss(cfg, p, b, z_loss), has_aux=True)

    def step(params, opt_state, batch):
        if grad_accum == 1:
            (total, count), grads = grad_fn(params, batch)
        else:
            def body(carry, micro):
                (s, c), g = grad_fn(params, micro)
                acc_g, acc_s, acc_c = carry
                return (jax.tree.map(jnp.add, acc_g, g), acc_s + s, acc_c + c), None

            zeros = jax.tree.map(lambda p: jnp.zeros(p.shape, jnp.float32), params)
            micro = jax.tree.map(lambda x: split_microbatches(x, grad_accum), batch)
            (grads, total, count), _ = jax.lax.scan(body, (zeros, 0.0, 0.0), micro)
        denom = jnp.maximum(count, 1.0)
        grads = jax.tree.map(lambda g, p: (g / denom).astype(p.dtype), grads, params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": total / denom, "grad_norm": optax.tree.norm(grads), "tokens": count}
        return params, opt_state, metrics

    return step
