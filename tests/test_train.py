"""Optimizer recipe, and a short training run on prepared data that learns, checkpoints and
resumes exactly where it stopped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcoder.config import resolve
from jaxcoder.model import functional as F
from jaxcoder.model.presets import preset
from jaxcoder.train.optimizer import OptimizerConfig, decay_mask, learning_rate


def test_warmup_then_cosine_to_floor():
    lr = learning_rate(OptimizerConfig(lr=1e-3, warmup_steps=10, total_steps=110, min_lr_ratio=0.1))
    assert float(lr(0)) == 0.0
    assert float(lr(5)) == pytest.approx(5e-4)
    assert float(lr(10)) == pytest.approx(1e-3)
    assert float(lr(60)) == pytest.approx(1e-4 + 0.5 * 9e-4, rel=1e-5)
    assert float(lr(110)) == pytest.approx(1e-4)


def test_no_decay_on_norms_biases_and_embeddings():
    cfg = preset("starcoder2-tiny", tie_embeddings=False)
    mask = decay_mask(F.abstract_params(cfg))
    assert mask["blocks"]["attn"]["wq"] and mask["blocks"]["mlp"]["wi"] and mask["lm_head"]
    assert not mask["blocks"]["attn"]["bq"] and not mask["blocks"]["mlp"]["bi"]
    assert not mask["blocks"]["attn_norm"]["scale"] and not mask["final_norm"]["bias"]
    assert not mask["embed"]["embedding"]
    assert decay_mask(F.abstract_params(cfg), decay_embeddings=True)["embed"]["embedding"]


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_logged_loss_is_the_nll_and_the_z_loss_is_logged_apart(grad_accum):
    """With train.z_loss > 0 the objective includes z * log(Z)^2, but `loss` is the NLL (comparable
    with the held-out loss) and `z_loss` the added term; both against a float64 numpy reference."""
    from jaxcoder.train.optimizer import make_optimizer
    from jaxcoder.train.step import make_train_step

    cfg = preset("deepseek-coder-tiny", dtype="float32")
    params = F.init_params(cfg, 0)
    rng = np.random.default_rng(0)
    toks = rng.integers(0, cfg.vocab_size, (4, 17))
    mask = (rng.random((4, 16)) < 0.8).astype(np.float32)
    batch = {"inputs": jnp.asarray(toks[:, :-1]), "targets": jnp.asarray(toks[:, 1:]),
             "segment_ids": jnp.ones((4, 16), jnp.int32), "positions": jnp.broadcast_to(jnp.arange(16), (4, 16)),
             "loss_mask": jnp.asarray(mask)}
    logits = np.asarray(F.forward(cfg, params, batch["inputs"], positions=batch["positions"]), np.float64)
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nll = logz - np.take_along_axis(logits, toks[:, 1:, None], -1)[..., 0]
    optimizer = make_optimizer(OptimizerConfig(lr=1e-3, warmup_steps=1, total_steps=10))
    step = jax.jit(make_train_step(cfg, optimizer, z_loss=1e-2, grad_accum=grad_accum))
    _, _, m = step(params, optimizer.init(params), batch)
    assert float(m["loss"]) == pytest.approx((nll * mask).sum() / mask.sum(), rel=1e-5)
    assert float(m["z_loss"]) == pytest.approx(1e-2 * (logz ** 2 * mask).sum() / mask.sum(), rel=1e-5)
    _, _, plain = jax.jit(make_train_step(cfg, optimizer))(params, optimizer.init(params), batch)
    assert "z_loss" not in plain and float(plain["loss"]) == pytest.approx(float(m["loss"]), rel=1e-6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, prepared_data):
    from jaxcoder.config import base_config

    cfg = base_config("deepseek-coder-tiny")
    cfg.workdir = str(tmp_path_factory.mktemp("run") / "work")
    cfg.data.prepared_dir = prepared_data[0].out_dir
    cfg.model.update(vocab_size=1024, dtype="float32")
    if jax.device_count() >= 8:  # exercise data x fsdp x tensor sharding when the fake devices exist
        cfg.mesh.update(data=2, fsdp=2, tensor=2)
        cfg.mesh.data = -1 if jax.device_count() > 8 else 2
    cfg.train.update(steps=24, batch_size=4, seq_len=64, lr=3e-3, warmup_steps=4, log_every=1, eval_every=12,
                     checkpoint_every=12, eval_batches=2)
    return cfg


def test_training_learns_checkpoints_and_resumes_exactly(tiny_run):
    """Includes the data iterator: the resumed run must see exactly the batches it would have."""
    from jaxcoder.train.loop import train

    cfg = tiny_run
    first = train(resolve(cfg))
    losses = [h["loss"] for h in first["history"]]
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.5
    assert "heldout_loss" in first["history"][-1]
    ckpt_dir = first["checkpoint_dir"]
    # Simulate a crash after step 12: drop the final checkpoint and the log, then run again.
    shutil.rmtree(f"{ckpt_dir}/24")
    metrics = f"{cfg.workdir}/metrics.jsonl"
    open(metrics, "w").close()
    second = train(resolve(cfg))
    resumed = [h["loss"] for h in second["history"]]
    assert [h["step"] for h in second["history"]] == list(range(13, 25))
    assert resumed == losses[12:], "a resumed run must reproduce the uninterrupted losses exactly"
    with open(metrics) as f:
        assert [json.loads(line)["step"] for line in f] == list(range(13, 25))


def test_training_heldout_loss_is_the_evaluation_loss(tiny_run):
    """The loss the training log shows for held-out data is what `jaxcoder eval` reports for that
    checkpoint with the same rows (one implementation; here trained on a 2x2x2 mesh, evaluated on
    one device)."""
    from jaxcoder.eval import perplexity
    from jaxcoder.train.checkpoint import load_params

    cfg = tiny_run
    if not Path(f"{cfg.workdir}/metrics.jsonl").exists():  # run alone: train first
        from jaxcoder.train.loop import train

        train(resolve(cfg))
    with open(f"{cfg.workdir}/metrics.jsonl") as f:
        last = [json.loads(line) for line in f][-1]
    assert last["step"] == 24
    mcfg, params, _ = load_params(f"{cfg.workdir}/checkpoints")
    per_lang = perplexity.evaluate(mcfg, params, cfg.data.prepared_dir, seq_len=cfg.train.seq_len,
                                   batch_size=cfg.train.batch_size, max_batches=cfg.train.eval_batches)
    total = perplexity.overall(per_lang)
    np.testing.assert_allclose(last["heldout_loss"], total["loss"], rtol=1e-5)
    np.testing.assert_allclose(last["heldout_bits_per_byte"], total["bits_per_byte"], rtol=1e-5)
    assert total["tokens"] > 0 and total["bytes"] > total["tokens"]


def test_checkpoint_params_restore_for_export(tiny_run):
    from jaxcoder.train.checkpoint import load_params

    cfg, params, meta = load_params(f"{tiny_run.workdir}/checkpoints")
    assert meta["step"] == 24 and cfg.vocab_size == 1024
    logits = F.forward(cfg, params, jnp.zeros((1, 8), jnp.int32))
    assert logits.shape == (1, 8, 1024) and bool(jnp.isfinite(logits).all())


def test_resume_with_changed_data_settings_is_refused(tiny_run):
    from jaxcoder.train.loop import train

    cfg = tiny_run.copy_and_resolve_references()
    cfg.data.fim.rate = 0.9
    with pytest.raises(ValueError, match="cannot resume: the data pipeline changed.*fim"):
        train(resolve(cfg))
    cfg = tiny_run.copy_and_resolve_references()
    cfg.data.loader_workers = 2
    with pytest.raises(ValueError, match="num_workers: saved 0 now 2"):
        train(resolve(cfg))


def test_checkpoint_retention_keeps_last_k_and_every_mth(prepared_data, tmp_path):
    from helpers import tiny_train_config

    from jaxcoder.train.loop import train

    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path, steps=9, checkpoint_every=1)
    cfg.train.update(keep_checkpoints=2, keep_every=4)
    cfg.mesh.update(num_devices=1, data=1)
    train(resolve(cfg))
    kept = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert kept == [4, 8, 9]
