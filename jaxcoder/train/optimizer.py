"""AdamW with the code-LLM recipe: warmup then cosine to a floor, clipping, no decay on
norms, biases and embeddings (configurable)."""

from __future__ import annotations

import dataclasses

import jax
import optax

from jaxcoder.fields import check, field


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """AdamW and its schedule; the `train` section's optimizer fields are these (train/config.py)."""

    lr: float = field(3e-4, gt=0)
    min_lr_ratio: float = field(0.1, ge=0, le=1)  # StarCoder decays to 10% of the peak
    warmup_steps: int = field(100, ge=0)
    total_steps: int = field(1000, ge=1)  # train.steps
    # wsd: warmup-stable-decay; multistep: DeepSeek-LLM's (and -Coder's) peak until 80% of the steps,
    # then sqrt(min_lr_ratio) of it until 90%, then min_lr_ratio of it
    schedule: str = field("cosine", choices=("cosine", "linear", "wsd", "multistep", "constant"))
    stable_fraction: float = field(0.8, ge=0, le=1)  # wsd: fraction of all steps held at the peak
    b1: float = field(0.9, ge=0, lt=1)
    b2: float = field(0.95, ge=0, lt=1)
    eps: float = field(1e-8, gt=0)
    weight_decay: float = field(0.1, ge=0)
    decay_embeddings: bool = False
    clip_norm: float = field(1.0, ge=0)  # global gradient norm; 0 = no clipping

    def __post_init__(self):
        check(self, "train")


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
    elif cfg.schedule == "multistep":
        step = cfg.min_lr_ratio ** 0.5
        decay = optax.piecewise_constant_schedule(cfg.lr, {int(f * cfg.total_steps) - cfg.warmup_steps: step
                                                           for f in (0.8, 0.9)})
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
        optax.clip_by_global_norm(cfg.clip_norm) if cfg.clip_norm > 0 else optax.identity(),
        optax.adamw(learning_rate(cfg), b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                    mask=lambda p: decay_mask(p, cfg.decay_embeddings)),
    )


def restart_schedule(opt_state):
    """The optimizer state with its learning-rate schedule's step count at 0 and everything else
    (Adam's moments and its own count, which its bias correction needs) kept: a new training stage
    runs its own schedule on the previous stage's moments."""
    def restart(node):
        if isinstance(node, optax.ScaleByScheduleState):
            return node._replace(count=jax.numpy.zeros_like(node.count))
        return node

    return jax.tree.map(restart, opt_state, is_leaf=lambda x: isinstance(x, optax.ScaleByScheduleState))
