"""Every published preset has the published parameter count, and the model allocates exactly
the parameters the analytic count says (checked without allocating, via eval_shape)."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxcoder.model import functional as F
from jaxcoder.model.presets import PRESETS, PUBLISHED_PARAMS, preset


@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS))
def test_published_parameter_count(name):
    n = preset(name).param_count()
    assert abs(n - PUBLISHED_PARAMS[name]) / PUBLISHED_PARAMS[name] < 0.005, (name, n)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_model_shapes_match_analytic_count(name):
    cfg = preset(name)
    shapes = F.abstract_params(cfg)
    assert sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes)) == cfg.param_count()


def test_every_published_model_line_is_covered():
    lines = {n.split("-")[0] for n in PUBLISHED_PARAMS}
    assert lines == {"santacoder", "starcoderbase", "starcoder2", "deepseek"}
    # Each line also has a tiny preset for tests and the demo.
    assert {"santacoder-tiny", "starcoder2-tiny", "deepseek-coder-tiny"} <= set(PRESETS)


def test_architecture_features_of_presets():
    sc = preset("starcoderbase-15.5b")
    assert (sc.n_kv_heads, sc.position, sc.norm, sc.mlp, sc.tie_embeddings) == (1, "learned", "layernorm", "gelu", True)
    s2 = preset("starcoder2-7b")
    assert (s2.n_kv_heads, s2.sliding_window, s2.position, s2.attn_bias) == (4, 4096, "rope", True)
    ds = preset("deepseek-coder-33b")
    assert (ds.n_kv_heads, ds.norm, ds.mlp, ds.tie_embeddings, ds.attn_bias) == (8, "rmsnorm", "swiglu", False, False)
    assert (ds.rope.theta, ds.rope.scaling, ds.rope.factor) == (100000.0, "linear", 4.0)
