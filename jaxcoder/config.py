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

from jaxcoder.data.decontam import DecontamConfig
from jaxcoder.data.dedup import DedupConfig
from jaxcoder.data.filters import FilterConfig
from jaxcoder.data.fim import FimConfig
from jaxcoder.model.config import ModelConfig, RopeConfig
from jaxcoder.model.presets import PRESETS
from jaxcoder.parallel.rules import DEFAULT_RULES
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
    c.tokenizer.path = config_dict.placeholder(str)  # an existing sentencepiece model; else `data prepare` trains one
    c.tokenizer.vocab_size = 8192
    c.tokenizer.layout = "starcoder"  # FIM/metadata tokens: starcoder | deepseek
    c.tokenizer.train_docs = 2000  # documents sampled to train a tokenizer

    c.data = ml_collections.ConfigDict()
    c.data.prepared_dir = "runs/data"  # written by `jaxcoder data prepare`, read by `jaxcoder train`
    c.data.sources = ml_collections.ConfigDict()
    c.data.sources.repo_dirs = ()  # each directory is one repository
    c.data.sources.repo_roots = (sysconfig.get_paths()["stdlib"],)  # each subdirectory is a repository
    c.data.sources.records = ()  # JSONL / Parquet files of {repo, path, content} records
    c.data.sources.exclude = ("__pycache__", ".git", ".hg", ".svn", "site-packages", "dist-packages")
    c.data.languages = ()  # allow-list; empty = every language jaxcoder knows
    c.data.filters = ml_collections.ConfigDict(dataclasses.asdict(FilterConfig()))
    c.data.near_dedup = True
    c.data.dedup = ml_collections.ConfigDict(dataclasses.asdict(DedupConfig()))
    c.data.pii = True
    c.data.decontamination = ml_collections.ConfigDict(dataclasses.asdict(DecontamConfig()))
    c.data.repo_level = True
    c.data.repo_format = "path_comment"  # path_comment (DeepSeek-Coder) | starcoder2
    c.data.heldout_fraction = 0.01
    c.data.tokens_per_shard = 4_000_000
    # Longer samples are stored as consecutive pieces cut at line ends (jaxcoder/data/shards.py)
    c.data.max_sample_tokens = 65536
    c.data.prepare_workers = 0  # 0 = one per core
    c.data.mixture = ()  # ((language, weight), ...); empty = proportional to tokens
    # layout: tokenizer.layout; max_tokens 0 = FIM per whole document (see jaxcoder/data/fim.py)
    # line_rate: share of FIM documents whose middle is whole lines (0 = character spans only)
    c.data.fim = ml_collections.ConfigDict({"rate": 0.5, "spm_rate": 0.5, "max_tokens": 0, "line_rate": 0.0})
    # Packed rows are shuffled in windows of this many rows before batching (0 = off: a batch is
    # then consecutive rows, mostly of one long document)
    c.data.shuffle_rows = 256
    c.data.loader_workers = 0  # Grain worker processes (0 = in the training process)
    # Independent loader streams that make up the global batch; processes split them. A fixed
    # number keeps the data identical whatever the process count (0 = one per process).
    c.data.streams = 0

    c.train = ml_collections.ConfigDict()
    c.train.steps = 1000
    # A checkpoint to start from when the workdir has none (continued pretraining, e.g. of an
    # imported Hugging Face model); its model config must match this run's.
    c.train.init_from = config_dict.placeholder(str)
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
    c.train.keep_every = 0  # also keep every n-th step's checkpoint (0 = off)
    c.train.checkpoint_minutes = 0.0  # also save when this much time passed since the last save
    c.train.grad_accum = 1  # microbatches per step (batch_size is the global batch)
    c.train.stable_fraction = 0.8  # warmup-stable-decay: fraction of steps at peak lr
    c.train.peak_tflops = 0.0  # per device, for MFU; 0 = look the device up in a table

    c.mesh = ml_collections.ConfigDict({"data": -1, "stage": 1, "fsdp": 1, "tensor": 1})
    c.mesh.num_devices = 0  # use only the first N devices (0 = all)
    # Logical axis name -> mesh axes; first applicable rule wins (jaxcoder/parallel/rules.py).
    c.mesh.rules = tuple((name, target) for name, target in DEFAULT_RULES)

    # Pipeline parallelism (active when mesh.stage > 1): GPipe, or circular with repeats > 1.
    c.pipeline = ml_collections.ConfigDict()
    c.pipeline.microbatches = 0  # 0 = 2 x mesh.stage
    c.pipeline.repeats = 1

    c.distributed = ml_collections.ConfigDict()
    c.distributed.coordinator = config_dict.placeholder(str)  # host:port of process 0
    c.distributed.num_processes = config_dict.placeholder(int)
    c.distributed.process_id = config_dict.placeholder(int)
    c.distributed.auto = False  # let JAX detect TPU / SLURM / MPI / GKE clusters
    c.distributed.local_devices = 0  # >0: fake CPU devices per process (local multi-process runs)

    c.eval = ml_collections.ConfigDict()
    c.eval.tasks = ("perplexity", "humaneval", "fim_single_line", "fim_heldout_line", "fim_random_span")
    c.eval.out_dir = ""  # default <workdir>/eval; results per checkpoint step under it
    c.eval.batch_size = 16  # prompts decoded together
    c.eval.seq_len = 1024  # perplexity rows
    c.eval.perplexity_batches = 20  # per language
    c.eval.sandbox_workers = 2
    c.eval.humaneval = ml_collections.ConfigDict(dict(
        n_samples=1, temperature=0.0, top_p=0.95, max_new_tokens=512, limit=0, ks=(1, 10, 100), timeout_s=3.0))
    # languages: held-out documents the held-out FIM tasks draw from (empty: all); mode: psm | spm
    # (the prompt order; spm needs a model trained with data.fim.spm_rate > 0)
    c.eval.fim = ml_collections.ConfigDict(dict(max_new_tokens=64, limit=0, heldout_lines=200, random_spans=200,
                                                max_context=1024, languages=(), mode="psm"))

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
                           clip_norm=t.clip_norm, stable_fraction=t.stable_fraction)


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


def _tuple(x):
    return tuple(x) if isinstance(x, list | tuple) else (x,)


def prepare_config(cfg: ml_collections.ConfigDict):
    """The typed PrepareConfig of a run config."""
    from jaxcoder.data.prepare import PrepareConfig

    d = cfg.data
    decontam = d.decontamination.to_dict()
    decontam["extra_files"] = _tuple(decontam["extra_files"])
    filters = d.filters.to_dict()
    filters["long_line_languages"] = _tuple(filters["long_line_languages"])
    return PrepareConfig(
        out_dir=d.prepared_dir, repo_dirs=_tuple(d.sources.repo_dirs), repo_roots=_tuple(d.sources.repo_roots),
        records=_tuple(d.sources.records), exclude=_tuple(d.sources.exclude), languages=_tuple(d.languages),
        filters=FilterConfig(**filters), dedup=DedupConfig(**d.dedup.to_dict()), near_dedup=d.near_dedup,
        pii=d.pii, decontamination=DecontamConfig(**decontam), repo_level=d.repo_level,
        repo_format=d.repo_format, tokenizer_path=cfg.tokenizer.path, tokenizer_vocab_size=cfg.tokenizer.vocab_size,
        tokenizer_layout=cfg.tokenizer.layout, tokenizer_train_docs=cfg.tokenizer.train_docs,
        tokens_per_shard=d.tokens_per_shard, max_sample_tokens=d.max_sample_tokens,
        heldout_fraction=d.heldout_fraction, num_workers=d.prepare_workers)


def mesh_rules(cfg: ml_collections.ConfigDict):
    return tuple((str(name), target if target is None or isinstance(target, str) else tuple(target))
                 for name, target in cfg.mesh.rules)


def pipeline_config(cfg: ml_collections.ConfigDict, batch_size: int | None = None):
    """The typed PipelineConfig of a run config (batch_size: rows per stream)."""
    from jaxcoder.data.pipeline import PipelineConfig

    fim = FimConfig(rate=cfg.data.fim.rate, spm_rate=cfg.data.fim.spm_rate, layout=cfg.tokenizer.layout,
                    max_tokens=cfg.data.fim.max_tokens, line_rate=cfg.data.fim.line_rate)
    return PipelineConfig(data_dir=cfg.data.prepared_dir, seq_len=cfg.train.seq_len,
                          batch_size=batch_size or cfg.train.batch_size, seed=cfg.seed,
                          mixture=tuple((str(k), float(v)) for k, v in cfg.data.mixture), fim=fim,
                          num_workers=cfg.data.loader_workers, shuffle_rows=cfg.data.shuffle_rows)


def pipeline_parallel_config(cfg: ml_collections.ConfigDict, stages: int):
    from jaxcoder.parallel.pipeline import PipelineConfig

    return PipelineConfig(stages=stages, microbatches=cfg.pipeline.microbatches or 2 * stages,
                          repeats=cfg.pipeline.repeats)
