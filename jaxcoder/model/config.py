"""Typed model configuration.

One frozen dataclass describes every supported architecture through feature fields
(norm, MLP, positions, attention heads, window, ...). Layers receive this object, never
the whole run config, and never branch on a model's name.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from jaxcoder.fields import ConfigError, build, check, field

__all__ = ["ConfigError", "ModelConfig", "RopeConfig"]

NORMS = ("rmsnorm", "layernorm")
MLPS = ("swiglu", "gelu")
POSITIONS = ("rope", "learned")
ROPE_SCALINGS = ("none", "linear", "llama3", "yarn")
REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch")
ATTENTION_IMPLS = ("auto", "xla", "pallas", "splash", "cudnn")
DTYPES = ("float32", "bfloat16", "float16")




@dataclasses.dataclass(frozen=True)
class RopeConfig:
    """Rotary embedding settings, in Hugging Face's half-rotation layout.

    `scaling` selects how inverse frequencies are rescaled for longer contexts:
    `linear` (positions divided by `factor`, DeepSeek-Coder), `llama3` and `yarn`.
    """

    theta: float = field(10000.0, gt=0)
    scaling: str = field("none", choices=ROPE_SCALINGS)
    factor: float = field(1.0, gt=0)
    original_max_position: int | None = field(None, ge=1)
    low_freq_factor: float = field(1.0, gt=0)
    high_freq_factor: float = field(4.0, gt=0)
    beta_fast: float = field(32.0, gt=0)
    beta_slow: float = field(1.0, gt=0)
    attention_factor: float | None = field(None, gt=0)
    # YaRN's attention factor from two mscales (DeepSeek-V2/V3 style) and whether the correction
    # range is rounded to whole dimensions (Hugging Face's `truncate`, default True).
    mscale: float | None = field(None, ge=0)
    mscale_all_dim: float | None = field(None, ge=0)
    truncate: bool = True

    def __post_init__(self):
        check(self, "model.rope")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Decoder-only transformer covering the GPTBigCode, StarCoder2 and Llama families."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    d_ff: int
    max_seq_len: int
    norm: str = "rmsnorm"
    norm_eps: float = 1e-6
    mlp: str = "swiglu"
    attn_bias: bool = False
    mlp_bias: bool = False
    position: str = "rope"
    rope: RopeConfig = RopeConfig()
    sliding_window: int | None = None
    tie_embeddings: bool = False
    init_std: float = field(0.02, gt=0)
    dtype: str = "bfloat16"
    param_dtype: str = "float32"
    remat: str = "full"
    scan_layers: bool = True
    attention_impl: str = "auto"

    def __post_init__(self):
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raises ConfigError naming the first bad field."""
        for name in ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff",
                     "max_seq_len"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ConfigError(f"model.{name} must be a positive integer, got {value!r}")
        check(self, "model")
        _choice("norm", self.norm, NORMS)
        _choice("mlp", self.mlp, MLPS)
        _choice("position", self.position, POSITIONS)
        _choice("rope.scaling", self.rope.scaling, ROPE_SCALINGS)
        _choice("remat", self.remat, REMAT_POLICIES)
        _choice("attention_impl", self.attention_impl, ATTENTION_IMPLS)
        _choice("dtype", self.dtype, DTYPES)
        _choice("param_dtype", self.param_dtype, DTYPES)
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(
                f"model.n_heads ({self.n_heads}) must be a multiple of model.n_kv_heads ({self.n_kv_heads})")
        if self.position == "rope" and self.head_dim % 2:
            raise ConfigError(f"model.head_dim must be even for RoPE, got {self.head_dim}")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise ConfigError(f"model.sliding_window must be positive or None, got {self.sliding_window}")
        if self.norm_eps <= 0:
            raise ConfigError(f"model.norm_eps must be positive, got {self.norm_eps}")
        if self.rope.scaling != "none" and self.rope.factor <= 0:
            raise ConfigError(f"model.rope.factor must be positive, got {self.rope.factor}")
        if self.rope.scaling in ("llama3", "yarn") and not self.rope.original_max_position:
            raise ConfigError(f"model.rope.original_max_position is required for rope.scaling="
                              f"{self.rope.scaling!r}")

    # ------------------------------------------------------------- properties
    @property
    def q_per_kv(self) -> int:
        return self.n_heads // self.n_kv_heads

    def param_count(self) -> int:
        """Exact number of parameters, computed from the shapes (no allocation)."""
        d, f, v = self.d_model, self.d_ff, self.vocab_size
        q, kv = self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim
        attn = d * q + 2 * d * kv + q * d + (q + 2 * kv + d if self.attn_bias else 0)
        n_in = 2 if self.mlp == "swiglu" else 1
        mlp = n_in * d * f + f * d + ((n_in * f + d) if self.mlp_bias else 0)
        norm = d * (2 if self.norm == "layernorm" else 1)
        per_layer = attn + mlp + 2 * norm
        total = self.n_layers * per_layer + norm + v * d
        if not self.tie_embeddings:
            total += v * d
        if self.position == "learned":
            total += self.max_seq_len * d
        return total

    def mean_visible_keys(self, seq_len: int) -> float:
        """Mean number of keys a query attends to in a causal row of `seq_len` tokens: query i sees
        min(i + 1, window) keys (the window counts the query's own key, as in Hugging Face)."""
        w = min(seq_len, self.sliding_window or seq_len)
        return (w * (w + 1) / 2 + (seq_len - w) * w) / seq_len

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token: 6 per matmul weight plus attention (PaLM's convention).

        Embedding lookups cost no FLOPs, but the LM head matmul does, tied or not. Attention costs
        12·hd FLOPs per head, layer and visible (query, key) pair (QKᵀ and PV, forward and
        backward), counted over the pairs the causal mask and sliding window leave visible.
        """
        lookup = self.vocab_size * self.d_model * (0 if self.tie_embeddings else 1)
        if self.position == "learned":
            lookup += self.max_seq_len * self.d_model
        matmul_params = self.param_count() - lookup
        attn = 12 * self.n_layers * self.n_heads * self.head_dim * self.mean_visible_keys(seq_len)
        return 6 * matmul_params + attn

    # ------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Builds a config from a plain mapping (ConfigDict, JSON), rejecting unknown keys."""
        values = dict(values)
        rope = values.get("rope")
        if isinstance(rope, RopeConfig):
            values["rope"] = dataclasses.asdict(rope)
        return build(cls, values, "model")

    def replace(self, **changes: Any) -> ModelConfig:
        return dataclasses.replace(self, **changes)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ConfigError(f"model.{name} must be one of {', '.join(allowed)}; got {value!r}")


def human_count(n: float) -> str:
    """12_345_678 -> '12.35M'."""
    for unit, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.{max(0, 3 - int(math.log10(abs(n) / scale)) - 1)}f}{unit}"
    return str(int(n))
