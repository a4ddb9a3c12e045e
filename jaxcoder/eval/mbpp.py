"""MBPP (Austin et al.) and EvalPlus's MBPP+: Python problems stated in a sentence, with assertions.

The prompt is the bigcode harness's and the papers': the description and the first test inside a
docstring, `\"\"\"\n{description}\n{first test}\n\"\"\"\n`; a sample's program is the prompt, the
completion, then every test (MBPP's `test_list`; MBPP+'s extended `test` script). Rows come from a
JSONL/Parquet file or the hub (`hf:google-research-datasets/mbpp`, `hf:evalplus/mbppplus`; the
test split).
"""

from __future__ import annotations

from jaxcoder.eval.records import load as load_records

# bigcode-evaluation-harness `mbpp` stop words.
STOP_WORDS = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")


def load(source: str, plus: bool = False) -> list[dict]:
    """Rows as {task_id, description, test_list, tests}; `plus`: EvalPlus's MBPP+ rows, whose
    description is `prompt` and whose tests are its `test` script."""
    if plus:
        rows = load_records(source, ("task_id", "prompt", "test_list", "test"), "eval.mbpp.plus_path")
        return [{"task_id": str(r["task_id"]), "description": r["prompt"], "test_list": list(r["test_list"]),
                 "tests": r["test"]} for r in rows]
    rows = load_records(source, ("task_id", "text", "test_list"), "eval.mbpp.path")
    return [{"task_id": str(r["task_id"]), "description": r["text"], "test_list": list(r["test_list"]),
             "tests": "\n".join(r["test_list"])} for r in rows]


def prompt(record: dict) -> str:
    return f'"""\n{record["description"]}\n{record["test_list"][0]}\n"""\n'


def program(record: dict, completion: str) -> str:
    return prompt(record) + completion + "\n" + record["tests"] + "\n"
