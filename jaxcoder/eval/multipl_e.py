"""MultiPL-E (Cassano et al.): HumanEval and MBPP translated into other languages.

Records carry MultiPL-E's fields: `name`, `language` (its short names: cpp, java, js, rs, sh, pl,
py, ...), `prompt` (a signature and docstring in that language), `tests` (the problem's assertions)
and `stop_tokens` (where a completion ends). A sample's program is `prompt + completion + "\n" +
tests`, as MultiPL-E's executors build it; it passes when it compiles and runs to exit status 0
(`languages.py`).

Records come from a local JSONL or Parquet file (the dataset's own rows, e.g. exported from
`nuprl/MultiPL-E`), or from the Hugging Face hub by name (`hf:nuprl/MultiPL-E`, the
`humaneval-<lang>` configurations) where a hub is reachable. `problems/multipl_e_demo.jsonl` holds
a few problems written for this project (JavaScript and C++), for the demo and the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from jaxcoder.eval.records import load as load_records

FIELDS = ("name", "language", "prompt", "tests", "stop_tokens")
DEMO = str(Path(__file__).with_name("problems") / "multipl_e_demo.jsonl")


def load(source: str, languages: Sequence[str] = ()) -> list[dict]:
    """The records of `source` (a .jsonl or .parquet path, or `hf:<dataset>`), for `languages`
    (empty: all of them), in file order."""
    records = load_records(source, FIELDS, "eval.multipl_e.path", languages, hub=_from_hub)
    return [{**r, "stop_tokens": list(r["stop_tokens"] or [])} for r in records]


def _from_hub(name: str, languages: Sequence[str]) -> list[dict]:
    """MultiPL-E's `humaneval-<lang>` configurations, one per language."""
    import datasets

    if not languages:
        raise ValueError("eval.multipl_e.path=hf:...: name the languages (eval.multipl_e.languages), one "
                         "dataset configuration each")
    return [row for lang in languages for row in datasets.load_dataset(name, f"humaneval-{lang}", split="test")]


def program(record: dict, completion: str) -> str:
    """The file MultiPL-E runs for one completion."""
    return record["prompt"] + completion + "\n" + record["tests"]
