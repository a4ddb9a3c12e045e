"""Repository-level next-line completion (`repo_completion`): CrossCodeEval-style records, the
cross-file context in the prompt within its budget, exact match and edit similarity."""

from __future__ import annotations

import pytest
from helpers import run_scripted, write_jsonl

from jaxcoder.config import base_config, resolve
from jaxcoder.eval import repo_completion

RECORDS = [
    {"task_id": "py/0", "language": "python", "prompt": "from utils import area\n\nx = ",
     "groundtruth": "area(3, 4)", "crossfile_context": {"list": [
         {"filename": "utils.py", "retrieved_chunk": "def area(w, h):\n    return w * h"}]}},
    {"task_id": "py/1", "language": "python", "prompt": "import os\npath = ", "groundtruth": "os.getcwd()",
     "crossfile_context": {"text": "# the below code fragment can be found in: a.py\n# CWD = 1\n"}},
    {"task_id": "java/0", "language": "java", "prompt": "class A {\n  int f() {\n    ", "groundtruth": "return 1;",
     "crossfile_context": {"list": [{"filename": "B.java", "retrieved_chunk": "class B {}"}]}},
]


class _Chars:
    """A tokenizer of characters, so budgets are easy to count."""

    bos_id, add_bos = 0, False

    def encode(self, text):
        return [ord(c) for c in text]


def test_edit_similarity_is_fuzz_ratio():
    sim = repo_completion.edit_similarity
    assert sim("abc", "abd") == pytest.approx(2 * 2 / 6)  # fuzz.ratio("abc", "abd") = 67
    assert sim("return x;", "return x;") == 1.0 and sim("", "") == 1.0 and sim("ab", "") == 0.0
    assert sim("kitten", "sitting") == pytest.approx(2 * 4 / 13)  # LCS "ittn"


def test_prompts_put_crossfile_context_first_within_the_budget():
    rec = RECORDS[0]
    text = repo_completion.crossfile_text(rec)
    assert text == "# the below code fragment can be found in: utils.py\n# def area(w, h):\n#     return w * h\n"
    assert repo_completion.crossfile_text(RECORDS[2]).startswith("// the below code fragment can be found in: B.java")
    full = repo_completion.prompt_ids(_Chars(), rec, 10_000)
    assert "".join(map(chr, full)) == text + rec["prompt"]
    short = "".join(map(chr, repo_completion.prompt_ids(_Chars(), rec, 40)))
    # The in-file context is kept whole (it fits); the cross-file part takes at most half.
    assert len(short) == 40 and short.endswith(rec["prompt"]) and short.startswith(text[:40 - len(rec["prompt"])])


def test_the_task_scores_exact_match_and_edit_similarity_per_language(tmp_path):
    cfg = base_config("deepseek-coder-tiny")
    cfg.eval.repo_completion.path = write_jsonl(tmp_path / "records.jsonl", RECORDS)
    lines = {"py/0": "area(3, 4)\nprint(x)", "py/1": "os.getcwdb()", "java/0": "  return 1;"}
    out = run_scripted("repo_completion", resolve(cfg), tmp_path,
                       lambda key, stop: lines[key.split("/", 2)[2]].split(stop[0])[0], tokenizer=_Chars())
    py_sim = (1.0 + repo_completion.edit_similarity("os.getcwdb()", "os.getcwd()")) / 2
    assert out["per_language"]["python"] == {"records": 2, "exact_match": 0.5, "edit_similarity": pytest.approx(py_sim)}
    assert out["per_language"]["java"] == {"records": 1, "exact_match": 1.0, "edit_similarity": 1.0}
    assert out["records"] == 3 and out["exact_match"] == pytest.approx(2 / 3)
