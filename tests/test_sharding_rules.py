"""The logical-axis rules table: resolution semantics and a sharded forward on 8 fake devices."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxcoder.model import functional as F
from jaxcoder.model.presets import preset
from jaxcoder.parallel.mesh import MeshError, make_mesh, resolve_axis_sizes
from jaxcoder.parallel.rules import DEFAULT_RULES, logical_to_spec, sharding_rules, tree_shardings


def test_resolution_uses_each_mesh_axis_once():
    axes = ("data", "fsdp", "tensor")
    assert logical_to_spec(("embed", "mlp"), DEFAULT_RULES, axes) == P("fsdp", "tensor")
    assert logical_to_spec(("mlp", "embed"), DEFAULT_RULES, axes) == P("tensor", "fsdp")
    # Activations: batch takes (data, fsdp), so embed falls back to replicated.
    assert logical_to_spec(("batch", "length", "embed"), DEFAULT_RULES, axes) == P(("data", "fsdp"), None, None)
    # Without an fsdp axis, batch uses the next rule.
    assert logical_to_spec(("batch", "embed"), DEFAULT_RULES, ("data", "tensor")) == P("data", None)
    assert logical_to_spec(("layers", "embed"), DEFAULT_RULES, axes) == P(None, "fsdp")
    # With a context axis: tokens split over it, weights over FSDP and it together.
    axes = ("data", "stage", "fsdp", "context", "tensor")
    assert logical_to_spec(("batch", "length", "embed"), DEFAULT_RULES, axes) == P(("data", "fsdp"), "context", None)
    assert logical_to_spec(("embed", "mlp"), DEFAULT_RULES, axes) == P(("fsdp", "context"), "tensor")


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
def test_sharded_forward_matches_single_device():
    cfg = preset("starcoder2-tiny", dtype="float32")
    params = F.init_params(cfg, 0)
    toks = jnp.asarray(np.random.default_rng(0).integers(0, cfg.vocab_size, (4, 32)))
    ref = F.forward(cfg, params, toks)
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    shardings = tree_shardings(F.param_axes(cfg), mesh)
    sharded = jax.device_put(params, shardings)
    assert sharded["blocks"]["mlp"]["wi"].sharding.spec == P("stage", ("fsdp", "context"), "tensor")
    with sharding_rules(mesh):
        out = jax.jit(lambda p, t: F.forward(cfg, p, t))(sharded, toks)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-5)


def test_mesh_sizes_fill_minus_one_and_name_problems():
    assert resolve_axis_sizes({"data": -1, "tensor": 2}, 8) == {"data": 4, "stage": 1, "fsdp": 1, "context": 1,
                                                                "tensor": 2}
    with pytest.raises(MeshError, match="multiply to 4"):
        resolve_axis_sizes({"data": 2, "fsdp": 2}, 8)
    with pytest.raises(MeshError, match="not divisible"):
        resolve_axis_sizes({"data": -1, "tensor": 3}, 8)
    with pytest.raises(MeshError, match="mesh.expert"):
        resolve_axis_sizes({"expert": 2}, 8)
