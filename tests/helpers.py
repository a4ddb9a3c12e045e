"""Test helpers shared across modules."""

from __future__ import annotations

import jax
import numpy as np


def random_params(params, seed: int = 0, scale: float = 0.05):
    """Perturbs every parameter (biases and norm scales too) so no mapping hides behind zeros/ones."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: np.asarray(x) + scale * rng.standard_normal(x.shape).astype(np.float32), params)


def tiny_train_config(data_dir: str, workdir: str, **train):
    """A tiny DeepSeek-line run on a prepared dataset (vocab 1024), for training tests."""
    from jaxcoder.config import base_config

    cfg = base_config("deepseek-coder-tiny")
    cfg.workdir = str(workdir)
    cfg.data.prepared_dir = str(data_dir)
    cfg.model.update(vocab_size=1024, dtype="float32")
    cfg.train.update(steps=5, batch_size=8, seq_len=64, lr=3e-3, warmup_steps=2, log_every=1, eval_every=1000,
                     checkpoint_every=1000, eval_batches=1)
    cfg.train.update(**train)
    return cfg


def cli_overrides(data_dir: str, workdir: str, steps: int, **extra) -> list[str]:
    """The same tiny run as command-line flags for `jaxcoder train` subprocesses."""
    flags = {"model.vocab_size": 1024, "data.prepared_dir": data_dir, "workdir": workdir, "train.steps": steps,
             "train.batch_size": 8, "train.seq_len": 64, "train.lr": 3e-3, "train.warmup_steps": 2,
             "train.log_every": 1, "train.eval_every": 1000, "train.checkpoint_every": 1000,
             "model.dtype": "float32", "tokenizer.layout": "starcoder", "data.fim.spm_rate": 0.5, **extra}
    return ["--config=configs/deepseek_coder.py:tiny", *(f"--config.{k}={v}" for k, v in flags.items())]
