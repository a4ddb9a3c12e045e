"""jaxcoder train: train (or resume) a model from a run config."""

from __future__ import annotations

from jaxcoder.commands import common
from jaxcoder.train.loop import train


def main(argv):
    del argv
    summary = train(common.require_config())
    hist = summary["history"]
    if hist:
        print(f"done: step {summary['steps']}, loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}; "
              f"checkpoints in {summary['checkpoint_dir']}")
