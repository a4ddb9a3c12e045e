"""The `data` section: where raw code comes from, how it is filtered and prepared, and how the
loader mixes, transforms and packs it."""

from __future__ import annotations

import dataclasses
import sysconfig

from jaxcoder.data.decontam import DecontamConfig
from jaxcoder.data.dedup import DedupConfig
from jaxcoder.data.filters import FilterConfig
from jaxcoder.data.fim import FimConfig
from jaxcoder.data.languages import LANGUAGES
from jaxcoder.data.sources import DEFAULT_EXCLUDE
from jaxcoder.fields import ConfigError, check, field


@dataclasses.dataclass(frozen=True)
class SourcesConfig:
    """`data.sources`: local paths, or any filesystem Beam supports (gs://...) for record files."""

    repo_dirs: tuple[str, ...] = ()  # each directory is one repository
    repo_roots: tuple[str, ...] = (sysconfig.get_paths()["stdlib"],)  # each subdirectory is a repository
    records: tuple[str, ...] = ()  # JSONL / Parquet files (or globs) of {repo, path, content} records
    exclude: tuple[str, ...] = (*DEFAULT_EXCLUDE, "site-packages", "dist-packages")
    stack_v1: tuple[str, ...] = ()  # Parquet files (or globs) in The Stack v1 layout
    stack_v2: tuple[str, ...] = ()  # Parquet files (or globs) in The Stack v2 layout
    blob_dir: str | None = None  # The Stack v2's contents: <blob_dir>/<blob_id>, gzip-compressed
    stack_v1_columns: tuple[str, ...] = ("max_stars_repo_name", "max_stars_repo_path", "content")
    stack_v2_columns: tuple[str, ...] = ("repo_name", "path", "blob_id")  # repository, path, blob id


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """`data.beam`: where `data prepare` runs. Options pass through to Beam, e.g. for Dataflow
    ("--project=my-project", "--region=us-central1", "--temp_location=gs://bucket/tmp")."""

    runner: str = "DirectRunner"  # DirectRunner | DataflowRunner | FlinkRunner | SparkRunner | ...
    options: tuple[str, ...] = ()

    def __post_init__(self):
        check(self, "data.beam")
        bad = [o for o in self.options if not (isinstance(o, str) and o.startswith("--"))]
        if bad:
            raise ConfigError(f"data.beam.options are Beam pipeline flags like '--project=p'; got {bad!r}")


@dataclasses.dataclass(frozen=True)
class DataConfig:
    prepared_dir: str = "runs/data"  # written by `jaxcoder data prepare`, read by `jaxcoder train`
    sources: SourcesConfig = SourcesConfig()
    languages: tuple[str, ...] = ()  # allow-list; empty = every language jaxcoder knows
    filters: FilterConfig = FilterConfig()
    near_dedup: bool = True
    dedup: DedupConfig = DedupConfig()
    pii: bool = True
    decontamination: DecontamConfig = DecontamConfig()
    repo_level: bool = True
    repo_format: str = field("path_comment", choices=("path_comment", "starcoder2"))  # DeepSeek | StarCoder2
    heldout_fraction: float = field(0.01, ge=0, lt=1)
    tokens_per_shard: int = field(4_000_000, ge=1)
    # Longer samples are stored as consecutive pieces cut at line ends (jaxcoder/data/shards.py)
    max_sample_tokens: int = field(65536, ge=0)
    prepare_workers: int = field(0, ge=0)  # DirectRunner worker processes (0 = one per core)
    beam: BeamConfig = BeamConfig()
    mixture: tuple = ()  # ((language, weight), ...): each language's share of tokens; empty = as prepared
    # layout: tokenizer.layout; max_tokens 0 = FIM per whole document (see jaxcoder/data/fim.py)
    fim: FimConfig = FimConfig()
    # Packed rows are shuffled in windows of this many rows before batching (0 = off: a batch is
    # then consecutive rows, mostly of one long document)
    shuffle_rows: int = field(256, ge=0)
    loader_workers: int = field(0, ge=0)  # Grain worker processes (0 = in the training process)
    # Independent loader streams that make up the global batch; processes split them. A fixed
    # number keeps the data identical whatever the process count (0 = one per process).
    streams: int = field(0, ge=0)

    def __post_init__(self):
        check(self, "data")
        unknown = sorted(set(self.languages) - set(LANGUAGES))
        if unknown:
            raise ConfigError(f"data.languages: unknown language(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(LANGUAGES))}")
        for item in self.mixture:
            if (not isinstance(item, tuple | list) or len(item) != 2 or not isinstance(item[0], str)
                    or isinstance(item[1], bool) or not isinstance(item[1], int | float) or item[1] < 0):
                raise ConfigError(f"data.mixture entries must be (language, weight >= 0) pairs; got {item!r}")
