"""Long-context training stages: a run continues another's checkpoint with a new RoPE, sequence
length, data mixture and schedule, keeping or resetting the optimizer state; shape changes are
refused by field; the papers' recipes resolve."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import tiny_train_config

from jaxcoder.config import resolve


def _counts(checkpoint: Path, step: int) -> list[int]:
    """The integer step counters of a saved optimizer state (Adam's and the schedule's)."""
    import jax
    import orbax.checkpoint as ocp

    state = ocp.StandardCheckpointer().restore(checkpoint / str(step) / "opt_state")
    return sorted(int(x) for x in jax.tree.leaves(state) if np.ndim(x) == 0 and np.issubdtype(np.asarray(x).dtype,
                                                                                                np.integer))


@pytest.fixture(scope="module")
def base_stage(prepared_data, tmp_path_factory):
    """DeepSeek's stage 1 at smoke size: RoPE theta 1e4 without scaling, 64-token rows, 3 steps."""
    from jaxcoder.train.loop import train

    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path_factory.mktemp("base"), steps=3, seq_len=64)
    cfg.model.rope.update(theta=1e4, scaling="none", factor=1.0)
    cfg.model.max_seq_len = 64
    train(resolve(cfg))
    return cfg


def _long_stage(base, workdir, **train):
    cfg = tiny_train_config(base.data.prepared_dir, workdir, steps=2, seq_len=128, warmup_steps=0, schedule="constant",
                            init_from=f"{base.workdir}/checkpoints", **train)
    cfg.model.rope.update(theta=1e5, scaling="linear", factor=4.0)
    cfg.model.max_seq_len = 128
    cfg.data.mixture = (("python", 0.5), ("restructuredtext", 0.5))
    return cfg


def test_a_4k_run_continues_at_16k_with_new_rope_and_mixture(base_stage, tmp_path, capsys):
    """(train.init_optimizer=reset, the default, is the continued-pretraining runbook's path.)"""
    from jaxcoder.train.checkpoint import read_meta
    from jaxcoder.train.loop import train

    cfg = _long_stage(base_stage, tmp_path / "long", init_optimizer="keep")
    summary = train(resolve(cfg))
    assert [h["step"] for h in summary["history"]] == [1, 2]
    assert all(np.isfinite(h["loss"]) for h in summary["history"])
    out = capsys.readouterr().out
    assert f"initialised from {base_stage.workdir}/checkpoints step 3 (its optimizer state, this run's schedule " \
           "from step 0); changed: " in out
    assert ("changed: max_seq_len 64 -> 128, rope.factor 1.0 -> 4.0, rope.scaling none -> linear, rope.theta "
            "10000.0 -> 100000.0") in out
    _, meta = read_meta(f"{cfg.workdir}/checkpoints")
    assert meta["model"]["rope"]["theta"] == 1e5 and meta["model"]["rope"]["scaling"] == "linear"
    # Adam's count goes on from stage 1's 3 steps (its bias correction stays settled) while the
    # schedule counts this stage's 2.
    assert _counts(Path(cfg.workdir) / "checkpoints", 2) == [2, 5]


def test_a_shape_change_between_stages_is_refused_by_field(base_stage, tmp_path):
    from jaxcoder.train.loop import train

    cfg = _long_stage(base_stage, tmp_path / "wider")
    cfg.model.d_ff = base_stage.model.d_ff * 2
    with pytest.raises(ValueError, match=rf"train.init_from=.*: model fields differ from the checkpoint's: "
                                         rf"model.d_ff={cfg.model.d_ff} \(checkpoint: {base_stage.model.d_ff}\); "
                                         r"only RoPE and execution fields may change between stages"):
        train(resolve(cfg))


@pytest.mark.parametrize("line,size", [("deepseek_coder", "6.7b"), ("starcoder2", "7b")])
def test_the_papers_two_stages_resolve(line, size):
    import importlib.util

    spec = importlib.util.spec_from_file_location(line, Path(__file__).parent.parent / "configs" / f"{line}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    base, long = (resolve(module.get_config(f"{size},stage={s}")) for s in ("base", "long"))
    assert (base.train.seq_len, long.train.seq_len) == (4096, 16384)
    assert long.train.init_from == f"{base.workdir}/checkpoints" and long.train.init_optimizer == "keep"
    assert long.train.lr == pytest.approx(base.train.lr * base.train.min_lr_ratio)  # the final stage-1 rate
    if line == "deepseek_coder":
        assert (base.model.rope.theta, base.model.rope.scaling) == (1e4, "none")
        assert (long.model.rope.theta, long.model.rope.scaling, long.model.rope.factor) == (1e5, "linear", 4.0)
        assert base.train.schedule == "multistep" and long.train.batch_size == 512 and long.train.steps == 1000
    else:
        assert base.model.rope.theta == 1e5 and long.model.rope.theta == 1e6  # the released 7B config's
        assert long.data.repo_level and not base.data.repo_level
