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
    bos = [tokenizer.bos_id] if getattr(tokenizer, "add_bos", False) else []
    budget = max_context - 3 - len(bos)
    pre, suf = end_tokens(tokenizer, prefix, budget, last=True), end_tokens(tokenizer, suffix, budget, last=False)
    keep_suf = min(len(suf), budget // 2)
    keep_pre = min(len(pre), budget - keep_suf)
    keep_suf = min(len(suf), budget - keep_pre)
    pre, suf = pre[len(pre) - keep_pre:], suf[:keep_suf]
    if spm:
        return [*bos, ids.prefix, ids.suffix, *suf, ids.middle, *pre]
    return [*bos, ids.prefix, *pre, ids.suffix, *suf, ids.middle]


def end_tokens(tokenizer, text: str, n: int, last: bool) -> list[int]:
    """The last (or first) n tokens of `tokenizer.encode(text)`, encoding only a window of text
    at that end. A held-out document can be a whole repository (megabytes): encoding all of it for
    every hole made building 1,000 prompts take ~19 minutes. The window is cut where a line starts
    with a non-space character (tokens do not run across such a point in code tokenizers, and no
    run of spaces or newlines is cut in two, whose tokens depend on where the run starts), and
    grows until it and a window at least twice as wide give the same n tokens, or until it holds
    the whole text."""
    if n <= 0:
        return []
    window = _window(text, 8 * n + 64, last)  # code averages 3-4 characters a token
    ids = tokenizer.encode(window)
    while len(window) < len(text):
        wider = _window(text, 2 * len(window), last)
        wider_ids = tokenizer.encode(wider)
        if len(ids) > n and (ids[-n:] == wider_ids[-n:] if last else ids[:n] == wider_ids[:n]):
            break
        window, ids = wider, wider_ids
    return ids[-n:] if last else ids[:n]


def _window(text: str, width: int, last: bool) -> str:
    """At least `width` characters at one end of text, cut just before a line that starts with a
    non-space character (the whole text when there is no such line)."""
    if width >= len(text):
        return text
    if last:
        at = len(text) - width
        while (at := text.rfind("\n", 0, at)) >= 0:
            if not text[at + 1].isspace():
                return text[at + 1:]
        return text
    at = width - 1
    while (at := text.find("\n", at)) >= 0 and at + 1 < len(text):
        if not text[at + 1].isspace():
            return text[:at + 1]
        at += 1
    return text


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
