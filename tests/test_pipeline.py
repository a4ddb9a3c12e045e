"""Pipeline parallelism on 8 fake CPU devices: GPipe and circular schedules give the loss and gradients
of the plain model; training with stages equals training without; a run saved with 4 stages resumes
with 2; bad settings are refused; the 33B dry run fits with stages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_params, tiny_train_config

from jaxcoder.config import resolve
from jaxcoder.model import functional as F
from jaxcoder.model.presets import preset
from jaxcoder.parallel.mesh import make_mesh
from jaxcoder.parallel.pipeline import StageConfig, pipelining
from jaxcoder.parallel.rules import sharding_rules, tree_shardings
from jaxcoder.train.loop import train

ROOT = Path(__file__).parent.parent
pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")


# Every pair of (schedule, mesh, remat) once: the four cases of a pairwise design rather than all
# eight (the suite's time; each case compiles a pipelined forward and backward).
@pytest.mark.parametrize("sizes,pcfg,remat", [
    ({"data": 2, "stage": 4}, StageConfig(stages=4, microbatches=4, repeats=1), "none"),
    ({"data": 2, "stage": 4}, StageConfig(stages=4, microbatches=8, repeats=2), "full"),
    ({"stage": 2, "fsdp": 2, "tensor": 2}, StageConfig(stages=2, microbatches=2, repeats=1), "full"),
    ({"stage": 2, "fsdp": 2, "tensor": 2}, StageConfig(stages=2, microbatches=4, repeats=2), "none"),
], ids=["gpipe-data2-stage4-none", "circular-data2-stage4-full", "gpipe-stage2-fsdp2-tensor2-full",
        "circular-stage2-fsdp2-tensor2-none"])
def test_loss_and_gradients_equal_the_plain_model(sizes, pcfg, remat):
    cfg = preset("starcoder2-tiny", dtype="float32", n_layers=8, remat=remat, sliding_window=16)
    params = random_params(F.init_params(cfg, 0), seed=1)
    rng = np.random.default_rng(0)
    toks = jnp.asarray(rng.integers(0, cfg.vocab_size, (8, 48)))
    seg = jnp.asarray(np.repeat([[1] * 30 + [2] * 18], 8, 0))
    pos = jnp.asarray(np.repeat([list(range(30)) + list(range(18))], 8, 0))

    def loss(p):
        return (F.forward(cfg, p, toks, segment_ids=seg, positions=pos) ** 2).mean()

    ref_loss, ref_grads = jax.value_and_grad(loss)(params)
    mesh = make_mesh(sizes)
    sharded = jax.device_put(params, tree_shardings(F.param_axes(cfg), mesh))
    with sharding_rules(mesh), pipelining(pcfg):
        got_loss, got_grads = jax.jit(jax.value_and_grad(loss))(sharded)
    np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(got_grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_bubble_fraction_and_refusals():
    assert StageConfig(4, 8, 1).bubble_fraction() == pytest.approx(3 / 11)
    assert StageConfig(4, 8, 2).bubble_fraction() == pytest.approx(3 / 19)
    with pytest.raises(ValueError, match=r"model.n_layers \(6\) is not divisible by mesh.stage x pipeline.repeats"):
        StageConfig(4, 8, 1).check(6, 16)
    with pytest.raises(ValueError, match=r"pipeline.microbatches \(2\) must be at least mesh.stage \(4\)"):
        StageConfig(4, 2, 1).check(8, 16)
    with pytest.raises(ValueError, match=r"per-step batch \(12\) is not divisible by pipeline.microbatches \(8\)"):
        StageConfig(4, 8, 1).check(8, 12)


def _run(data_dir, workdir, steps, stage, **mesh):
    cfg = tiny_train_config(data_dir, workdir, steps=steps, batch_size=16, checkpoint_every=3)
    cfg.model.n_layers = 4
    cfg.mesh.update(stage=stage, **mesh)
    cfg.pipeline.microbatches = 4
    return train(resolve(cfg))


def test_training_with_stages_matches_and_resumes_with_fewer_stages(prepared_data, tmp_path):
    data = prepared_data[0].out_dir
    plain = _run(data, tmp_path / "plain", 6, 1, data=8)["history"]
    staged = tmp_path / "staged"
    first = _run(data, staged, 3, 4, data=2)["history"]  # saved at step 3 with 4 stages
    second = _run(data, staged, 6, 2, data=2, fsdp=2)["history"]  # resumed with 2 stages
    got = [h["loss"] for h in first + second]
    assert [h["step"] for h in first + second] == list(range(1, 7))
    np.testing.assert_allclose(got, [h["loss"] for h in plain], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_33b_dry_run_fits_with_stages_and_prints_the_bubble():
    import os

    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-m", "jaxcoder", "train", "--config=configs/deepseek_coder.py:33b",
                           "--dry_run_devices=128", "--config.mesh.data=1", "--config.mesh.stage=2",
                           "--config.mesh.fsdp=-1", "--config.train.batch_size=256", "--config.train.seq_len=16384",
                           "--config.pipeline.microbatches=4"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "128 {'data': 1, 'stage': 2, 'fsdp': 64, 'context': 1, 'tensor': 1}" in out
    assert "pipeline bubble fraction       0.200" in out  # (2-1)/(1*4+2-1)
    assert float(out.split("peak / device")[1].split("GiB")[0]) < 80
