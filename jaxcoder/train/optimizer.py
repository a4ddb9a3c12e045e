"""AdamW with the code-LLM recipe: warmup then cosine to a floor, clipping, no decay on
norms, biases and embeddings (configurable)."""

from __future__ import annotations

import dataclasses

import jax
import optax


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    lr: float = 3e-4
    min_lr_ratio: float = 0.1  # StarCoder decays to 10% of the peak
    warmup_steps: int = 2000
    total_steps: int = 100_000
    schedule: str = "cosine"  # cosine | linear | wsd (warmup-stable-decay) | constant
    stable_fraction: float = 0.8  # wsd: fraction of all steps held at the peak
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    decay_embeddings: bool = False
    clip_norm: float = 1.0

    def __post_init__(self):
        if self.schedule not in ("cosine", "linear", "wsd", "constant"):
            raise ValueError(f"train.schedule must be cosine, linear, wsd or constant; got {self.schedule!r}")
        if not 0.0 <= self.stable_fraction <= 1.0:
            raise ValueError(f"train.stable_fraction must be in [0, 1], got {self.stable_fraction}")
        if self.warmup_steps < 0 or self.total_steps <= 0:
            raise ValueError(f"train.warmup_steps ({self.warmup_steps}) must be >= 0 and train.total_steps "
                             f"({self.total_steps}) > 0")


def learning_rate(cfg: OptimizerConfig) -> optax.Schedule:
    floor = cfg.lr * cfg.min_lr_ratio
    decay_steps = max(cfg.total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "cosine":
        decay = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.min_lr_ratio)
    elif cfg.schedule == "linear":
        decay = optax.linear_schedule(cfg.lr, floor, decay_steps)
    elif cfg.schedule == "wsd":
        stable = min(int(cfg.total_steps * cfg.stable_fraction), decay_steps)
        decay = optax.join_schedules(
            [optax.constant_schedule(cfg.lr), optax.linear_schedule(cfg.lr, floor, max(decay_steps - stable, 1))],
            [stable])
    else:
        decay = optax.constant_schedule(cfg.lr)
    warmup = optax.linear_schedule(0.0, cfg.lr, max(cfg.warmup_steps, 1))
    return optax.join_schedules([warmup, decay], [cfg.warmup_steps])


def decay_mask(params, decay_embeddings: bool = False):
    """True for matrices that get weight decay: not 1-D tensors (norms, biases), and not the
    embedding tables unless asked."""

    def keep(path, x):
        names = {getattr(k, "key", None) for k in path}
        if x.ndim <= 1 or (names & {"bq", "bk", "bv", "bo", "bi", "bi_gate", "bi_up", "scale", "bias"}):
            return False
        return decay_embeddings or "embedding" not in names

    return jax.tree_util.tree_map_with_path(keep, params)


def make_optimizer(cfg: OptimizerConfig) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(learning_rate(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                    mask=lambda p: decay_mask(p, cfg.decay_embeddings)),
    )
