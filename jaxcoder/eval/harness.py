"""Interop with bigcode-evaluation-harness: generations in its `--save_generations` /
`--load_generations_path` layout.

The harness keeps one JSON file per task: a list over the task's problems (in dataset order) of
lists of generations, each the full text it executes, that is the task's prompt followed by the
completion cut at the stop words (`humaneval`: the stripped HumanEval prompt; `multiple-<lang>`:
MultiPL-E's prompt). `jaxcoder eval` writes such a file beside its results for every generation
task (`generations_humaneval.json`, `generations_multiple-js.json`), so samples made on JAX hosts
can be scored in the harness's execution image; `jaxcoder eval --load_generations=FILE` scores a
harness file in our sandbox instead of generating.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path


def task_name(task: str, language: str | None = None) -> str:
    """The harness's name for one of our tasks (MultiPL-E's per language)."""
    return f"multiple-{language}" if task == "multipl_e" else task


def write(path: str | Path, prompts: Sequence[str], completions: Sequence[Sequence[str]]) -> Path:
    """Writes the harness file of problems with these prompts and their completions."""
    path = Path(path)
    rows = [[p + c for c in cs] for p, cs in zip(prompts, completions, strict=True)]
    path.write_text(json.dumps(rows))
    return path


def read(path: str | Path, prompts: Sequence[str]) -> list[list[str]]:
    """The completions in a harness file for problems with these prompts (the file may hold the
    first N problems only, as the harness's --limit writes); each generation must start with its
    problem's prompt, as the harness writes them."""
    rows = json.loads(Path(path).read_text())
    if not isinstance(rows, list) or not all(isinstance(r, list) and all(isinstance(g, str) for g in r)
                                             for r in rows):
        raise ValueError(f"{path}: a harness generations file is a JSON list (problems) of lists of strings")
    if not rows:
        raise ValueError(f"{path} holds no problems")
    if len(rows) > len(prompts):
        raise ValueError(f"{path} holds {len(rows)} problems; the task has {len(prompts)}")
    if len({len(r) for r in rows}) > 1:
        raise ValueError(f"{path}: every problem needs the same number of generations (pass@k needs n per problem)")
    out = []
    for i, (prompt, gens) in enumerate(zip(prompts, rows, strict=False)):
        bad = [j for j, g in enumerate(gens) if not g.startswith(prompt)]
        if bad:
            raise ValueError(f"{path}: problem {i} generation {bad[0]} does not start with the task's prompt "
                             f"({prompt[:40]!r}...); was it written for another task?")
        out.append([g[len(prompt):] for g in gens])
    return out
