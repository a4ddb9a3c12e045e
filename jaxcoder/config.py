"""The run configuration (ml_collections) and its conversion to typed configs.

`configs/*.py` files call `base_config(preset)` and adjust it; the CLI applies
`--config.<field>=<value>` overrides. Every section is generated from its dataclass (defaults and
bounds live there), and `resolve(cfg)` turns the whole run config back into a `RunConfig` of typed,
validated sections in one step: a nonsense value is refused, naming the field, before anything
runs. `train`, `eval` and the dry run take the `RunConfig` (and derive the loader, optimizer and
pipeline-stage configs from its methods), `data prepare` its data and tokenizer sections; nothing
below sees the ml_collections object.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

import ml_collections

from jaxcoder.data.config import DataConfig
from jaxcoder.data.fim import FimConfig
from jaxcoder.data.tokenizer import TokenizerConfig
from jaxcoder.eval.config import EvalConfig
from jaxcoder.export.hf_io import ExportConfig
from jaxcoder.fields import ConfigError, build, check, field, section
from jaxcoder.model.config import ModelConfig
from jaxcoder.model.presets import PRESETS
from jaxcoder.parallel.distributed import DistributedConfig
from jaxcoder.parallel.mesh import MeshConfig
from jaxcoder.parallel.pipeline import ScheduleConfig, StageConfig
from jaxcoder.train.config import TrainConfig
from jaxcoder.train.optimizer import OptimizerConfig

if TYPE_CHECKING:  # the loader imports grain and array_record: only when used
    from jaxcoder.data.pipeline import LoaderConfig

__all__ = ["ConfigError", "RunConfig", "base_config", "parse_arg", "resolve"]


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A run config resolved into typed sections."""

    workdir: str
    seed: int
    model: ModelConfig
    preset: str
    tokenizer: TokenizerConfig
    data: DataConfig
    train: TrainConfig
    mesh: MeshConfig
    pipeline: ScheduleConfig
    distributed: DistributedConfig
    eval: EvalConfig
    export: ExportConfig

    def to_json(self) -> dict:
        """The sections as plain JSON (recorded in checkpoints)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def optimizer(self) -> OptimizerConfig:
        return self.train.optimizer()

    def fim(self) -> FimConfig:
        """The FIM settings with the tokenizer's layout."""
        return dataclasses.replace(self.data.fim, layout=self.tokenizer.layout)

    def loader(self, batch_size: int | None = None) -> LoaderConfig:
        """The Grain loader's config (batch_size: rows per stream; default the global batch)."""
        from jaxcoder.data.pipeline import LoaderConfig

        return LoaderConfig(data_dir=self.data.prepared_dir, seq_len=self.train.seq_len,
                            batch_size=batch_size or self.train.batch_size, seed=self.seed,
                            mixture=tuple((str(k), float(v)) for k, v in self.data.mixture), fim=self.fim(),
                            num_workers=self.data.loader_workers, shuffle_rows=self.data.shuffle_rows)

    def stages(self, stages: int) -> StageConfig:
        """The pipeline schedule for `stages` (the resolved mesh.stage)."""
        return StageConfig(stages=stages, microbatches=self.pipeline.microbatches or 2 * stages,
                           repeats=self.pipeline.repeats)


@dataclasses.dataclass(frozen=True)
class _TopLevel:
    workdir: str = "runs/default"
    seed: int = field(0, ge=0)

    def __post_init__(self):
        check(self, "")


_SECTIONS = {"tokenizer": TokenizerConfig, "data": DataConfig, "train": TrainConfig, "mesh": MeshConfig,
             "pipeline": ScheduleConfig, "distributed": DistributedConfig, "eval": EvalConfig, "export": ExportConfig}


def _model_section(preset_name: str) -> ml_collections.ConfigDict:
    if preset_name not in PRESETS:
        raise ConfigError(f"unknown model preset {preset_name!r}; presets: {', '.join(sorted(PRESETS))}")
    out = section(ModelConfig(**PRESETS[preset_name]))
    out.preset = preset_name
    return out


def base_config(preset: str = "deepseek-coder-tiny") -> ml_collections.ConfigDict:
    """Defaults for every section (from the sections' dataclasses); `preset` fills the model section."""
    c = section(_TopLevel)
    c.model = _model_section(preset)
    for name, cls in _SECTIONS.items():
        c[name] = section(cls)
    return c


def resolve(cfg: ml_collections.ConfigDict) -> RunConfig:
    """The run config as typed sections; raises ConfigError naming the first bad or unknown field."""
    values = cfg.to_dict()
    unknown = sorted(set(values) - {"model", *_SECTIONS, *(f.name for f in dataclasses.fields(_TopLevel))})
    if unknown:
        raise ConfigError(f"unknown config section(s): {', '.join(unknown)}")
    top = _TopLevel(workdir=values.get("workdir", _TopLevel.workdir), seed=values.get("seed", 0))
    model = dict(values["model"])
    preset = model.pop("preset", "")
    sections = {name: build(cls, values.get(name, {}), name) for name, cls in _SECTIONS.items()}
    run = RunConfig(workdir=top.workdir, seed=top.seed, model=ModelConfig.from_dict(model), preset=preset,
                    **sections)
    run.fim()  # the FIM settings with the tokenizer's layout (DeepSeek's is PSM only)
    return run


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


def smoke_stage(c: ml_collections.ConfigDict, stage: str) -> None:
    """A model line's training stage shrunk to seconds on a CPU (`configs/<line>.py:tiny,smoke=1`,
    for the README runbooks the tests run): a 1,024-token vocabulary, 6 steps of 8 rows, the long
    stage at twice the base stage's context (the papers' 4x would only cost time here)."""
    c.model.vocab_size = c.tokenizer.vocab_size = 1024
    c.model.dtype = "float32"
    c.data.heldout_fraction = 0.02
    c.data.max_sample_tokens = 4096
    c.train.update(batch_size=8, steps=6, warmup_steps=2 if stage == "base" else 0, log_every=2,
                   eval_every=1000, eval_batches=1, checkpoint_every=1000)
    c.train.seq_len = c.model.max_seq_len = 128 if stage == "base" else 256
