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


# ------------------------------------------------------------ tensor mapping
# Each architecture is a table of (jaxcoder parameter path, Hugging Face name, kind); one walker
# (`Architecture.to_hf` / `from_hf`) applies it. A row applies where the model has that parameter
# (biases, an untied head, learned positions). The kinds, for torch's [out, in] Linear weights:
#   w_in   a kernel whose first axis is the input ([d, H, hd], [d, f]): flatten the rest, transpose
#   w_out  a kernel whose last axis is the output ([H, hd, d]): flatten the rest, transpose
#   flat   a per-head bias ([H, hd]): flattened
#   copy   a vector or an embedding table: as it is
Row = tuple[str, str, str]


def _t(x) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).T)


_TO_HF = {"w_in": lambda x: _t(x.reshape(x.shape[0], -1)), "w_out": lambda x: _t(x.reshape(-1, x.shape[-1])),
          "flat": lambda x: x.reshape(-1), "copy": lambda x: x}
_FROM_HF = {"w_in": lambda y, shape: _t(y).reshape(shape), "w_out": lambda y, shape: _t(y).reshape(shape),
            "flat": lambda y, shape: np.asarray(y).reshape(shape), "copy": lambda y, shape: y}


def _attention(p: str) -> tuple[Row, ...]:
    """q/k/v/o projections named `<p>{q,k,v,o}_proj` (Llama, Starcoder2)."""
    return (*((f"attn.w{n}", f"{p}{n}_proj.weight", "w_in") for n in "qkv"),
            ("attn.wo", f"{p}o_proj.weight", "w_out"),
            *((f"attn.b{n}", f"{p}{n}_proj.bias", "flat") for n in "qkv"), ("attn.bo", f"{p}o_proj.bias", "copy"))


def _norms(first: str, second: str) -> tuple[Row, ...]:
    return tuple((f"{ours}.{part}", f"{theirs}.{name}", "copy") for ours, theirs in (("attn_norm", first),
                 ("mlp_norm", second)) for part, name in (("scale", "weight"), ("bias", "bias")))


def _get(tree: dict, path: str):
    for key in path.split("."):
        if not isinstance(tree, dict) or key not in tree:
            return None
        tree = tree[key]
    return tree


def _put(tree: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        tree = tree.setdefault(key, {})
    tree[last] = value


def _zeros_like(tree):
    return {k: (_zeros_like(v) if isinstance(v, dict) else np.zeros(v.shape, np.float32)) for k, v in tree.items()}


# -------------------------------------------------------------- architecture
class Architecture:
    """Base class: subclasses name themselves, say what they require and give their tables."""

    name: str
    model_type: str
    required: dict[str, str] = {}  # config field -> the only value this architecture supports
    layer_prefix = "model.layers.{i}."
    top: tuple[Row, ...] = (("embed.embedding", "model.embed_tokens.weight", "copy"),
                            *((f"final_norm.{ours}", f"model.norm.{theirs}", "copy")
                              for ours, theirs in (("scale", "weight"), ("bias", "bias"))),
                            ("lm_head", "lm_head.weight", "w_in"))
    layer: tuple[Row, ...] = ()

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

    def _rows(self, cfg: ModelConfig):
        """(jaxcoder path with a layer index, HF name, kind) for every tensor of the model."""
        yield from ((path, name, kind, None) for path, name, kind in self.top)
        for i in range(cfg.n_layers):
            prefix = self.layer_prefix.format(i=i)
            yield from ((f"blocks.{path}", prefix + name, kind, i) for path, name, kind in self.layer)

    def to_hf(self, cfg: ModelConfig, params: dict) -> StateDict:
        self.check(cfg)
        sd: StateDict = {}
        for path, name, kind, i in self._rows(cfg):
            value = _get(params, path)
            if value is not None:
                sd[name] = _TO_HF[kind](np.asarray(value if i is None else value[i]))
        sd.update(self.extra_to_hf(cfg, params))
        return sd

    def from_hf(self, cfg: ModelConfig, sd: StateDict) -> dict:
        from jaxcoder.model.functional import abstract_params

        self.check(cfg)
        missing = sorted(set(self.to_hf_keys(cfg)) - set(sd))
        if missing:
            raise ExportError(f"checkpoint lacks {len(missing)} tensor(s) {self.name} needs, e.g. {missing[:3]}")
        shapes = abstract_params(cfg)
        params: dict = {}
        layers: dict[str, list] = {}
        for path, name, kind, i in self._rows(cfg):
            shape = _get(shapes, path)
            if shape is None:
                continue
            if i is None:
                _put(params, path, _FROM_HF[kind](sd[name], shape.shape))
            else:
                layers.setdefault(path, []).append(_FROM_HF[kind](sd[name], shape.shape[1:]))
        for path, values in layers.items():
            _put(params, path, np.stack(values))
        for path, value in self.extra_from_hf(cfg, sd).items():
            _put(params, path, value)
        return params

    def extra_to_hf(self, cfg: ModelConfig, params: dict) -> StateDict:
        """Tensors a one-to-one row cannot map (GPTBigCode's fused QKV)."""
        return {}

    def extra_from_hf(self, cfg: ModelConfig, sd: StateDict) -> dict:
        """{jaxcoder path: array} for what `extra_to_hf` writes."""
        return {}

    def to_hf_keys(self, cfg: ModelConfig) -> list[str]:
        from jaxcoder.model.functional import abstract_params
        return list(self.to_hf(cfg, _zeros_like(abstract_params(cfg))))

    def _common_json(self, cfg: ModelConfig) -> dict:
        return {"architectures": [self.name], "model_type": self.model_type, "vocab_size": cfg.vocab_size,
                "tie_word_embeddings": cfg.tie_embeddings, "initializer_range": cfg.init_std,
                "torch_dtype": "float32", "use_cache": True}

    def _llama_style_json(self, cfg: ModelConfig) -> dict:
        """The size fields Llama and Starcoder2 configs share."""
        return {**self._common_json(cfg), "hidden_size": cfg.d_model, "intermediate_size": cfg.d_ff,
                "num_hidden_layers": cfg.n_layers, "num_attention_heads": cfg.n_heads,
                "num_key_value_heads": cfg.n_kv_heads, "head_dim": cfg.head_dim,
                "max_position_embeddings": cfg.max_seq_len, "attention_dropout": 0.0, **_rope_json(cfg)}


def _llama_style_shape(hf: dict) -> dict:
    """The size fields Llama and Starcoder2 configs share."""
    h = hf["num_attention_heads"]
    return dict(vocab_size=hf["vocab_size"], d_model=hf["hidden_size"], n_layers=hf["num_hidden_layers"], n_heads=h,
                n_kv_heads=hf.get("num_key_value_heads") or h, head_dim=hf.get("head_dim") or hf["hidden_size"] // h,
                d_ff=hf["intermediate_size"], max_seq_len=hf["max_position_embeddings"])


class Llama(Architecture):
    """LlamaForCausalLM: the DeepSeek-Coder line (RMSNorm, SwiGLU, RoPE, usually no biases)."""

    name, model_type = "LlamaForCausalLM", "llama"
    required = {"norm": "rmsnorm", "mlp": "swiglu", "position": "rope"}
    layer = (*_attention("self_attn."),
             *((f"mlp.{ours}", f"mlp.{theirs}.weight", "w_in") for ours, theirs in
               (("wi_gate", "gate_proj"), ("wi_up", "up_proj"), ("wo", "down_proj"))),
             *((f"mlp.{ours}", f"mlp.{theirs}.bias", "copy") for ours, theirs in
               (("bi_gate", "gate_proj"), ("bi_up", "up_proj"), ("bo", "down_proj"))),
             *_norms("input_layernorm", "post_attention_layernorm"))

    def extra_problems(self, cfg):
        if cfg.sliding_window is not None:
            return [f"sliding_window={cfg.sliding_window} (Llama has no sliding window)"]
        return []

    def config_json(self, cfg):
        return {**self._llama_style_json(cfg), "hidden_act": "silu", "rms_norm_eps": cfg.norm_eps,
                "attention_bias": cfg.attn_bias, "mlp_bias": cfg.mlp_bias}

    def model_config(self, hf):
        return ModelConfig(
            **_llama_style_shape(hf), norm="rmsnorm", norm_eps=hf.get("rms_norm_eps", 1e-6), mlp="swiglu",
            attn_bias=hf.get("attention_bias", False), mlp_bias=hf.get("mlp_bias", False), position="rope",
            rope=rope_from_hf(hf), tie_embeddings=hf.get("tie_word_embeddings", False),
            init_std=hf.get("initializer_range", 0.02))


class Starcoder2(Architecture):
    """Starcoder2ForCausalLM: LayerNorm with bias, GELU-tanh MLP, RoPE, GQA, sliding window."""

    name, model_type = "Starcoder2ForCausalLM", "starcoder2"
    required = {"norm": "layernorm", "mlp": "gelu", "position": "rope"}
    layer = (*_attention("self_attn."),
             ("mlp.wi", "mlp.c_fc.weight", "w_in"), ("mlp.wo", "mlp.c_proj.weight", "w_in"),
             ("mlp.bi", "mlp.c_fc.bias", "copy"), ("mlp.bo", "mlp.c_proj.bias", "copy"),
             *_norms("input_layernorm", "post_attention_layernorm"))

    def extra_problems(self, cfg):
        if cfg.attn_bias != cfg.mlp_bias:
            return [f"attn_bias={cfg.attn_bias} != mlp_bias={cfg.mlp_bias} (one use_bias flag covers both)"]
        return []

    def config_json(self, cfg):
        return {**self._llama_style_json(cfg), "hidden_act": "gelu_pytorch_tanh", "norm_epsilon": cfg.norm_eps,
                "use_bias": cfg.attn_bias, "sliding_window": cfg.sliding_window, "residual_dropout": 0.0,
                "embedding_dropout": 0.0}

    def model_config(self, hf):
        bias = hf.get("use_bias", True)
        return ModelConfig(
            **_llama_style_shape(hf), norm="layernorm", norm_eps=hf.get("norm_epsilon", 1e-5), mlp="gelu",
            attn_bias=bias, mlp_bias=bias, position="rope", rope=rope_from_hf(hf),
            sliding_window=hf.get("sliding_window"), tie_embeddings=hf.get("tie_word_embeddings", True),
            init_std=hf.get("initializer_range", 0.02))


class GPTBigCode(Architecture):
    """GPTBigCodeForCausalLM: SantaCoder / StarCoderBase (MQA or MHA, learned positions, fused QKV)."""

    name, model_type = "GPTBigCodeForCausalLM", "gpt_bigcode"
    layer_prefix = "transformer.h.{i}."
    top = (("embed.embedding", "transformer.wte.weight", "copy"),
           ("pos_embed.embedding", "transformer.wpe.weight", "copy"),
           *((f"final_norm.{ours}", f"transformer.ln_f.{theirs}", "copy") for ours, theirs in
             (("scale", "weight"), ("bias", "bias"))))
    layer = (("attn.wo", "attn.c_proj.weight", "w_out"), ("attn.bo", "attn.c_proj.bias", "copy"),
             ("mlp.wi", "mlp.c_fc.weight", "w_in"), ("mlp.bi", "mlp.c_fc.bias", "copy"),
             ("mlp.wo", "mlp.c_proj.weight", "w_in"), ("mlp.bo", "mlp.c_proj.bias", "copy"),
             *_norms("ln_1", "ln_2"))

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

    def _fuse(self, cfg, q, k, v, lead: int):
        """[.., H, hd] q and [.., KV, hd] k/v -> the c_attn output layout."""
        lead_shape = q.shape[:lead]
        if cfg.n_kv_heads == 1:  # [q (H*hd) | k (hd) | v (hd)]
            return np.concatenate([x.reshape(*lead_shape, -1) for x in (q, k, v)], axis=-1)
        return np.stack([q, k, v], axis=-2).reshape(*lead_shape, -1)  # per head: [q_h | k_h | v_h]

    def _split(self, cfg, fused):
        lead, h, kv, hd = fused.shape[:-1], cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        if kv == 1:
            q, k, v = np.split(fused, [h * hd, h * hd + hd], axis=-1)
            return q.reshape(*lead, h, hd), k.reshape(*lead, 1, hd), v.reshape(*lead, 1, hd)
        qkv = fused.reshape(*lead, h, 3, hd)
        return qkv[..., 0, :], qkv[..., 1, :], qkv[..., 2, :]

    def extra_to_hf(self, cfg, params):
        a, out = params["blocks"]["attn"], {}
        for i in range(cfg.n_layers):
            p = self.layer_prefix.format(i=i)
            out[f"{p}attn.c_attn.weight"] = _t(self._fuse(cfg, *(np.asarray(a[n][i]) for n in ("wq", "wk", "wv")), 1))
            out[f"{p}attn.c_attn.bias"] = self._fuse(cfg, *(np.asarray(a[n][i]) for n in ("bq", "bk", "bv")), 0)
        return out

    def extra_from_hf(self, cfg, sd):
        parts = {n: [] for n in ("wq", "wk", "wv", "bq", "bk", "bv")}
        for i in range(cfg.n_layers):
            p = self.layer_prefix.format(i=i)
            for names, fused in ((("wq", "wk", "wv"), _t(sd[f"{p}attn.c_attn.weight"])),
                                 (("bq", "bk", "bv"), sd[f"{p}attn.c_attn.bias"])):
                for n, value in zip(names, self._split(cfg, fused), strict=True):
                    parts[n].append(value)
        return {f"blocks.attn.{n}": np.stack(v) for n, v in parts.items()}


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
