"""Per-layer parity with the transformers modules (attention, MLP, whole block), so a failure names
the layer. Inputs are random hidden states; weights come from one exported random model."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from helpers import random_params

from jaxcoder.export.hf_io import export_hf
from jaxcoder.model import functional as F
from jaxcoder.model.config import ModelConfig, RopeConfig
from jaxcoder.model.rope import rope_tables

BASE = dict(vocab_size=97, d_model=40, n_layers=2, n_heads=4, head_dim=10, d_ff=72, max_seq_len=1024,
            dtype="float32", init_std=0.05)
ARCHS = {
    "llama": ModelConfig(**BASE, n_kv_heads=2, rope=RopeConfig(theta=1e4, scaling="linear", factor=2.0)),
    "starcoder2": ModelConfig(**BASE, n_kv_heads=2, norm="layernorm", norm_eps=1e-5, mlp="gelu", attn_bias=True,
                              mlp_bias=True, sliding_window=64, tie_embeddings=True),
    "gpt_bigcode": ModelConfig(**BASE, n_kv_heads=1, norm="layernorm", norm_eps=1e-5, mlp="gelu", attn_bias=True,
                               mlp_bias=True, position="learned", tie_embeddings=True),
}
T = 160  # longer than the starcoder2 window


@pytest.fixture(scope="module", params=sorted(ARCHS))
def pair(request, tmp_path_factory):
    import torch
    from transformers import AutoModelForCausalLM

    pytest.importorskip("transformers")
    cfg = ARCHS[request.param]
    params = random_params(F.init_params(cfg, 0), seed=7)
    out = tmp_path_factory.mktemp(request.param)
    export_hf(cfg, params, out)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    graphdef, stacked = nnx.split(F.bind(cfg, params).blocks)
    layer = nnx.merge(graphdef, jax.tree.map(lambda a: a[1], stacked))  # the second layer
    return request.param, cfg, model, layer


def _hf_layer(arch, model):
    return model.transformer.h[1] if arch == "gpt_bigcode" else model.model.layers[1]


def _inputs(cfg):
    import torch

    x = np.random.default_rng(8).standard_normal((2, T, cfg.d_model)).astype(np.float32)
    pos = np.broadcast_to(np.arange(T), (2, T))
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    allowed = (j <= i) & ((i - j) < cfg.sliding_window if cfg.sliding_window else True)
    mask = torch.tensor(np.where(allowed, 0.0, np.finfo(np.float32).min)[None, None].repeat(2, 0))
    rope = rope_tables(jnp.asarray(pos), cfg.rope, cfg.head_dim) if cfg.position == "rope" else None
    return x, pos, mask, rope


def _hf_rope(arch, model, x, pos):
    import torch

    if arch == "gpt_bigcode":
        return None
    return model.model.rotary_emb(torch.tensor(x), torch.tensor(pos))


def _close(ours, ref, what):
    err = np.abs(np.asarray(ours) - ref).max()
    assert err < 1e-5, f"{what}: max |difference| {err:.3g}"


def test_attention(pair):
    import torch

    arch, cfg, model, layer = pair
    x, pos, mask, rope = _inputs(cfg)
    hf_layer = _hf_layer(arch, model)
    seg = jnp.ones((2, T), jnp.int32)
    with torch.no_grad():
        if arch == "gpt_bigcode":
            ref = hf_layer.attn(torch.tensor(x), attention_mask=mask)[0].numpy()
        else:
            ref = hf_layer.self_attn(torch.tensor(x), position_embeddings=_hf_rope(arch, model, x, pos),
                                     attention_mask=mask)[0].numpy()
    _close(layer.attn(jnp.asarray(x), seg, rope), ref, f"{arch} attention")


def test_mlp(pair):
    import torch

    arch, cfg, model, layer = pair
    x, *_ = _inputs(cfg)
    with torch.no_grad():
        ref = _hf_layer(arch, model).mlp(torch.tensor(x)).numpy()
    _close(layer.mlp(jnp.asarray(x)), ref, f"{arch} mlp")


def test_norms(pair):
    import torch

    arch, cfg, model, layer = pair
    x, *_ = _inputs(cfg)
    hf_layer = _hf_layer(arch, model)
    first = hf_layer.ln_1 if arch == "gpt_bigcode" else hf_layer.input_layernorm
    with torch.no_grad():
        ref = first(torch.tensor(x)).numpy()
    _close(layer.attn_norm(jnp.asarray(x)), ref, f"{arch} norm")


def test_block(pair):
    import torch

    arch, cfg, model, layer = pair
    x, pos, mask, rope = _inputs(cfg)
    hf_layer = _hf_layer(arch, model)
    with torch.no_grad():
        if arch == "gpt_bigcode":
            out = hf_layer(torch.tensor(x), attention_mask=mask)
        else:
            out = hf_layer(torch.tensor(x), attention_mask=mask, position_ids=torch.tensor(pos),
                           position_embeddings=_hf_rope(arch, model, x, pos))
    ref = (out[0] if isinstance(out, tuple) else out).numpy()
    _close(layer(jnp.asarray(x), jnp.ones((2, T), jnp.int32), rope), ref, f"{arch} block")
