"""Hugging Face architectures jaxcoder exports to and imports from.

Each architecture knows (1) which jaxcoder configs it can express, (2) how to write and read
its `config.json`, and (3) how parameter tensors map both ways. Mappings are transposes and
reshapes only (jaxcoder uses HF's RoPE layout), so a round trip is bitwise exact.

torch `Linear.weight` is [out, in]; jaxcoder kernels are [in, ...out].
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from jaxcoder.model.config import ModelConfig, RopeConfig

StateDict = dict[str, np.ndarray]


class ExportError(ValueError):
    """The config cannot be expressed by the requested Hugging Face architecture."""


# ---------------------------------------------------------------- rope <-> HF
def rope_to_hf(rope: RopeConfig) -> dict:
    params = {"rope_type": "default" if rope.scaling == "none" else rope.scaling, "rope_theta": rope.theta}
    if rope.scaling != "none":
        params["factor"] = rope.factor
    if rope.scaling in ("llama3", "yarn"):
        params["original_max_position_embeddings"] = rope.original_max_position
    if rope.scaling == "llama3":
        params.update(low_freq_factor=rope.low_freq_factor, high_freq_factor=rope.high_freq_factor)
    if rope.scaling == "yarn":
        params.update(beta_fast=rope.beta_fast, beta_slow=rope.beta_slow)
        for name in ("attention_factor", "mscale", "mscale_all_dim"):
            if getattr(rope, name) is not None:
                params[name] = getattr(rope, name)
        if not rope.truncate:
            params["truncate"] = False
    return params


# The rope parameters each scaling reads (besides rope_type / type / rope_theta); anything else in
# config.json would change the model in a way jaxcoder would not reproduce, so it is refused.
_ROPE_KEYS = {"default": set(), "linear": {"factor"},
              "llama3": {"factor", "original_max_position_embeddings", "low_freq_factor", "high_freq_factor"},
              "yarn": {"factor", "original_max_position_embeddings", "beta_fast", "beta_slow", "attention_factor",
                       "mscale", "mscale_all_dim", "truncate"}}


def rope_from_hf(hf: dict) -> RopeConfig:
    # transformers 5 writes `rope_parameters`; 4.x wrote `rope_theta` + `rope_scaling`.
    params = dict(hf.get("rope_parameters") or {})
    legacy = hf.get("rope_scaling") or {}
    theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
    kind = params.get("rope_type") or legacy.get("rope_type") or legacy.get("type") or "default"
    merged = {**legacy, **params}
    if kind not in _ROPE_KEYS:
        raise ExportError(f"rope_type {kind!r} in config.json is not supported (linear, llama3, yarn are)")
    partial = merged.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    unknown = sorted(set(merged) - _ROPE_KEYS[kind] - {"rope_type", "type", "rope_theta", "partial_rotary_factor"})
    if unknown or partial not in (None, 1, 1.0):
        fields = [*unknown, *(["partial_rotary_factor"] if partial not in (None, 1, 1.0) else [])]
        raise ExportError(f"config.json rope parameter(s) {', '.join(fields)} (rope_type {kind!r}) are not "
                          "supported; jaxcoder would compute a different RoPE")
    if kind == "default":
        return RopeConfig(theta=float(theta))
    defaults = RopeConfig()
    original = merged.get("original_max_position_embeddings")
    factor = merged.get("factor")
    if factor is None and kind == "yarn" and original:  # transformers' rule (DeepSeek-V3 configs)
        factor = hf["max_position_embeddings"] / original
    return RopeConfig(
        theta=float(theta), scaling=kind, factor=float(1.0 if factor is None else factor),
        original_max_position=original,
        low_freq_factor=float(merged.get("low_freq_factor", defaults.low_freq_factor)),
        high_freq_factor=float(merged.get("high_freq_factor", defaults.high_freq_factor)),
        beta_fast=float(merged.get("beta_fast") or defaults.beta_fast),
        beta_slow=float(merged.get("beta_slow") or defaults.beta_slow),
        attention_factor=merged.get("attention_factor"), mscale=merged.get("mscale"),
        mscale_all_dim=merged.get("mscale_all_dim"), truncate=bool(merged.get("truncate", True)))


def _rope_json(cfg: ModelConfig) -> dict:
    params = rope_to_hf(cfg.rope)
    out = {"rope_parameters": params, "rope_theta": cfg.rope.theta}
    if cfg.rope.scaling != "none":  # older consumers (transformers 4.x, vLLM) read rope_scaling
        out["rope_scaling"] = {k: v for k, v in params.items() if k != "rope_theta"}
    return out


# ------------------------------------------------------------ tensor helpers
def _layer(params: dict, i: int) -> dict:
    return {k: (_layer(v, i) if isinstance(v, dict) else np.asarray(v[i])) for k, v in params.items()}


def _stack(layers: list[dict]) -> dict:
    return {k: (_stack([lyr[k] for lyr in layers]) if isinstance(layers[0][k], dict)
                else np.stack([lyr[k] for lyr in layers])) for k in layers[0]}


def _t(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).T)


def _attn_to_hf(a: dict, p: str, bias: bool) -> StateDict:
    d = a["wq"].shape[0]
    out = {f"{p}q_proj.weight": _t(a["wq"].reshape(d, -1)), f"{p}k_proj.weight": _t(a["wk"].reshape(d, -1)),
           f"{p}v_proj.weight": _t(a["wv"].reshape(d, -1)), f"{p}o_proj.weight": _t(a["wo"].reshape(-1, d))}
    if bias:
        out.update({f"{p}q_proj.bias": a["bq"].reshape(-1), f"{p}k_proj.bias": a["bk"].reshape(-1),
                    f"{p}v_proj.bias": a["bv"].reshape(-1), f"{p}o_proj.bias": np.asarray(a["bo"])})
    return out


def _attn_from_hf(sd: StateDict, p: str, cfg: ModelConfig, bias: bool) -> dict:
    d, h, kv, hd = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    out = {"wq": _t(sd[f"{p}q_proj.weight"]).reshape(d, h, hd), "wk": _t(sd[f"{p}k_proj.weight"]).reshape(d, kv, hd),
           "wv": _t(sd[f"{p}v_proj.weight"]).reshape(d, kv, hd), "wo": _t(sd[f"{p}o_proj.weight"]).reshape(h, hd, d)}
    if bias:
        out.update(bq=sd[f"{p}q_proj.bias"].reshape(h, hd), bk=sd[f"{p}k_proj.bias"].reshape(kv, hd),
                   bv=sd[f"{p}v_proj.bias"].reshape(kv, hd), bo=sd[f"{p}o_proj.bias"])
    return out


def _norm_to_hf(n: dict, p: str) -> StateDict:
    out = {f"{p}.weight": np.asarray(n["scale"])}
    if "bias" in n:
        out[f"{p}.bias"] = np.asarray(n["bias"])
    return out


def _norm_from_hf(sd: StateDict, p: str, with_bias: bool) -> dict:
    return {"scale": sd[f"{p}.weight"], **({"bias": sd[f"{p}.bias"]} if with_bias else {})}


# -------------------------------------------------------------- architecture
class Architecture:
    """Base class: subclasses fill in the names and the per-layer mapping."""

    name: str
    model_type: str
    required: dict[str, str] = {}  # config field -> the only value this architecture supports

    def problems(self, cfg: ModelConfig) -> list[str]:
        """Why this architecture cannot express `cfg` (empty when it can)."""
        out = [f"{field}={getattr(cfg, field)!r} (needs {value!r})" for field, value in self.required.items()
               if getattr(cfg, field) != value]
        return out + self.extra_problems(cfg)

    def extra_problems(self, cfg: ModelConfig) -> list[str]:
        return []

    def check(self, cfg: ModelConfig) -> None:
        problems = self.problems(cfg)
        if problems:
            raise ExportError(f"{self.name} cannot express this model: " + "; ".join(problems))

    def config_json(self, cfg: ModelConfig) -> dict:
        raise NotImplementedError

    def model_config(self, hf: dict) -> ModelConfig:
        raise NotImplementedError

    def layer_to_hf(self, cfg: ModelConfig, layer: dict, p: str) -> StateDict:
        raise NotImplementedError

    def layer_from_hf(self, cfg: ModelConfig, sd: StateDict, p: str) -> dict:
        raise NotImplementedError

    layer_prefix = "model.layers.{i}."
    embed_key = "model.embed_tokens.weight"
    final_norm_key = "model.norm"

    def to_hf(self, cfg: ModelConfig, params: dict) -> StateDict:
        self.check(cfg)
        sd: StateDict = {self.embed_key: np.asarray(params["embed"]["embedding"])}
        for i in range(cfg.n_layers):
            sd.update(self.layer_to_hf(cfg, _layer(params["blocks"], i), self.layer_prefix.format(i=i)))
        sd.update(_norm_to_hf(params["final_norm"], self.final_norm_key))
        if not cfg.tie_embeddings:
            sd["lm_head.weight"] = _t(params["lm_head"])
        sd.update(self.extra_to_hf(cfg, params))
        return sd

    def from_hf(self, cfg: ModelConfig, sd: StateDict) -> dict:
        self.check(cfg)
        missing = sorted(set(self.to_hf_keys(cfg)) - set(sd))
        if missing:
            raise ExportError(f"checkpoint lacks {len(missing)} tensor(s) {self.name} needs, e.g. {missing[:3]}")
        params = {"embed": {"embedding": sd[self.embed_key]},
                  "blocks": _stack([self.layer_from_hf(cfg, sd, self.layer_prefix.format(i=i))
                                    for i in range(cfg.n_layers)]),
                  "final_norm": _norm_from_hf(sd, self.final_norm_key, cfg.norm == "layernorm")}
        if not cfg.tie_embeddings:
            params["lm_head"] = _t(sd["lm_head.weight"])
        params.update(self.extra_from_hf(cfg, sd))
        return params

    def extra_to_hf(self, cfg: ModelConfig, params: dict) -> StateDict:
        return {}

    def extra_from_hf(self, cfg: ModelConfig, sd: StateDict) -> dict:
        return {}

    def to_hf_keys(self, cfg: ModelConfig) -> list[str]:
        from jaxcoder.model.functional import abstract_params
        return list(self.to_hf(cfg, _zeros_like(abstract_params(cfg))))

    def _common_json(self, cfg: ModelConfig) -> dict:
        return {"architectures": [self.name], "model_type": self.model_type, "vocab_size": cfg.vocab_size,
                "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std,
                "torch_dtype": "float32", "use_cache": True}


def _llama_style_shape(hf: dict) -> dict:
    """The size fields Llama and Starcoder2 configs share."""
    h = hf["num_attention_heads"]
    return dict(vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=h,
                n_kv_heads=hf.get("num_key_value_heads") or h, head_dim=hf.get("head_dim") or hf["hidden_size"] // h,
                d_ff=hf["intermediate_size"], max_seq_len=hf["max_position_embeddings"])


def _zeros_like(tree):
    return {k: (_zeros_like(v) if isinstance(v, dict) else np.zeros(v.shape, np.float32)) for k, v in tree.items()}


class Llama(Architecture):
    """LlamaForCausalLM: the DeepSeek-Coder line (RMSNorm, SwiGLU, RoPE, usually no biases)."""

    name, model_type = "LlamaForCausalLM", "llama"
    required = {"norm": "rmsnorm", "mlp": "swiglu", "position": "rope"}

    def extra_problems(self, cfg):
        if cfg.sliding_window is not None:
            return [f"sliding_window={cfg.sliding_window} (Llama has no sliding window)"]
        return []

    def config_json(self, cfg):
        return {**self._common_json(cfg), "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
                "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
                "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim, "hidden_act": "silu",
                "max_position_embeddings": cfg.max_seq_len, "rms_norm_eps": cfg.norm_eps,
                "attention_bias": cfg.attn_bias, "mlp_bias": cfg.mlp_bias, "attention_dropout": 0.0,
                **_rope_json(cfg)}

    def model_config(self, hf):
        return ModelConfig(
            **_llama_style_shape(hf), norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), mlp="swiglu",
            attn_bias=hf.get("attention_bias", False), mlp_bias=hf.get("mlp_bias", False), position="rope",
            rope=rope_from_hf(hf), tie_embeddings=hf.get("tie_word_embeddings", False),
            init_std=hf.get("initializer_range", 0.02))

    def layer_to_hf(self, cfg, lyr, p):
        m = lyr["mlp"]
        out = {**_attn_to_hf(lyr["attn"], p + "self_attn.", cfg.attn_bias),
               f"{p}mlp.gate_proj.weight": _t(m["wi_gate"]), f"{p}mlp.up_proj.weight": _t(m["wi_up"]),
               f"{p}mlp.down_proj.weight": _t(m["wo"]),
               **_norm_to_hf(lyr["attn_norm"], p + "input_layernorm"),
               **_norm_to_hf(lyr["mlp_norm"], p + "post_attention_layernorm")}
        if cfg.mlp_bias:
            out.update({f"{p}mlp.gate_proj.bias": m["bi_gate"], f"{p}mlp.up_proj.bias": m["bi_up"],
                        f"{p}mlp.down_proj.bias": m["bo"]})
        return out

    def layer_from_hf(self, cfg, sd, p):
        mlp = {"wi_gate": _t(sd[f"{p}mlp.gate_proj.weight"]), "wi_up": _t(sd[f"{p}mlp.up_proj.weight"]),
               "wo": _t(sd[f"{p}mlp.down_proj.weight"])}
        if cfg.mlp_bias:
            mlp.update(bi_gate=sd[f"{p}mlp.gate_proj.bias"], bi_up=sd[f"{p}mlp.up_proj.bias"],
                       bo=sd[f"{p}mlp.down_proj.bias"])
        return {"attn": _attn_from_hf(sd, p + "self_attn.", cfg, cfg.attn_bias), "mlp": mlp,
                "attn_norm": _norm_from_hf(sd, p + "input_layernorm", False),
                "mlp_norm": _norm_from_hf(sd, p + "post_attention_layernorm", False)}


class Starcoder2(Architecture):
    """Starcoder2ForCausalLM: LayerNorm with bias, GELU-tanh MLP, RoPE, GQA, sliding window."""

    name, model_type = "Starcoder2ForCausalLM", "starcoder2"
    required = {"norm": "layernorm", "mlp": "gelu", "position": "rope"}

    def extra_problems(self, cfg):
        if cfg.attn_bias != cfg.mlp_bias:
            return [f"attn_bias={cfg.attn_bias} != mlp_bias={cfg.mlp_bias} (one use_bias flag covers both)"]
        return []

    def config_json(self, cfg):
        return {**self._common_json(cfg), "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
                "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
                "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
                "hidden_act": "gelu_pytorch_tanh", "max_position_embeddings": cfg.max_seq_len,
                "norm_epsilon": cfg.norm_eps, "use_bias": cfg.attn_bias, "sliding_window": cfg.sliding_window,
                "attention_dropout": 0.0, "residual_dropout": 0.0, "embedding_dropout": 0.0,
                **_rope_json(cfg)}

    def model_config(self, hf):
        bias = hf.get("use_bias", True)
        return ModelConfig(
            **_llama_style_shape(hf), norm="layernorm", norm_eps=hf.get("norm_epsilon", 1e-5), mlp="gelu",
            attn_bias=bias, mlp_bias=bias, position="rope", rope=rope_from_hf(hf),
            sliding_window=hf.get("sliding_window"), tie_embeddings=hf.get("tie_word_embeddings", True),
            init_std=hf.get("initializer_range", 0.02))

    def layer_to_hf(self, cfg, lyr, p):
        m = lyr["mlp"]
        out = {**_attn_to_hf(lyr["attn"], p + "self_attn.", cfg.attn_bias),
               f"{p}mlp.c_fc.weight": _t(m["wi"]), f"{p}mlp.c_proj.weight": _t(m["wo"]),
               **_norm_to_hf(lyr["attn_norm"], p + "input_layernorm"),
               **_norm_to_hf(lyr["mlp_norm"], p + "post_attention_layernorm")}
        if cfg.mlp_bias:
            out.update({f"{p}mlp.c_fc.bias": m["bi"], f"{p}mlp.c_proj.bias": m["bo"]})
        return out

    def layer_from_hf(self, cfg, sd, p):
        mlp = {"wi": _t(sd[f"{p}mlp.c_fc.weight"]), "wo": _t(sd[f"{p}mlp.c_proj.weight"])}
        if cfg.mlp_bias:
            mlp.update(bi=sd[f"{p}mlp.c_fc.bias"], bo=sd[f"{p}mlp.c_proj.bias"])
        return {"attn": _attn_from_hf(sd, p + "self_attn.", cfg, cfg.attn_bias), "mlp": mlp,
                "attn_norm": _norm_from_hf(sd, p + "input_layernorm", True),
                "mlp_norm": _norm_from_hf(sd, p + "post_attention_layernorm", True)}


class GPTBigCode(Architecture):
    """GPTBigCodeForCausalLM: SantaCoder / StarCoderBase (MQA or MHA, learned positions, fused QKV)."""

    name, model_type = "GPTBigCodeForCausalLM", "gpt_bigcode"
    layer_prefix = "transformer.h.{i}."
    embed_key = "transformer.wte.weight"
    final_norm_key = "transformer.ln_f"

    required = {"position": "learned", "norm": "layernorm", "mlp": "gelu"}

    def extra_problems(self, cfg):
        out = []
        if not (cfg.attn_bias and cfg.mlp_bias):
            out.append("biases are always present in GPTBigCode (needs attn_bias=mlp_bias=True)")
        if cfg.n_kv_heads not in (1, cfg.n_heads):
            out.append(f"n_kv_heads={cfg.n_kv_heads} (only multi-query, 1, or multi-head, {cfg.n_heads})")
        if cfg.n_heads * cfg.head_dim != cfg.d_model:
            out.append(f"n_heads*head_dim={cfg.n_heads * cfg.head_dim} != d_model={cfg.d_model}")
        if cfg.sliding_window is not None:
            out.append(f"sliding_window={cfg.sliding_window} (GPTBigCode has none)")
        if not cfg.tie_embeddings:
            out.append("tie_embeddings=False (the LM head is always tied)")
        return out

    def config_json(self, cfg):
        return {**self._common_json(cfg), "n_embd": cfg.d_model, "n_layer": cfg.n_layers, "n_head": cfg.n_heads,
                "n_inner": cfg.d_ff, "n_positions": cfg.max_seq_len, "multi_query": cfg.n_kv_heads == 1,
                "activation_function": "gelu_pytorch_tanh", "layer_norm_epsilon": cfg.norm_eps,
                "scale_attn_weights": True, "attention_softmax_in_fp32": True,
                "scale_attention_softmax_in_fp32": True, "attn_pdrop": 0.0, "resid_pdrop": 0.0,
                "embd_pdrop": 0.0}

    def model_config(self, hf):
        d, h = hf["n_embd"], hf["n_head"]
        if hf.get("activation_function", "gelu_pytorch_tanh") not in ("gelu_pytorch_tanh", "gelu_new"):
            raise ExportError(f"activation_function {hf['activation_function']!r} is not supported (tanh GELU is)")
        return ModelConfig(
            vocab_size=hf["vocab_size"], d_model=d, n_layers=hf["n_layer"], n_heads=h,
            n_kv_heads=1 if hf.get("multi_query", True) else h, head_dim=d // h, d_ff=hf.get("n_inner") or 4 * d,
            max_seq_len=hf["n_positions"], norm="layernorm", norm_eps=hf.get("layer_norm_epsilon", 1e-5),
            mlp="gelu", attn_bias=True, mlp_bias=True, position="learned", tie_embeddings=True,
            init_std=hf.get("initializer_range", 0.02))

    def _fuse(self, cfg, q, k, v, axis_in: int):
        """[.., H, hd] q and [.., KV, hd] k/v -> the c_attn output layout."""
        lead = q.shape[:axis_in]
        if cfg.n_kv_heads == 1:  # [q (H*hd) | k (hd) | v (hd)]
            return np.concatenate([q.reshape(*lead, -1), k.reshape(*lead, -1), v.reshape(*lead, -1)], axis=-1)
        return np.stack([q, k, v], axis=-2).reshape(*lead, -1)  # per head: [q_h | k_h | v_h]

    def _split(self, cfg, fused):
        lead, h, kv, hd = fused.shape[:-1], cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        if kv == 1:
            q, k, v = np.split(fused, [h * hd, h * hd + hd], axis=-1)
            return q.reshape(*lead, h, hd), k.reshape(*lead, 1, hd), v.reshape(*lead, 1, hd)
        qkv = fused.reshape(*lead, h, 3, hd)
        return qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]

    def layer_to_hf(self, cfg, lyr, p):
        a, m = lyr["attn"], lyr["mlp"]
        w = self._fuse(cfg, a["wq"], a["wk"], a["wv"], 1)
        b = self._fuse(cfg, a["bq"], a["bk"], a["bv"], 0)
        return {f"{p}attn.c_attn.weight": _t(w), f"{p}attn.c_attn.bias": b,
                f"{p}attn.c_proj.weight": _t(a["wo"].reshape(-1, cfg.d_model)), f"{p}attn.c_proj.bias": a["bo"],
                f"{p}mlp.c_fc.weight": _t(m["wi"]), f"{p}mlp.c_fc.bias": m["bi"],
                f"{p}mlp.c_proj.weight": _t(m["wo"]), f"{p}mlp.c_proj.bias": m["bo"],
                **_norm_to_hf(lyr["attn_norm"], p + "ln_1"), **_norm_to_hf(lyr["mlp_norm"], p + "ln_2")}

    def layer_from_hf(self, cfg, sd, p):
        wq, wk, wv = self._split(cfg, _t(sd[f"{p}attn.c_attn.weight"]))
        bq, bk, bv = self._split(cfg, sd[f"{p}attn.c_attn.bias"])
        return {"attn": {"wq": wq, "wk": wk, "wv": wv, "bq": bq, "bk": bk, "bv": bv,
                         "wo": _t(sd[f"{p}attn.c_proj.weight"]).reshape(cfg.n_heads, cfg.head_dim, cfg.d_model),
                         "bo": sd[f"{p}attn.c_proj.bias"]},
                "mlp": {"wi": _t(sd[f"{p}mlp.c_fc.weight"]), "bi": sd[f"{p}mlp.c_fc.bias"],
                        "wo": _t(sd[f"{p}mlp.c_proj.weight"]), "bo": sd[f"{p}mlp.c_proj.bias"]},
                "attn_norm": _norm_from_hf(sd, p + "ln_1", True), "mlp_norm": _norm_from_hf(sd, p + "ln_2", True)}

    def extra_to_hf(self, cfg, params):
        return {"transformer.wpe.weight": np.asarray(params["pos_embed"]["embedding"])}

    def extra_from_hf(self, cfg, sd):
        return {"pos_embed": {"embedding": sd["transformer.wpe.weight"]}}


ARCHITECTURES: dict[str, Callable[[], Architecture]] = {
    "llama": Llama, "starcoder2": Starcoder2, "gpt_bigcode": GPTBigCode}


def get_architecture(name: str) -> Architecture:
    """By jaxcoder name (llama, starcoder2, gpt_bigcode) or HF class name."""
    for key, cls in ARCHITECTURES.items():
        if name in (key, cls.name, cls.model_type):
            return cls()
    raise ExportError(f"unknown Hugging Face architecture {name!r}; choose from "
                      f"{', '.join(c.name for c in ARCHITECTURES.values())} or auto")


def choose_architecture(cfg: ModelConfig, requested: str = "auto") -> Architecture:
    """The requested architecture (checked), or the first one that can express `cfg`."""
    if requested != "auto":
        arch = get_architecture(requested)
        arch.check(cfg)
        return arch
    reasons = []
    for cls in ARCHITECTURES.values():
        arch = cls()
        problems = arch.problems(cfg)
        if not problems:
            return arch
        reasons.append(f"{arch.name}: " + "; ".join(problems))
    raise ExportError("no Hugging Face architecture can express this model:\n  " + "\n  ".join(reasons))
