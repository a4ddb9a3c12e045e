"""The `eval` section: which tasks `jaxcoder eval` runs, and how."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from jaxcoder.fields import ConfigError, check, field


@dataclasses.dataclass(frozen=True)
class HumanEvalConfig:
    """The `humaneval` and `humaneval_plus` tasks: sampling, pass@k and the sandbox's timeout."""

    SECTION: ClassVar[str] = "eval.humaneval"
    n_samples: int = field(1, ge=1)
    temperature: float = field(0.0, ge=0)
    top_p: float = field(0.95, gt=0, le=1)
    max_new_tokens: int = field(512, ge=1)
    limit: int = field(0, ge=0)  # the first N problems (0 = all)
    ks: tuple[int, ...] = (1, 10, 100)
    timeout_s: float = field(3.0, gt=0)
    # the EvalPlus rows of the `_plus` task (.jsonl/.parquet, or hf:evalplus/humanevalplus / mbppplus)
    plus_path: str = ""

    def __post_init__(self):
        check(self, self.SECTION)
        if not self.ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.ks):
            raise ConfigError(f"{self.SECTION}.ks must be positive integers; got {self.ks!r}")


@dataclasses.dataclass(frozen=True)
class MbppConfig(HumanEvalConfig):
    """The `mbpp` and `mbpp_plus` tasks: MBPP's rows and the same settings as HumanEval's."""

    SECTION: ClassVar[str] = "eval.mbpp"
    path: str = ""  # MBPP's rows (.jsonl/.parquet, or hf:google-research-datasets/mbpp: its test split)


@dataclasses.dataclass(frozen=True)
class MultiplEConfig:
    """The `multipl_e` task (eval/multipl_e.py): MultiPL-E records from a file or the hub."""

    path: str = ""  # a .jsonl or .parquet of MultiPL-E records, or hf:nuprl/MultiPL-E
    languages: tuple[str, ...] = ()  # MultiPL-E's names (cpp, java, js, rs, sh, pl, ...); empty: all in path
    n_samples: int = field(1, ge=1)
    temperature: float = field(0.0, ge=0)
    top_p: float = field(0.95, gt=0, le=1)
    max_new_tokens: int = field(512, ge=1)
    limit: int = field(0, ge=0)  # the first N problems of each language (0 = all)
    ks: tuple[int, ...] = (1,)

    def __post_init__(self):
        check(self, "eval.multipl_e")
        if not self.ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.ks):
            raise ConfigError(f"eval.multipl_e.ks must be positive integers; got {self.ks!r}")


@dataclasses.dataclass(frozen=True)
class RepoCompletionConfig:
    """The `repo_completion` task (eval/repo_completion.py): CrossCodeEval/RepoBench-style records."""

    path: str = ""  # a .jsonl or .parquet of records (task_id, language, prompt, groundtruth, crossfile_context)
    languages: tuple[str, ...] = ()  # empty: all in path
    limit: int = field(0, ge=0)  # the first N records (0 = all)
    max_context: int = field(2048, ge=16)  # prompt tokens: cross-file context (at most half) + in-file
    max_new_tokens: int = field(64, ge=1)

    def __post_init__(self):
        check(self, "eval.repo_completion")


@dataclasses.dataclass(frozen=True)
class FimEvalConfig:
    max_new_tokens: int = field(64, ge=1)
    limit: int = field(0, ge=0)
    heldout_lines: int = field(200, ge=0)
    random_spans: int = field(200, ge=0)
    max_context: int = field(1024, ge=1)
    # held-out documents the held-out FIM tasks draw from (empty: all)
    languages: tuple[str, ...] = ()
    # the prompt order; spm needs a model trained with data.fim.spm_rate > 0
    mode: str = field("psm", choices=("psm", "spm"))
    # santacoder_fim: the benchmark's rows (a .jsonl/.parquet, or hf:bigcode/santacoder-fim-task)
    # and its languages to score (py, js, java; empty: all in the file)
    santacoder_path: str = ""
    santacoder_languages: tuple[str, ...] = ()

    def __post_init__(self):
        check(self, "eval.fim")


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    tasks: tuple[str, ...] = ("perplexity", "humaneval", "fim_single_line", "fim_heldout_line", "fim_random_span")
    out_dir: str = ""  # default <workdir>/eval; results per checkpoint step under it
    batch_size: int = field(16, ge=1)  # prompts decoded together
    seq_len: int = field(1024, ge=1)  # perplexity rows
    perplexity_batches: int = field(20, ge=1)  # per language
    sandbox_workers: int = field(2, ge=1)
    humaneval: HumanEvalConfig = HumanEvalConfig()
    mbpp: MbppConfig = MbppConfig()
    multipl_e: MultiplEConfig = MultiplEConfig()
    repo_completion: RepoCompletionConfig = RepoCompletionConfig()
    fim: FimEvalConfig = FimEvalConfig()

    def __post_init__(self):
        check(self, "eval")
