"""RoPE: inverse frequencies of every scaling variant match transformers' implementation, and the
rotation equals Hugging Face's rotate_half formula evaluated in float64."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxcoder.model.config import RopeConfig
from jaxcoder.model.rope import apply_rope, inverse_frequencies, rope_tables

VARIANTS = [
    ("default", RopeConfig(theta=10000.0), {}),
    ("linear", RopeConfig(theta=100000.0, scaling="linear", factor=4.0), {"factor": 4.0}),
    ("llama3", RopeConfig(theta=500000.0, scaling="llama3", factor=8.0, original_max_position=8192,
                          low_freq_factor=1.0, high_freq_factor=4.0),
     {"factor": 8.0, "original_max_position_embeddings": 8192, "low_freq_factor": 1.0, "high_freq_factor": 4.0}),
    ("yarn", RopeConfig(theta=10000.0, scaling="yarn", factor=4.0, original_max_position=2048),
     {"factor": 4.0, "original_max_position_embeddings": 2048}),
    ("yarn", RopeConfig(theta=10000.0, scaling="yarn", factor=40.0, original_max_position=4096, beta_fast=32.0,
                        beta_slow=1.0, mscale=1.0, mscale_all_dim=0.707, truncate=False),
     {"factor": 40.0, "original_max_position_embeddings": 4096, "beta_fast": 32.0, "beta_slow": 1.0,
      "mscale": 1.0, "mscale_all_dim": 0.707, "truncate": False}),
]


@pytest.mark.parametrize("kind,rope,extra", VARIANTS,
                         ids=["default", "linear", "llama3", "yarn", "yarn-mscale-untruncated"])
def test_inverse_frequencies_match_transformers(hf, kind, rope, extra):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    head_dim = 64
    config = LlamaConfig(hidden_size=head_dim * 4, num_attention_heads=4, head_dim=head_dim,
                         max_position_embeddings=8192 * 4,
                         rope_parameters={"rope_type": kind, "rope_theta": rope.theta, **extra})
    if kind == "default":
        from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
        ref, ref_factor = LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        ref, ref_factor = ROPE_INIT_FUNCTIONS[kind](config)
    ours, factor = inverse_frequencies(rope, head_dim)
    np.testing.assert_allclose(ours, ref.numpy(), rtol=2e-6, atol=0)
    assert factor == pytest.approx(ref_factor, rel=1e-7)


def test_rotation_matches_float64_rotate_half():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 7, 3, 16)).astype(np.float32)
    pos = np.stack([np.arange(7), np.array([0, 1, 2, 0, 1, 2, 3])]).astype(np.int32)
    cos, sin = rope_tables(jnp.asarray(pos), RopeConfig(theta=1000.0), 16)
    got = np.asarray(apply_rope(jnp.asarray(x), cos, sin))
    inv = 1.0 / 1000.0 ** (np.arange(0, 16, 2, dtype=np.float64) / 16)
    ang = pos[..., None].astype(np.float64) * inv
    ang = np.concatenate([ang, ang], -1)[:, :, None, :]
    x64 = x.astype(np.float64)
    rot = np.concatenate([-x64[..., 8:], x64[..., :8]], -1)
    np.testing.assert_allclose(got, x64 * np.cos(ang) + rot * np.sin(ang), rtol=1e-5, atol=1e-5)


def test_yarn_import_reads_mscale_and_truncate_and_refuses_unknown_fields():
    from jaxcoder.export.architectures import ExportError, rope_from_hf, rope_to_hf

    hf = {"max_position_embeddings": 163840,
          "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "mscale": 1.0,
                              "mscale_all_dim": 1.0, "original_max_position_embeddings": 4096, "truncate": False}}
    rope = rope_from_hf(hf)
    assert (rope.mscale, rope.mscale_all_dim, rope.truncate, rope.factor) == (1.0, 1.0, False, 40.0)
    assert rope_from_hf({**hf, "rope_parameters": rope_to_hf(rope)}) == rope  # export writes them back
    no_factor = {**hf, "rope_parameters": {k: v for k, v in hf["rope_parameters"].items() if k != "factor"}}
    assert rope_from_hf(no_factor).factor == 163840 / 4096  # transformers' rule when factor is absent
    bad = {**hf, "rope_parameters": {**hf["rope_parameters"], "short_factor": [1.0]}}
    with pytest.raises(ExportError, match="short_factor"):
        rope_from_hf(bad)
    with pytest.raises(ExportError, match="partial_rotary_factor"):
        rope_from_hf({**hf, "partial_rotary_factor": 0.5})
