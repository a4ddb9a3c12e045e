"""Writing and reading Hugging Face model directories (safetensors only, never pickle)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import ml_dtypes
import numpy as np
from safetensors.numpy import load_file, save_file

from jaxcoder.export.architectures import ExportError, choose_architecture, get_architecture
from jaxcoder.fields import ConfigError, check, field
from jaxcoder.model.config import ModelConfig

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
_DTYPES = {"float32": np.float32, "bfloat16": ml_dtypes.bfloat16, "float16": np.float16}


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """The `export` section (the command's flags override it)."""

    architecture: str = field("auto", choices=("auto", "llama", "starcoder2", "gpt_bigcode"))
    dtype: str = field("float32", choices=tuple(_DTYPES))
    max_shard_size: str = "5GB"

    def __post_init__(self):
        check(self, "export")
        try:
            if parse_size(self.max_shard_size) <= 0:
                raise ValueError
        except ValueError:
            raise ConfigError(f"export.max_shard_size must be a positive size such as 5GB or 500MB; "
                              f"got {self.max_shard_size!r}") from None


def parse_size(size: str | int) -> int:
    """'5GB' -> bytes; ints pass through."""
    if isinstance(size, int):
        return size
    s = size.strip().upper()
    for unit, mult in (("GIB", 2**30), ("MIB", 2**20), ("KIB", 2**10), ("GB", 10**9), ("MB", 10**6),
                       ("KB", 10**3), ("B", 1)):
        if s.endswith(unit):
            return int(float(s[: -len(unit)]) * mult)
    return int(s)


def save_state_dict(sd: dict[str, np.ndarray], out_dir: Path, max_shard_bytes: int) -> list[str]:
    """Writes one file, or shards plus an index when the total exceeds `max_shard_bytes`."""
    total = sum(a.nbytes for a in sd.values())
    meta = {"format": "pt"}
    if total <= max_shard_bytes:
        save_file(sd, str(out_dir / SINGLE_NAME), metadata=meta)
        return [SINGLE_NAME]
    shards: list[dict[str, np.ndarray]] = [{}]
    size = 0
    for name in sd:  # keep insertion order so a layer's tensors stay together
        nbytes = sd[name].nbytes
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = sd[name]
        size += nbytes
    files, weight_map = [], {}
    for k, shard in enumerate(shards, start=1):
        fname = f"model-{k:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, str(out_dir / fname), metadata=meta)
        files.append(fname)
        weight_map.update(dict.fromkeys(shard, fname))
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2))
    return files + [INDEX_NAME]


def load_state_dict(model_dir: Path) -> dict[str, np.ndarray]:
    """Reads a single-file or sharded safetensors checkpoint; refuses pickle-only directories."""
    if (model_dir / INDEX_NAME).exists():
        weight_map = json.loads((model_dir / INDEX_NAME).read_text())["weight_map"]
        sd: dict[str, np.ndarray] = {}
        for fname in sorted(set(weight_map.values())):
            sd.update(load_file(str(model_dir / fname)))
        return sd
    if (model_dir / SINGLE_NAME).exists():
        return load_file(str(model_dir / SINGLE_NAME))
    pickles = [p.name for p in model_dir.glob("*.bin")] + [p.name for p in model_dir.glob("*.pt")]
    if pickles:
        raise ExportError(f"{model_dir} holds only pickle weights ({', '.join(pickles[:3])}); jaxcoder reads "
                          "safetensors only. Convert them with a trusted tool first.")
    raise ExportError(f"no {SINGLE_NAME} or {INDEX_NAME} in {model_dir}")


def export_hf(cfg: ModelConfig, params: dict, out_dir: str | os.PathLike, *, architecture: str = "auto",
              dtype: str = "float32", max_shard_size: str | int = "5GB", special_tokens: dict | None = None,
              ) -> dict:
    """Writes config.json, generation_config.json and safetensors weights. Returns a summary."""
    arch = choose_architecture(cfg, architecture)
    if dtype not in _DTYPES:
        raise ExportError(f"export dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    np_dtype = _DTYPES[dtype]
    sd = {k: np.ascontiguousarray(np.asarray(v, np.float32).astype(np_dtype))
          for k, v in arch.to_hf(cfg, params).items()}
    files = save_state_dict(sd, out, parse_size(max_shard_size))
    special = {"bos_token_id": None, "eos_token_id": None, "pad_token_id": None, **(special_tokens or {})}
    config = {**arch.config_json(cfg), **special, "torch_dtype": dtype, "dtype": dtype,
              "jaxcoder": {"model": cfg.to_dict()}}
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
    gen = {"bos_token_id": special["bos_token_id"], "eos_token_id": special["eos_token_id"],
           "pad_token_id": special["pad_token_id"], "do_sample": False}
    (out / "generation_config.json").write_text(json.dumps(gen, indent=2))
    return {"architecture": arch.name, "files": files, "tensors": len(sd),
            "bytes": sum(a.nbytes for a in sd.values())}


def import_hf(model_dir: str | os.PathLike) -> tuple[ModelConfig, dict, dict]:
    """Reads a HF directory -> (ModelConfig, float32 params, special-token ids)."""
    path = Path(model_dir)
    cfg_file = path / "config.json"
    if not cfg_file.exists():
        raise ExportError(f"{cfg_file} not found")
    hf = json.loads(cfg_file.read_text())
    names = hf.get("architectures") or [hf.get("model_type", "")]
    arch = get_architecture(names[0])
    if "jaxcoder" in hf:  # our own export: keep training-only fields (dtype policy, remat, ...)
        saved = ModelConfig.from_dict(hf["jaxcoder"]["model"])
        cfg = saved.replace(**{k: getattr(arch.model_config(hf), k) for k in _ARCH_FIELDS})
    else:
        cfg = arch.model_config(hf)
    sd = {k: np.asarray(v, np.float32) if v.dtype != np.float32 else v for k, v in load_state_dict(path).items()}
    params = arch.from_hf(cfg, sd)
    special = {k: hf.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    return cfg, params, special


# Fields that config.json defines; the rest come from jaxcoder's own record when present.
_ARCH_FIELDS = ("vocab_size", "d_model", "n_layers", "n_heads", "n_kv_heads", "head_dim", "d_ff", "max_seq_len",
                "norm", "norm_eps", "mlp", "attn_bias", "mlp_bias", "position", "rope", "sliding_window",
                "tie_embeddings")
