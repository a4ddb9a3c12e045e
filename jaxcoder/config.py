"""The run configuration (ml_collections) and its conversion to typed configs.

`configs/*.py` files call `base_config(preset)` and adjust it; the CLI applies
`--config.<field>=<value>` overrides. Layers never see this object: `model_config(cfg)` and
`optimizer_config(cfg)` turn its sections into frozen dataclasses first.
"""

from __future__ import annotations

import dataclasses
import sysconfig

import ml_collections
from ml_collections import config_dict

from jaxcoder.model.config import ModelConfig, RopeConfig
from jaxcoder.model.presets import PRESETS
from jaxcoder.train.optimizer import OptimizerConfig


def _model_section(preset_name: str) -> ml_collections.ConfigDict:
    values = dataclasses.asdict(ModelConfig(**PRESETS[preset_name]))
    values["rope"] = ml_collections.ConfigDict(values["rope"])
    rope_fields = {f.name: f.type for f in dataclasses.fields(RopeConfig)}
    for name in ("original_max_position", "attention_factor"):
        if values["rope"][name] is None:  # typed placeholders so CLI overrides parse
            values["rope"][name] = config_dict.placeholder(int if "int" in rope_fields[name] else float)
    section = ml_collections.ConfigDict(values)
    if section.sliding_window is None:
        section.sliding_window = config_dict.placeholder(int)
    section.preset = preset_name
    return section


def base_config(preset: str = "deepseek-coder-tiny") -> ml_collections.ConfigDict:
    """Defaults for every section; `preset` fills the model section."""
    c = ml_collections.ConfigDict()
    c.workdir = "runs/default"
    c.seed = 0
    c.model = _model_section(preset)

    c.tokenizer = ml_collections.ConfigDict()
    c.tokenizer.path = config_dict.placeholder(str)  # a sentencepiece .model
    c.tokenizer.vocab_size = 8192
    c.tokenizer.layout = "starcoder"  # FIM/metadata tokens: starcoder | deepseek
    c.tokenizer.train_files = 400  # files sampled to train a tokenizer

    c.data = ml_collections.ConfigDict()
    c.data.roots = (sysconfig.get_paths()["stdlib"],)
    c.data.extensions = (".py",)
    c.data.max_files = 0  # 0 = all
    c.data.heldout_fraction = 0.02

    c.train = ml_collections.ConfigDict()
    c.train.steps = 1000
    c.train.batch_size = 8
    c.train.seq_len = 256
    c.train.lr = 3e-4
    c.train.min_lr_ratio = 0.1
    c.train.warmup_steps = 100
    c.train.schedule = "cosine"
    c.train.b1 = 0.9
    c.train.b2 = 0.95
    c.train.weight_decay = 0.1
    c.train.decay_embeddings = False
    c.train.clip_norm = 1.0
    c.train.z_loss = 0.0
    c.train.log_every = 10
    c.train.eval_every = 100
    c.train.eval_batches = 4
    c.train.checkpoint_every = 200
    c.train.keep_checkpoints = 3

    c.export = ml_collections.ConfigDict()
    c.export.architecture = "auto"  # auto | llama | starcoder2 | gpt_bigcode
    c.export.dtype = "float32"
    c.export.max_shard_size = "5GB"
    return c


def model_config(cfg: ml_collections.ConfigDict) -> ModelConfig:
    """The typed ModelConfig of a run config (validated)."""
    values = cfg.model.to_dict()
    values.pop("preset", None)
    return ModelConfig.from_dict(values)


def optimizer_config(cfg: ml_collections.ConfigDict) -> OptimizerConfig:
    t = cfg.train
    return OptimizerConfig(lr=t.lr, min_lr_ratio=t.min_lr_ratio, warmup_steps=t.warmup_steps,
                           total_steps=t.steps, schedule=t.schedule, b1=t.b1, b2=t.b2,
                           weight_decay=t.weight_decay, decay_embeddings=t.decay_embeddings,
                           clip_norm=t.clip_norm)


def parse_arg(arg: str | None, **defaults):
    """big_vision-style `name,key=value` argument parsing for get_config(arg).

    `parse_arg("7b,seq=4096", size="1b", seq=2048)` -> ConfigDict(size="7b", seq=4096); a bare
    first token sets the first default. Values are cast to the default's type.
    """
    out = ml_collections.ConfigDict(defaults)
    keys = list(defaults)
    for i, token in enumerate(t for t in (arg or "").split(",") if t):
        key, _, value = token.partition("=")
        if not _:
            key, value = (keys[0] if i == 0 and keys else key), key
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; known: {', '.join(keys)}")
        default = defaults[key]
        out[key] = (value.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(value)
    return out
