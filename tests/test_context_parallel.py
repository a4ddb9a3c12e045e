"""Context parallelism on 8 fake devices: with each row's tokens split over the `context` mesh axis
(ring attention, load-balanced layout), the loss and every gradient equal those of the same model
and batch on one device, for packed rows (many short documents and one longer than a device's
chunk), with and without a sliding window, for GQA and MQA models, beside FSDP, data and tensor parallelism and
pipeline stages, with ring blocks computed by XLA and by our Pallas kernel."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from helpers import random_params

from jaxcoder.model import functional as F
from jaxcoder.model.loss import loss_sums
from jaxcoder.model.presets import preset
from jaxcoder.parallel.context import zigzag, zigzag_order
from jaxcoder.parallel.mesh import make_mesh
from jaxcoder.parallel.pipeline import StageConfig, pipelining
from jaxcoder.parallel.rules import named_sharding, sharding_rules, tree_shardings
from jaxcoder.train.sharding import global_batch

pytestmark = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")

T = 64


def packed_batch(rows: int, vocab: int, seed: int) -> dict:
    """Rows packed as the data pipeline packs them: documents of 2-7 tokens, one of 37 (longer than
    any device's chunk at context 2 or 4) in row 0, padding (segment 0) at the end of each row."""
    rng = np.random.default_rng(seed)
    seg = np.zeros((rows, T), np.int32)
    pos = np.zeros((rows, T), np.int32)
    for r in range(rows):
        lengths = ([37] if r == 0 else []) + list(rng.integers(2, 8, 16))
        i, doc = 0, 1
        for n in lengths:
            n = min(n, T - 3 - i)
            if n <= 0:
                break
            seg[r, i:i + n], pos[r, i:i + n] = doc, np.arange(n)
            i, doc = i + n, doc + 1
    inputs = rng.integers(4, vocab, (rows, T)).astype(np.int32)
    targets = rng.integers(4, vocab, (rows, T)).astype(np.int32)
    last = np.append(seg[:, 1:] != seg[:, :-1], np.ones((rows, 1), bool), axis=1)
    return {"inputs": inputs, "targets": targets, "segment_ids": seg, "positions": pos,
            "loss_mask": ((seg > 0) & ~last).astype(np.int32)}


def loss_and_grads(cfg, params, batch):
    def loss(p, b):
        sums = loss_sums(cfg, p, b)
        return sums["nll"] / sums["tokens"]

    return jax.value_and_grad(loss)(params, batch)


CASES = {  # (preset, overrides): GQA with and without a window, MQA with learned positions
    "gqa": ("deepseek-coder-tiny", {}),
    "gqa-window": ("starcoder2-tiny", {"sliding_window": 9}),  # K/V travel 1 hop each way at context 4
    "gqa-wide-window": ("starcoder2-tiny", {"sliding_window": 40}),  # the whole ring
    "mqa": ("santacoder-tiny", {}),
}
MESHES = {"context2-fsdp2-data2": {"data": 2, "fsdp": 2, "context": 2},
          "context4-fsdp2": {"fsdp": 2, "context": 4, "data": 1},
          "context8": {"context": 8, "data": 1},
          "stage2-context2-fsdp2": {"stage": 2, "context": 2, "fsdp": 2, "data": 1},
          "context2-tensor2-fsdp2": {"context": 2, "tensor": 2, "fsdp": 2, "data": 1}}


@pytest.mark.parametrize(("case", "mesh_name", "q_chunk"), [
    ("gqa", "context2-fsdp2-data2", 1024), ("gqa", "context4-fsdp2", 1024),
    ("gqa-window", "context4-fsdp2", 1024), ("gqa-window", "context8", 1024),
    ("gqa-window", "context4-fsdp2", 4),  # 4 score tiles per block, some skipped
    ("gqa-wide-window", "context2-fsdp2-data2", 1024),
    ("mqa", "context2-fsdp2-data2", 1024), ("mqa", "context4-fsdp2", 1024),
])
def test_loss_and_gradients_equal_one_device(case, mesh_name, q_chunk, monkeypatch):
    from jaxcoder.parallel import context

    monkeypatch.setattr(context, "Q_CHUNK", q_chunk)
    assert_equal_one_device(case, mesh_name)


@pytest.mark.parametrize(("case", "mesh_name", "max_piece"), [
    ("gqa", "context2-tensor2-fsdp2", None),  # heads (and K/V heads) split over tensor devices too
    ("gqa-window", "context4-fsdp2", None),  # chunk distances 0 and 1 computed, farther ones skipped; 1 hop each way
    ("mqa", "context4-fsdp2", 4),  # chunks of 8 cut into pieces of 4 (as on a TPU whose VMEM a chunk overfills)
])
def test_pallas_ring_equals_one_device(case, mesh_name, max_piece, monkeypatch):
    """With model.attention_impl=pallas each ring block runs through our flash kernel (interpreted
    here) and its custom VJP; the reference is one device through XLA."""
    from jaxcoder.parallel import context_flash

    calls = spy_on_the_kernel_ring(monkeypatch)
    monkeypatch.setattr(context_flash, "MAX_PIECE", max_piece)
    assert_equal_one_device(case, mesh_name, attention_impl="pallas")
    assert calls, "the ring did not run through the kernel"


@pytest.mark.parametrize("attention_impl", ["xla", "pallas"])
def test_context_parallelism_inside_pipeline_stages(attention_impl, monkeypatch):
    """Two pipeline stages, each sharding its rows over 2 context devices (and FSDP 2): the ring
    runs inside the stages' vmap; loss and gradients equal one device's."""
    calls = spy_on_the_kernel_ring(monkeypatch)
    assert_equal_one_device("gqa-window", "stage2-context2-fsdp2", attention_impl=attention_impl, n_layers=4,
                            pipeline=StageConfig(stages=2, microbatches=2))
    assert bool(calls) == (attention_impl == "pallas")


def spy_on_the_kernel_ring(monkeypatch) -> list:
    from jaxcoder.parallel import context_flash

    calls = []
    ring = context_flash.ring_flash_attention
    monkeypatch.setattr(context_flash, "ring_flash_attention", lambda *a, **kw: calls.append(1) or ring(*a, **kw))
    return calls


def assert_equal_one_device(case, mesh_name, attention_impl="xla", pipeline=None, **model):
    name, overrides = CASES[case]
    cfg = preset(name, dtype="float32", param_dtype="float32", max_seq_len=T, **overrides, **model)
    params = random_params(F.init_params(cfg, 0), seed=3, scale=0.3)
    batch = packed_batch(4, cfg.vocab_size, seed=len(case))
    want_loss, want_grads = jax.jit(lambda p, b: loss_and_grads(cfg, p, b))(params, batch)

    cfg = dataclasses.replace(cfg, attention_impl=attention_impl)
    mesh = make_mesh(MESHES[mesh_name])
    sharded_params = jax.device_put(params, tree_shardings(F.param_axes(cfg), mesh))
    placed = global_batch(batch, named_sharding(("batch", "length"), mesh))
    assert placed["inputs"].sharding.spec[1] == "context"

    def step(p, b):
        with sharding_rules(mesh), pipelining(pipeline or StageConfig()):
            return loss_and_grads(cfg, p, b)

    compiled = jax.jit(step).lower(sharded_params, placed).compile()
    assert "collective-permute" in compiled.as_text()  # K/V travel as a ring
    got_loss, got_grads = compiled(sharded_params, placed)
    np.testing.assert_allclose(got_loss, want_loss, rtol=2e-6)
    for (path, g), w in zip(jax.tree_util.tree_leaves_with_path(got_grads), jax.tree.leaves(want_grads),
                            strict=True):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=2e-5, atol=2e-6,
                                   err_msg=jax.tree_util.keystr(path))


def test_the_load_balanced_layout_gives_each_device_an_early_and_a_late_chunk():
    order = zigzag_order(16, 4)  # 8 chunks of 2: device i holds chunks i and 7 - i
    assert order.tolist() == [0, 1, 14, 15, 2, 3, 12, 13, 4, 5, 10, 11, 6, 7, 8, 9]
    batch = {"inputs": np.arange(32).reshape(2, 16), "step": np.array([3])}
    out = zigzag(batch, 4)
    assert out["inputs"][1].tolist() == (16 + order).tolist() and out["step"].tolist() == [3]
    with pytest.raises(ValueError, match=r"train.seq_len \(12\) must be a multiple of 2 x mesh.context \(8\)"):
        zigzag_order(12, 4)


def test_odd_lengths_are_refused_by_field():
    from jaxcoder.parallel.mesh import MeshError, check_model_fits

    cfg = preset("deepseek-coder-tiny")
    with pytest.raises(MeshError, match=r"train.seq_len \(100\) must be a multiple of 2 x mesh.context = 8"):
        check_model_fits(cfg, {"context": 4, "data": 2}, 8, 100)
    check_model_fits(cfg, {"context": 2, "stage": 2, "data": 2}, 8, 64)  # composes with pipeline stages
