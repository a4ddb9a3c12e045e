"""Choosing the attention implementation: a training step of a tiny model is the same with the
Pallas kernel and with splash attention as with XLA (one device, and sharded over data/fsdp/tensor and pipeline stages);
`auto` picks per platform and case; cuDNN refuses what it cannot compute, and its argument
mapping is checked through the same `jax.nn.dot_product_attention` call run by XLA."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import random_params

from jaxcoder.model import functional as F
from jaxcoder.model.attention_ops import attend, cudnn_attention, resolve_impl, xla_attention
from jaxcoder.model.loss import summed_loss
from jaxcoder.model.presets import preset
from jaxcoder.parallel.mesh import make_mesh
from jaxcoder.parallel.pipeline import StageConfig, pipelining
from jaxcoder.parallel.rules import sharding_rules, tree_shardings
from jaxcoder.train.step import make_train_step


def _batch(cfg, b=4, t=40):
    rng = np.random.default_rng(0)
    toks = rng.integers(0, cfg.vocab_size, (b, t + 1))
    seg = np.repeat([[1] * 23 + [2] * (t - 23)], b, 0)
    pos = np.repeat([list(range(23)) + list(range(t - 23))], b, 0)
    return {"inputs": jnp.asarray(toks[:, :-1]), "targets": jnp.asarray(toks[:, 1:]),
            "segment_ids": jnp.asarray(seg, jnp.int32), "positions": jnp.asarray(pos, jnp.int32),
            "loss_mask": jnp.ones((b, t), jnp.float32)}


def _assert_tree_close(got, want, tol=1e-5):
    """Per tensor, ||got - want|| / ||want|| < tol. Norm-scale gradients sum over every token, so
    float32 summation order alone moves them: XLA against its own query-chunked path differs by
    5.8e-6 there (max-element 1.3e-5); the kernel against XLA by 4.6e-6. A tensor whose exact
    gradient is zero (the key bias: softmax ignores a per-query shift) is measured against 1e-4 of
    the whole gradient's norm instead of its own rounding noise."""
    floor = 1e-4 * float(np.sqrt(sum(np.sum(np.square(x)) for x in jax.tree.leaves(want))))
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(got), jax.tree.leaves(want), strict=True):
        a, b = np.asarray(a), np.asarray(b)
        err = float(np.linalg.norm(a - b) / max(float(np.linalg.norm(b)), floor))
        assert err < tol, (jax.tree_util.keystr(path), err)


def _step(cfg, params, batch):
    opt = optax.sgd(1.0)  # the update is then exactly -grad: params after the step compare grads
    new_params, _, metrics = make_train_step(cfg, opt)(params, opt.init(params), batch)
    return metrics["loss"], jax.tree.map(jnp.subtract, params, new_params)


@pytest.mark.parametrize("name,window,impl", [
    ("deepseek-coder-tiny", None, "pallas"), ("starcoder2-tiny", 16, "pallas"), ("santacoder-tiny", None, "pallas"),
    ("starcoder2-tiny", 16, "splash"), ("santacoder-tiny", None, "splash")])
def test_training_step_is_the_same_with_a_kernel_as_with_xla(name, window, impl):
    """Our kernel and JAX's splash attention (both interpreted here) against XLA: GQA (DeepSeek;
    StarCoder2's, with a sliding window), MQA (SantaCoder), two packed documents per row."""
    cfg = preset(name, dtype="float32", sliding_window=window)
    params = random_params(F.init_params(cfg, 0), seed=1)
    batch = _batch(cfg)
    ref_loss, ref_grads = jax.jit(lambda p: _step(cfg, p, batch))(params)
    kernel = dataclasses.replace(cfg, attention_impl=impl)
    loss, grads = jax.jit(lambda p: _step(kernel, p, batch))(params)
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
    _assert_tree_close(grads, ref_grads)


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
@pytest.mark.parametrize("sizes,pcfg", [
    ({"data": 2, "fsdp": 2, "tensor": 2}, None),
    ({"stage": 2, "data": 2, "tensor": 2}, StageConfig(stages=2, microbatches=2, repeats=1)),
], ids=["data-fsdp-tensor", "stage-data-tensor"])
def test_sharded_kernel_matches_unsharded_xla(sizes, pcfg):
    """Inside shard_map each device attends its own rows and heads; nothing is gathered."""
    cfg = preset("starcoder2-tiny", dtype="float32", n_layers=4, sliding_window=16)
    params = random_params(F.init_params(cfg, 0), seed=2)
    batch = _batch(cfg, b=8)

    def loss(c, p):
        total, count = summed_loss(c, p, batch)
        return total / count

    ref_loss, ref_grads = jax.value_and_grad(lambda p: loss(cfg, p))(params)
    mesh = make_mesh(sizes)
    sharded = jax.device_put(params, tree_shardings(F.param_axes(cfg), mesh))
    pallas = dataclasses.replace(cfg, attention_impl="pallas")
    pipe = pipelining(pcfg or StageConfig(stages=1, microbatches=1, repeats=1))
    with sharding_rules(mesh), pipe:
        fn = jax.value_and_grad(lambda p: loss(pallas, p))
        assert "shard_map" in str(jax.make_jaxpr(fn)(sharded))  # the kernel runs per device
        got_loss, got_grads = jax.jit(fn)(sharded)
    np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-5)
    _assert_tree_close(got_grads, ref_grads)


def test_auto_picks_per_platform_and_case():
    half = jnp.zeros((1, 8, 4, 128), jnp.bfloat16)
    full = jnp.zeros((1, 8, 4, 128), jnp.float32)
    assert resolve_impl("auto", half, platform="cpu") == "xla"
    assert resolve_impl("auto", half, packed=False, platform="gpu") == "cudnn"
    assert resolve_impl("auto", half, packed=True, platform="gpu") == "pallas"     # segment ids
    assert resolve_impl("auto", full, packed=False, platform="gpu") == "pallas"    # cuDNN: half only
    assert resolve_impl("auto", jnp.zeros((1, 8, 4, 12), jnp.bfloat16), packed=False,
                        platform="gpu") == "pallas"                                # head_dim % 8
    assert resolve_impl("auto", half, platform="tpu") == "splash"
    assert resolve_impl("auto", half, platform="tpu", k_len=half.shape[1] + 1) == "xla"  # decoding
    assert resolve_impl("pallas", half, platform="cpu") == "pallas"


def test_cudnn_refuses_what_it_cannot_compute():
    x = jnp.zeros((1, 8, 4, 64), jnp.bfloat16)
    with pytest.raises(ValueError, match=r"attention_impl='cudnn': cuDNN attention needs a CUDA GPU"):
        attend(x, x, x, q_segment_ids=None, kv_segment_ids=None, sliding_window=None, impl="cudnn")


@pytest.mark.parametrize("window", [None, 7])
def test_cudnn_call_mapping_matches_reference(window):
    """The exact jax.nn.dot_product_attention call the cuDNN path makes (segments as a dense mask,
    the window as (W-1, 0)), run by XLA, equals our reference."""
    rng = np.random.default_rng(8)
    q = jnp.asarray(rng.standard_normal((2, 30, 8, 16)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((2, 30, 2, 16)), jnp.float32)
    seg = jnp.asarray(np.where(np.arange(30) < 11, 1, 2)[None].repeat(2, 0), jnp.int32)
    got = cudnn_attention(q, k, k, q_segment_ids=seg, kv_segment_ids=seg, sliding_window=window,
                          implementation="xla")
    want = xla_attention(q, k, k, q_segment_ids=seg, kv_segment_ids=seg, sliding_window=window)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_attention_benchmark_runs_and_checks_every_path():
    """`bench/attention.py --smoke`: every available path runs, is checked against XLA, is timed."""
    root = Path(__file__).parent.parent
    out = subprocess.run([sys.executable, "bench/attention.py", "--smoke"], cwd=root, capture_output=True,
                         text=True, timeout=300, check=True).stdout
    lines = [line for line in out.splitlines() if line.startswith("d=32")]
    assert len(lines) == 6  # (causal, packed) x (pallas, cudnn, xla)
    for line in lines:
        if " cudnn " in line:
            assert "n/a (cuDNN attention needs a CUDA GPU" in line
        else:
            err = float(line.rsplit("vs XLA ", 1)[1].rstrip(")"))
            assert err < 1e-5 and "TFLOP/s" in line
    assert "| 32 | 256 packed | 2 |" in out
