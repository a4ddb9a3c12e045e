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
    schedule: str = "cosine"  # cosine | linear | constant
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.1
    decay_embeddings: bool = False
    clip_norm: float = 1.0

    def __post_init__(self):
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(f"train.schedule must be cosine, linear or constant; got {self.schedule!r}")
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
