"""MBPP, MBPP+ and HumanEval+: prompts as the papers and the bigcode harness build them, programs
run in the sandbox, pass@k; the `_plus` tests catch what the base tests let through."""

from __future__ import annotations

import json

from helpers import run_scripted, write_jsonl

from jaxcoder.config import base_config, resolve
from jaxcoder.eval import humaneval, mbpp

MBPP_ROWS = [
    {"task_id": 11, "text": "Write a function to add two integers.", "code": "def add(a, b):\n    return a + b",
     "test_list": ["assert add(1, 2) == 3", "assert add(10, 5) == 15"], "test_setup_code": "",
     "challenge_test_list": []},
    {"task_id": 12, "text": "Write a function to reverse a string.", "code": "def rev(s):\n    return s[::-1]",
     "test_list": ["assert rev('ab') == 'ba'", "assert rev('') == ''"], "test_setup_code": "",
     "challenge_test_list": []},
]
# A completion that passes MBPP's tests but not MBPP+'s extra one (negative numbers).
SLOPPY_ADD = "def add(a, b):\n    return abs(a) + b\n"
ANSWERS = {"11": SLOPPY_ADD, "12": "def rev(s):\n    return s[::-1]\n"}


def _write(tmp_path, name, rows):
    return write_jsonl(tmp_path / name, rows)


def _run(tmp_path, task, cfg, answer):
    return run_scripted(task, resolve(cfg), tmp_path, answer, store_name=f"samples_{task}.jsonl")


def test_mbpp_prompt_is_the_harness_docstring():
    rec = {"description": MBPP_ROWS[0]["text"], "test_list": MBPP_ROWS[0]["test_list"]}
    assert mbpp.prompt(rec) == '"""\nWrite a function to add two integers.\nassert add(1, 2) == 3\n"""\n'


def test_mbpp_and_mbpp_plus_score_a_sloppy_completion_differently(tmp_path):
    cfg = base_config("deepseek-coder-tiny")
    cfg.workdir = str(tmp_path)
    plus = [{"task_id": f"Mbpp/{r['task_id']}", "prompt": r["text"], "test_list": r["test_list"],
             "test": "\n".join(r["test_list"]) + ("\nassert add(-4, 1) == -3" if r["task_id"] == 11 else "")}
            for r in MBPP_ROWS]
    cfg.eval.mbpp.update(path=_write(tmp_path, "mbpp.jsonl", MBPP_ROWS),
                         plus_path=_write(tmp_path, "mbppplus.jsonl", plus), ks=(1,))

    def answer(key, stop):
        return ANSWERS[key.split("/")[2].split("Mbpp/")[-1]]

    base = _run(tmp_path, "mbpp", cfg, answer)
    extended = _run(tmp_path, "mbpp_plus", cfg, lambda key, stop: ANSWERS[key.split("/")[-2]])
    assert base["problems"] == 2 and base["pass@1"] == 1.0
    assert extended["problems"] == 2 and extended["pass@1"] == 0.5
    harness_file = json.loads((tmp_path / "generations_mbpp.json").read_text())
    assert harness_file[0] == [mbpp.prompt(mbpp.load(cfg.eval.mbpp.path)[0]) + SLOPPY_ADD]


def test_humaneval_plus_reads_evalplus_rows(tmp_path):
    """HumanEval/0 with EvalPlus's kind of extra test: the canonical solution passes both, one that
    fails on a one-element list passes the base test only."""
    problem = humaneval.problems()[0]
    edge = "\n    assert candidate([1.0], 1.0) == False\n"  # an input the base tests lack
    row = {**problem, "test": problem["test"].rstrip() + edge}
    cfg = base_config("deepseek-coder-tiny")
    cfg.workdir = str(tmp_path)
    cfg.eval.humaneval.update(plus_path=_write(tmp_path, "heplus.jsonl", [row]), ks=(1,), limit=1)
    loose = ("\n    return min(abs(a - b) for i, a in enumerate(numbers) for j, b in enumerate(numbers) if i != j)"
             " < threshold\n")
    for i, (completion, expected) in enumerate(((humaneval.canonical_completion(problem), 1.0), (loose, 0.0))):
        (tmp_path / str(i)).mkdir()
        out = _run(tmp_path / str(i), "humaneval_plus", cfg, lambda key, stop, c=completion: c)
        assert out["problems"] == 1 and out["pass@1"] == expected, (completion, out)
    cfg.eval.humaneval.limit = 1
    assert _run(tmp_path, "humaneval", cfg, lambda key, stop: loose)["pass@1"] == 1.0  # the base test misses it
