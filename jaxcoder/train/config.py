"""The `train` section: steps, batch, optimizer, logging and checkpointing of a run."""

from __future__ import annotations

import dataclasses

from jaxcoder.fields import ConfigError, check, field
from jaxcoder.train.metrics import WRITERS
from jaxcoder.train.optimizer import OptimizerConfig

_OPTIMIZER = {f.name: f for f in dataclasses.fields(OptimizerConfig)}


def _optimizer(name: str):
    """The optimizer field's own default and bounds (OptimizerConfig is their one source)."""
    f = _OPTIMIZER[name]
    return dataclasses.field(default=f.default, metadata=f.metadata)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    steps: int = field(1000, ge=1)
    # A checkpoint to start from when the workdir has none: continued pretraining (e.g. of an
    # imported Hugging Face model) or a training stage after another (e.g. 4K -> 16K context). Its
    # model config must match this run's except for RoPE and execution fields (dtype, remat, ...).
    init_from: str | None = None
    # With init_from: "reset" starts a fresh optimizer state; "keep" carries the checkpoint's Adam
    # moments and step count, and this run's learning-rate schedule starts at its own step 0.
    init_optimizer: str = field("reset", choices=("reset", "keep"))
    batch_size: int = field(8, ge=1)  # the global batch, in rows
    seq_len: int = field(256, ge=1)
    lr: float = _optimizer("lr")
    min_lr_ratio: float = _optimizer("min_lr_ratio")
    warmup_steps: int = _optimizer("warmup_steps")
    schedule: str = _optimizer("schedule")
    stable_fraction: float = _optimizer("stable_fraction")  # warmup-stable-decay: fraction of steps at peak lr
    b1: float = _optimizer("b1")
    b2: float = _optimizer("b2")
    eps: float = _optimizer("eps")
    weight_decay: float = _optimizer("weight_decay")
    decay_embeddings: bool = _optimizer("decay_embeddings")
    clip_norm: float = _optimizer("clip_norm")
    z_loss: float = field(0.0, ge=0)
    log_every: int = field(10, ge=1)
    eval_every: int = field(100, ge=1)
    eval_batches: int = field(4, ge=1)
    checkpoint_every: int = field(200, ge=1)
    keep_checkpoints: int = field(3, ge=1)
    keep_every: int = field(0, ge=0)  # also keep every n-th step's checkpoint (0 = off)
    checkpoint_minutes: float = field(0.0, ge=0)  # also save when this much time passed since the last save
    # Emergency checkpoints: each host also saves its shards of the state to this host-local path
    # (local NVMe, /dev/shm) every local_checkpoint_every steps; a restart on the same hosts
    # resumes from the newest copy in either tier ("" = off).
    local_checkpoint_dir: str = ""
    local_checkpoint_every: int = field(0, ge=0)
    grad_accum: int = field(1, ge=1)  # microbatches per step (batch_size is the global batch)
    peak_tflops: float = field(0.0, ge=0)  # per device, for MFU; 0 = look the device up in a table
    max_skipped_steps: int = field(5, ge=0)  # non-finite steps in a row skipped before the run stops
    spike_factor: float = field(2.0, ge=0)  # warn when the loss exceeds this x its running median (0: off)
    spike_window: int = field(100, ge=10)  # steps in that running median
    profile_start: int = field(0, ge=0)  # first step to trace into <workdir>/profile (0: no profiling)
    profile_steps: int = field(3, ge=1)  # steps in each trace
    profile_every: int = field(0, ge=0)  # trace again every this many steps (0: once)
    # Where metrics go besides metrics.jsonl: any of tensorboard, wandb, mlflow, comma-separated
    # (wandb and mlflow: the `tracking` extra; their own environment variables choose the server).
    writers: str = "tensorboard"
    tracking_project: str = "jaxcoder"  # the W&B project / MLflow experiment

    def __post_init__(self):
        check(self, "train")
        unknown = [w for w in self.writer_names() if w not in WRITERS]
        if unknown:
            raise ConfigError(f"train.writers={self.writers!r}: unknown writer {unknown[0]!r}; "
                              f"choose from {', '.join(WRITERS)}")

        if bool(self.local_checkpoint_dir) != bool(self.local_checkpoint_every):
            raise ConfigError(f"train.local_checkpoint_dir={self.local_checkpoint_dir!r} and "
                              f"train.local_checkpoint_every={self.local_checkpoint_every} go together: set both "
                              f"(a host-local path and a step interval) or neither")

    def writer_names(self) -> tuple[str, ...]:
        return tuple(w.strip() for w in self.writers.split(",") if w.strip())

    def optimizer(self) -> OptimizerConfig:
        return OptimizerConfig(**{name: getattr(self, name) for name in _OPTIMIZER if name != "total_steps"},
                               total_steps=self.steps)
