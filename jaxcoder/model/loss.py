"""The token loss: the one definition training, held-out evaluation and FIM scoring share.

A batch is a dict of [B, T] arrays: `inputs`, `targets`, `segment_ids`, `positions` and
`loss_mask` (0 where the target is padding or belongs to another document).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxcoder.model import functional as F
from jaxcoder.model.config import ModelConfig


def token_nll(logits: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-token negative log-likelihood and log Z (both float32)."""
    logz = jax.nn.logsumexp(logits, axis=-1)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
    return logz - target_logit, logz


def loss_sums(cfg: ModelConfig, params, batch, z_loss: float = 0.0) -> dict:
    """Sums over the unmasked target tokens: `nll`, `z` (log Z squared; 0 unless z_loss) and `tokens`."""
    logits = F.forward(cfg, params, batch["inputs"], segment_ids=batch["segment_ids"],
                       positions=batch["positions"])
    mask = batch["loss_mask"].astype(jnp.float32)
    nll, logz = token_nll(logits, batch["targets"])
    z = (jnp.square(logz) * mask).sum() if z_loss else jnp.zeros((), jnp.float32)
    return {"nll": (nll * mask).sum(), "z": z, "tokens": mask.sum()}


def summed_loss(cfg: ModelConfig, params, batch):
    """(sum of masked token NLLs, number of unmasked tokens)."""
    sums = loss_sums(cfg, params, batch)
    return sums["nll"], sums["tokens"]
