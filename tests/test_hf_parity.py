"""Whole-model parity with transformers (PyTorch, float32) for the three exported architectures,
on random tiny models with odd sizes, GQA where allowed and sequences >= 512 tokens (longer than the
sliding window), plus bitwise jaxcoder -> HF -> jaxcoder round trips."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import random_params

from jaxcoder.export.hf_io import export_hf, import_hf
from jaxcoder.model import functional as F
from jaxcoder.model.config import ModelConfig, RopeConfig

ODD = dict(vocab_size=301, d_model=72, n_layers=3, n_heads=6, head_dim=12, d_ff=100, max_seq_len=1024,
           dtype="float32", init_std=0.05)
CASES = {
    "llama-gqa": ModelConfig(**ODD, n_kv_heads=2, norm="rmsnorm", mlp="swiglu", position="rope",
                             rope=RopeConfig(theta=10000.0)),
    "llama-linear-rope-untied": ModelConfig(**ODD, n_kv_heads=3, rope=RopeConfig(theta=1e5, scaling="linear",
                                                                                factor=4.0)),
    "llama-llama3-rope-bias": ModelConfig(**ODD, n_kv_heads=2, attn_bias=True, mlp_bias=True,
                                          rope=RopeConfig(theta=5e5, scaling="llama3", factor=8.0,
                                                          original_max_position=256)),
    "llama-yarn-rope-tied": ModelConfig(**ODD, n_kv_heads=1, tie_embeddings=True,
                                        rope=RopeConfig(theta=1e4, scaling="yarn", factor=4.0,
                                                        original_max_position=256)),
    "starcoder2-gqa-window": ModelConfig(**ODD, n_kv_heads=2, norm="layernorm", norm_eps=1e-5, mlp="gelu",
                                         attn_bias=True, mlp_bias=True, position="rope", sliding_window=100,
                                         tie_embeddings=True, rope=RopeConfig(theta=1e6)),
    "starcoder2-untied-nobias": ModelConfig(**ODD, n_kv_heads=3, norm="layernorm", norm_eps=1e-5, mlp="gelu",
                                            position="rope", sliding_window=200, tie_embeddings=False),
    "gpt_bigcode-mqa": ModelConfig(**{**ODD, "head_dim": 12}, n_kv_heads=1, norm="layernorm", norm_eps=1e-5,
                                   mlp="gelu", attn_bias=True, mlp_bias=True, position="learned",
                                   tie_embeddings=True),
    "gpt_bigcode-mha": ModelConfig(**ODD, n_kv_heads=6, norm="layernorm", norm_eps=1e-5, mlp="gelu",
                                   attn_bias=True, mlp_bias=True, position="learned", tie_embeddings=True),
}
EXPECTED_ARCH = {"llama": "LlamaForCausalLM", "starcoder2": "Starcoder2ForCausalLM",
                 "gpt_bigcode": "GPTBigCodeForCausalLM"}


def hf_logits(model_dir, tokens):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    with torch.no_grad():
        return type(model).__name__, model(torch.tensor(tokens)).logits.numpy()


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(hf, tmp_path, case):
    cfg = CASES[case]
    params = random_params(F.init_params(cfg, 0), seed=1)
    export_hf(cfg, params, tmp_path, special_tokens={"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0})
    tokens = np.random.default_rng(2).integers(0, cfg.vocab_size, (2, 520))
    name, ref = hf_logits(tmp_path, tokens)
    assert name == EXPECTED_ARCH[case.split("-")[0]]
    ours = np.asarray(F.forward(cfg, params, jnp.asarray(tokens)))
    assert np.abs(ours - ref).max() < 1e-4
    assert (ours.argmax(-1) == ref.argmax(-1)).mean() > 0.999


@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_is_bitwise(tmp_path, case):
    cfg = CASES[case]
    params = random_params(F.init_params(cfg, 0), seed=3)
    export_hf(cfg, params, tmp_path)
    cfg2, params2, _ = import_hf(tmp_path)
    assert cfg2 == cfg
    assert jax.tree.structure(params2) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2), strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_sharded_export_has_an_index_and_loads_identically(hf, tmp_path):
    cfg = CASES["llama-gqa"]
    params = random_params(F.init_params(cfg, 0), seed=4)
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    export_hf(cfg, params, single)
    summary = export_hf(cfg, params, sharded, max_shard_size="100KB")
    assert "model.safetensors.index.json" in summary["files"] and len(summary["files"]) > 3
    tokens = np.random.default_rng(5).integers(0, cfg.vocab_size, (1, 64))
    assert np.array_equal(hf_logits(single, tokens)[1], hf_logits(sharded, tokens)[1])
    _, params2, _ = import_hf(sharded)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(params2), strict=True))


def test_import_of_a_transformers_saved_model(hf, tmp_path):
    """A directory written by transformers itself (not by us) imports and matches its logits."""
    import torch
    from transformers import Starcoder2Config, Starcoder2ForCausalLM

    torch.manual_seed(0)
    hf_cfg = Starcoder2Config(vocab_size=257, hidden_size=48, intermediate_size=96, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                              sliding_window=32, bos_token_id=0, eos_token_id=0)
    model = Starcoder2ForCausalLM(hf_cfg).eval()
    model.save_pretrained(tmp_path)
    cfg, params, special = import_hf(tmp_path)
    assert (cfg.sliding_window, cfg.n_kv_heads, special["eos_token_id"]) == (32, 2, 0)
    tokens = np.random.default_rng(6).integers(0, 257, (1, 100))
    with torch.no_grad():
        ref = model(torch.tensor(tokens)).logits.numpy()
    ours = np.asarray(F.forward(cfg.replace(dtype="float32"), params, jnp.asarray(tokens)))
    assert np.abs(ours - ref).max() < 1e-4
