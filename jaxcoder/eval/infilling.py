"""FIM infilling benchmarks: single-line (SantaCoder/InCoder protocol: each non-blank line of the
HumanEval canonical solutions masked in turn), the same single-line protocol on held-out files of
the training corpus (in-distribution: what a small model learns first), and random spans of
held-out files; exact match after stripping whitespace, as bigcode's harness scores it."""

from __future__ import annotations

import numpy as np

from jaxcoder.data.fim import FimTokens
from jaxcoder.eval import humaneval


def single_line_tasks() -> list[dict]:
    tasks = []
    for p in humaneval.problems():
        code = p["prompt"] + p["canonical_solution"]
        start = len(p["prompt"])
        lines = p["canonical_solution"].splitlines(keepends=True)
        offset = start
        for i, line in enumerate(lines):
            if line.strip():
                tasks.append({"id": f"{p['task_id']}/{i}", "prefix": code[:offset],
                              "suffix": code[offset + len(line.rstrip("\n")):], "middle": line.rstrip("\n")})
            offset += len(line)
    return tasks


def random_span_tasks(docs: list[str], n: int, seed: int = 0, max_span: int = 200) -> list[dict]:
    """n spans of up to max_span characters cut at random from the given documents."""
    rng = np.random.default_rng(seed)
    docs = [d for d in docs if len(d) > 20]
    tasks = []
    for i in range(n):
        d = docs[int(rng.integers(len(docs)))]
        a = int(rng.integers(0, len(d) - 1))
        b = min(len(d), a + 1 + int(rng.integers(0, max_span)))
        tasks.append({"id": f"span/{i}", "prefix": d[:a], "suffix": d[b:], "middle": d[a:b]})
    return tasks


def heldout_line_tasks(docs: list[str], n: int, seed: int = 0, max_line: int = 100) -> list[dict]:
    """n single-line holes: a random non-blank line (at most max_line characters) of a random
    held-out document, with everything before and after it as prefix and suffix."""
    rng = np.random.default_rng(seed)
    candidates = []  # (doc index, line start, line end) of every eligible line
    for di, d in enumerate(docs):
        offset = 0
        for line in d.splitlines(keepends=True):
            body = line.rstrip("\r\n")
            if body.strip() and len(body) <= max_line:
                candidates.append((di, offset, offset + len(body)))
            offset += len(line)
    if not candidates:
        return []
    picks = rng.choice(len(candidates), size=min(n, len(candidates)), replace=False)
    tasks = []
    for i, c in enumerate(sorted(int(p) for p in picks)):
        di, a, b = candidates[c]
        d = docs[di]
        tasks.append({"id": f"line/{i}", "prefix": d[:a], "suffix": d[b:], "middle": d[a:b]})
    return tasks


def fim_prompt(tokenizer, ids: FimTokens, prefix: str, suffix: str, max_context: int, spm: bool = False) -> list[int]:
    """The infilling prompt, trimmed to max_context tokens (keeping the prefix's end and the
    suffix's start, the parts nearest the hole). PSM: `<pre> prefix <suf> suffix <mid>`; SPM
    (StarCoder's variant): `<pre> <suf> suffix <mid> prefix`, so the middle continues the prefix.
    BOS comes first for tokenizers that start every sequence with it (DeepSeek-Coder's)."""
    pre, suf = tokenizer.encode(prefix), tokenizer.encode(suffix)
    bos = [tokenizer.bos_id] if getattr(tokenizer, "add_bos", False) else []
    budget = max_context - 3 - len(bos)
    keep_suf = min(len(suf), budget // 2)
    keep_pre = min(len(pre), budget - keep_suf)
    keep_suf = min(len(suf), budget - keep_pre)
    pre, suf = pre[len(pre) - keep_pre:], suf[:keep_suf]
    if spm:
        return [*bos, ids.prefix, ids.suffix, *suf, ids.middle, *pre]
    return [*bos, ids.prefix, *pre, ids.suffix, *suf, ids.middle]


def exact_match(generated: str, reference: str) -> bool:
    return generated.strip() == reference.strip()


SANTACODER_FIELDS = ("name", "language", "prompt", "suffix", "canonical_solution")


def santacoder_tasks(source: str, languages=()) -> list[dict]:
    """SantaCoder's FIM benchmark (Allal et al.; `bigcode/santacoder-fim-task`): one line of a
    HumanEval solution translated to Python, JavaScript or Java (`py`, `js`, `java`) masked, the
    code before it as prefix and after it as suffix; scored by exact match."""
    from jaxcoder.eval.records import load

    rows = load(source, SANTACODER_FIELDS, "eval.fim.santacoder_path", languages)
    return [{"id": f"{r['language']}/{r['name']}/{i}", "language": r["language"], "prefix": r["prompt"],
             "suffix": r["suffix"], "middle": r["canonical_solution"]} for i, r in enumerate(rows)]
