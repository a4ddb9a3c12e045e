"""The loss and the jitted train / eval steps (pure functions of params and a batch).

A batch is a dict of [B, T] arrays: `inputs`, `targets`, `segment_ids`, `positions` and
`loss_mask` (0 where the target is padding or belongs to another document).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from jaxcoder.model import functional as F
from jaxcoder.model.config import ModelConfig


def cross_entropy(logits: jax.Array, targets: jax.Array, mask: jax.Array, z_loss: float = 0.0):
    """Mean token cross-entropy over unmasked targets; optional z-loss on log Z."""
    logz = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    nll = logz - target_logit
    if z_loss:
        nll = nll + z_loss * jnp.square(logz)
    mask = mask.astype(jnp.float32)
    denom = jnp.maximum(mask.sum(), 1.0)
    return (nll * mask).sum() / denom, denom


def loss_fn(cfg: ModelConfig, params, batch, z_loss: float = 0.0):
    logits = F.forward(cfg, params, batch["inputs"], segment_ids=batch["segment_ids"],
                       positions=batch["positions"])
    loss, tokens = cross_entropy(logits, batch["targets"], batch["loss_mask"], z_loss)
    return loss, {"tokens": tokens}


def make_train_step(cfg: ModelConfig, optimizer: optax.GradientTransformation, z_loss: float = 0.0
                    ) -> Callable:
    """(params, opt_state, batch) -> (params, opt_state, metrics)."""

    def step(params, opt_state, batch):
        (loss, aux), grads = jax.value_and_grad(lambda p: loss_fn(cfg, p, batch, z_loss), has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads), "tokens": aux["tokens"]}
        return params, opt_state, metrics

    return step


def make_eval_step(cfg: ModelConfig) -> Callable:
    """(params, batch) -> (summed nll, token count), for held-out loss."""

    def step(params, batch):
        loss, aux = loss_fn(cfg, params, batch)
        return loss * aux["tokens"], aux["tokens"]

    return step
