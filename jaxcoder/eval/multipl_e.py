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

import json
from collections.abc import Sequence
from pathlib import Path

FIELDS = ("name", "language", "prompt", "tests", "stop_tokens")
DEMO = str(Path(__file__).with_name("problems") / "multipl_e_demo.jsonl")


def _check(record: dict, where: str) -> dict:
    missing = [f for f in FIELDS if f not in record]
    if missing:
        raise ValueError(f"{where}: a MultiPL-E record needs the fields {', '.join(FIELDS)}; missing "
                         f"{', '.join(missing)}")
    stops = record["stop_tokens"]
    return {**{f: record[f] for f in FIELDS}, "stop_tokens": list(stops) if stops is not None else []}


def load(source: str, languages: Sequence[str] = ()) -> list[dict]:
    """The records of `source` (a .jsonl or .parquet path, or `hf:<dataset>`), for `languages`
    (empty: all of them), in file order."""
    if source.startswith("hf:"):
        rows = _from_hub(source[3:], languages)
    elif source.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = pq.read_table(source).to_pylist()
    else:
        path = Path(source)
        if not path.exists():
            raise ValueError(f"eval.multipl_e.path={source}: no such file")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    records = [_check(r, f"eval.multipl_e.path={source} row {i}") for i, r in enumerate(rows)]
    have = sorted({r["language"] for r in records})
    absent = [lang for lang in languages if lang not in have]
    if absent:
        raise ValueError(f"eval.multipl_e.languages names {', '.join(absent)}, but {source} has problems in "
                         f"{', '.join(have) or 'no language'} only")
    return [r for r in records if not languages or r["language"] in languages]


def _from_hub(name: str, languages: Sequence[str]) -> list[dict]:
    try:
        import datasets
    except ImportError as e:
        raise ValueError("eval.multipl_e.path=hf:...: reading from the hub needs `pip install datasets`; "
                         "or give a local JSONL/Parquet file") from e
    if not languages:
        raise ValueError("eval.multipl_e.path=hf:...: name the languages (eval.multipl_e.languages), one "
                         "dataset configuration each")
    rows = []
    for lang in languages:
        rows += list(datasets.load_dataset(name, f"humaneval-{lang}", split="test"))
    return rows


def program(record: dict, completion: str) -> str:
    """The file MultiPL-E runs for one completion."""
    return record["prompt"] + completion + "\n" + record["tests"]
