"""Published architectures as ModelConfig presets, plus tiny ones for tests and the demo.

Sources: the BigCode Megatron launch scripts and Hugging Face configs (GPTBigCode), the
StarCoder2 paper and released configs, the DeepSeek-Coder paper and released configs; see
`shared/reference/code-llm-papers.md` section 4. `PUBLISHED_PARAMS` holds the totals the
authors (or the Hugging Face model pages, from the released safetensors) report.
"""

from __future__ import annotations

from jaxcoder.model.config import ModelConfig, RopeConfig

_GPT_BIGCODE = dict(norm="layernorm", norm_eps=1e-5, mlp="gelu", attn_bias=True, mlp_bias=True,
                    position="learned", tie_embeddings=True, n_kv_heads=1)
_STARCODER2 = dict(norm="layernorm", norm_eps=1e-5, mlp="gelu", attn_bias=True, mlp_bias=True,
                   position="rope", sliding_window=4096, max_seq_len=16384, vocab_size=49152)
_DEEPSEEK = dict(norm="rmsnorm", norm_eps=1e-6, mlp="swiglu", attn_bias=False, mlp_bias=False,
                 position="rope", tie_embeddings=False, vocab_size=32256, max_seq_len=16384,
                 rope=RopeConfig(theta=100000.0, scaling="linear", factor=4.0), init_std=0.02)


def _bigcode(layers, d, heads, ctx, vocab, std):
    return dict(_GPT_BIGCODE, n_layers=layers, d_model=d, n_heads=heads, head_dim=d // heads,
                d_ff=4 * d, max_seq_len=ctx, vocab_size=vocab, init_std=std)


def _sc2(layers, d, heads, kv, theta, std, tie):
    return dict(_STARCODER2, n_layers=layers, d_model=d, n_heads=heads, n_kv_heads=kv, head_dim=128,
                d_ff=4 * d, rope=RopeConfig(theta=theta), init_std=std, tie_embeddings=tie)


def _deepseek(layers, d, heads, kv, ff):
    return dict(_DEEPSEEK, n_layers=layers, d_model=d, n_heads=heads, n_kv_heads=kv, head_dim=128, d_ff=ff)


PRESETS: dict[str, dict] = {
    "santacoder-1.1b": _bigcode(24, 2048, 16, 2048, 49280, 0.022),
    "starcoderbase-1b": _bigcode(24, 2048, 16, 8192, 49152, 0.02209),
    "starcoderbase-3b": _bigcode(36, 2816, 22, 8192, 49152, 0.01884),
    "starcoderbase-7b": _bigcode(42, 4096, 32, 8192, 49152, 0.015625),
    "starcoderbase-15.5b": _bigcode(40, 6144, 48, 8192, 49152, 0.01275),
    # StarCoder2: 3B and 7B ship tied embeddings; 15B (trained with NeMo) ships an untied head.
    "starcoder2-3b": _sc2(30, 3072, 24, 2, 999999.4420358813, 0.018042, True),
    "starcoder2-7b": _sc2(32, 4608, 36, 4, 1000000.0, 0.018042, True),
    "starcoder2-15b": _sc2(40, 6144, 48, 4, 100000.0, 0.01275, False),
    "deepseek-coder-1.3b": _deepseek(24, 2048, 16, 16, 5504),
    "deepseek-coder-6.7b": _deepseek(32, 4096, 32, 32, 11008),
    "deepseek-coder-33b": _deepseek(62, 7168, 56, 8, 19200),
    # Tiny members of each line: same features, toy sizes (GQA ratio > 1 where the line allows).
    "santacoder-tiny": _bigcode(2, 64, 4, 1024, 512, 0.02),
    "starcoder2-tiny": dict(_sc2(2, 64, 4, 2, 10000.0, 0.02, True), head_dim=16, max_seq_len=512,
                            sliding_window=128, vocab_size=512),
    "deepseek-coder-tiny": dict(_deepseek(2, 64, 4, 2, 172), head_dim=16, vocab_size=512, max_seq_len=512),
}

# Totals as published. Named sizes ("1B") are rounded, so where the model page gives the
# count of the released safetensors, that is the figure used.
PUBLISHED_PARAMS: dict[str, float] = {
    "santacoder-1.1b": 1.12e9,         # HF model page, bigcode/gpt_bigcode-santacoder
    "starcoderbase-1b": 1.14e9,        # HF model page, bigcode/starcoderbase-1b
    "starcoderbase-3b": 3.04e9,        # HF model page, bigcode/starcoderbase-3b
    "starcoderbase-7b": 7.33e9,        # HF model page, bigcode/starcoderbase-7b
    "starcoderbase-15.5b": 15.5e9,     # StarCoder paper
    "starcoder2-3b": 3.03e9,           # HF model page, bigcode/starcoder2-3b
    "starcoder2-7b": 7.17e9,           # HF model page, bigcode/starcoder2-7b
    "starcoder2-15b": 16.0e9,          # HF model page, bigcode/starcoder2-15b ("16B")
    "deepseek-coder-1.3b": 1.35e9,     # HF model page, deepseek-coder-1.3b-base
    "deepseek-coder-6.7b": 6.74e9,     # HF model page, deepseek-coder-6.7b-base
    "deepseek-coder-33b": 33.3e9,      # HF model page, deepseek-coder-33b-base
}


def preset(name: str, **overrides) -> ModelConfig:
    """The ModelConfig of a preset, with optional field overrides."""
    if name not in PRESETS:
        raise KeyError(f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return ModelConfig(**{**PRESETS[name], **overrides})
