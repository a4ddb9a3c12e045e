"""Decoder behaviour: packed documents are independent, windows bound the receptive field,
scan/unrolled and remat variants agree, the dtype policy holds, and every parameter is named."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_params

from jaxcoder.model import functional as F
from jaxcoder.model.presets import preset
from jaxcoder.parallel.rules import LOGICAL_NAMES

LINES = ["deepseek-coder-tiny", "starcoder2-tiny", "santacoder-tiny"]


@pytest.mark.parametrize("name", LINES)
def test_packed_documents_do_not_see_each_other(name):
    cfg = preset(name, dtype="float32")
    params = random_params(F.init_params(cfg, 0))
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, cfg.vocab_size, 23), rng.integers(0, cfg.vocab_size, 41)
    packed = np.concatenate([a, b])[None]
    seg = np.concatenate([np.full(23, 1), np.full(41, 2)])[None]
    pos = np.concatenate([np.arange(23), np.arange(41)])[None]
    out = np.asarray(F.forward(cfg, params, jnp.asarray(packed), segment_ids=jnp.asarray(seg),
                               positions=jnp.asarray(pos)))
    alone_a = np.asarray(F.forward(cfg, params, jnp.asarray(a[None])))
    alone_b = np.asarray(F.forward(cfg, params, jnp.asarray(b[None])))
    np.testing.assert_allclose(out[0, :23], alone_a[0], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(out[0, 23:], alone_b[0], atol=2e-5, rtol=1e-5)


def test_sliding_window_bounds_the_receptive_field():
    cfg = preset("starcoder2-tiny", dtype="float32", sliding_window=8, n_layers=2)
    params = random_params(F.init_params(cfg, 0))
    rng = np.random.default_rng(2)
    toks = rng.integers(0, cfg.vocab_size, (1, 64))
    changed = toks.copy()
    changed[0, 10] = (changed[0, 10] + 1) % cfg.vocab_size
    x, y = (np.asarray(F.forward(cfg, params, jnp.asarray(t))) for t in (toks, changed))
    reach = 10 + cfg.n_layers * (cfg.sliding_window - 1)  # each layer reaches window-1 further
    assert np.abs(x[0, reach + 1:] - y[0, reach + 1:]).max() == 0.0
    assert np.abs(x[0, 10:reach + 1] - y[0, 10:reach + 1]).max() > 1e-4


@pytest.mark.parametrize("name", LINES)
def test_scan_unrolled_and_remat_agree(name):
    """Every remat policy on one line (they do not depend on the architecture); unrolled layers and
    full remat on each."""
    base = preset(name, dtype="float32", remat="none")
    params = random_params(F.init_params(base, 0))
    toks = jnp.asarray(np.random.default_rng(3).integers(0, base.vocab_size, (2, 48)))

    def loss(cfg):
        return jax.value_and_grad(lambda p: F.forward(cfg, p, toks).mean())(params)

    ref_loss, ref_grad = loss(base)
    changes = [dict(scan_layers=False), dict(remat="full")]
    if name == LINES[0]:
        changes += [dict(remat="dots"), dict(remat="dots_no_batch")]
    for change in changes:
        got_loss, got_grad = loss(base.replace(**change))
        np.testing.assert_allclose(got_loss, ref_loss, rtol=1e-6)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), got_grad, ref_grad)


def test_bf16_compute_keeps_fp32_params_and_logits():
    cfg32 = preset("deepseek-coder-tiny", dtype="float32")
    cfg16 = cfg32.replace(dtype="bfloat16")
    params = F.init_params(cfg16, 0)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))
    toks = jnp.asarray(np.random.default_rng(4).integers(0, cfg16.vocab_size, (2, 32)))
    lo, hi = F.forward(cfg16, params, toks), F.forward(cfg32, params, toks)
    assert lo.dtype == jnp.float32
    rel = float(jnp.linalg.norm(lo - hi) / jnp.linalg.norm(hi))
    assert rel < 2e-2, rel  # bf16 operands: 1e-3..1e-2 relative error is expected


@pytest.mark.parametrize("name", LINES)
def test_every_parameter_has_valid_logical_axes(name):
    cfg = preset(name)
    axes, shapes = F.param_axes(cfg), F.abstract_params(cfg)
    flat_axes = jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, tuple))
    flat_shapes = jax.tree.leaves(shapes)
    assert len(flat_axes) == len(flat_shapes)
    for ax, shape in zip(flat_axes, flat_shapes, strict=True):
        assert len(ax) == len(shape.shape) and set(ax) <= set(LOGICAL_NAMES), (ax, shape)
    assert all(ax[0] == "layers" for ax in jax.tree.leaves(axes["blocks"], is_leaf=lambda x: isinstance(x, tuple)))
