"""Repository-level next-line completion, as CrossCodeEval and RepoBench score it.

A record is one cursor position in a repository's file: `prompt` (the file up to the cursor),
`groundtruth` (the next line), `crossfile_context` (code retrieved from other files of the
repository: CrossCodeEval's `{"text": ...}` or `{"list": [{"filename", "retrieved_chunk"}]}`, or a
plain string) and `language`. The prompt puts the cross-file snippets first, as comments naming
their files, then the in-file context; when it is too long the cross-file part keeps at most half
the budget and the in-file context keeps its end (the lines nearest the cursor). Scores: exact
match of the first generated line, and edit similarity (fuzz.ratio / 100, as both papers report).
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxcoder.eval.records import load as load_records

FIELDS = ("task_id", "language", "prompt", "groundtruth", "crossfile_context")
_COMMENT = {"python": "#", "py": "#", "ruby": "#", "shell": "#", "perl": "#", "r": "#"}


def load(source: str, languages: Sequence[str] = ()) -> list[dict]:
    return load_records(source, FIELDS, "eval.repo_completion.path", languages)


def crossfile_text(record: dict) -> str:
    """The retrieved cross-file code as comment lines, each snippet under the file it came from."""
    ctx = record["crossfile_context"]
    if isinstance(ctx, dict) and ctx.get("text"):
        return ctx["text"]
    if isinstance(ctx, str):
        return ctx
    mark = _COMMENT.get(record["language"].lower(), "//")
    lines = []
    for chunk in (ctx or {}).get("list", []):
        lines.append(f"{mark} the below code fragment can be found in: {chunk.get('filename', '?')}")
        lines += [f"{mark} {line}" for line in chunk["retrieved_chunk"].splitlines()]
    return "\n".join(lines) + ("\n" if lines else "")


def prompt_ids(tokenizer, record: dict, max_context: int) -> list[int]:
    """Token ids of cross-file context + in-file context within `max_context` tokens."""
    cross, own = tokenizer.encode(crossfile_text(record)), tokenizer.encode(record["prompt"])
    bos = [tokenizer.bos_id] if getattr(tokenizer, "add_bos", False) else []
    budget = max_context - len(bos)
    cross = cross[: min(len(cross), budget // 2, budget - min(len(own), budget))]
    own = own[len(own) - (budget - len(cross)):] if len(own) > budget - len(cross) else own
    return [*bos, *cross, *own]


def first_line(text: str) -> str:
    return text.split("\n", 1)[0]


def edit_similarity(a: str, b: str) -> float:
    """2 x LCS / (len a + len b): rapidfuzz's / fuzzywuzzy's `fuzz.ratio` / 100, which CrossCodeEval
    and RepoBench report as edit similarity (computed here to avoid a dependency for one metric;
    lines are short, so the quadratic table is cheap)."""
    if not a and not b:
        return 1.0
    prev = [0] * (len(b) + 1)
    for ca in a:
        cur = [0]
        for j, cb in enumerate(b):
            cur.append(prev[j] + 1 if ca == cb else max(prev[j + 1], cur[j]))
        prev = cur
    return 2 * prev[-1] / (len(a) + len(b))
