"""Benchmark records from a local JSONL or Parquet file, or from the Hugging Face hub.

The tasks that read published benchmarks (MultiPL-E, SantaCoder's FIM task) take their rows as the
datasets store them: a local `.jsonl` / `.parquet` (exported from the dataset, or written by hand),
or `hf:<dataset>` read with `datasets` where a hub is reachable. Every row must carry the task's
fields; a missing one is named with the file and row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path


def load(source: str, fields: Sequence[str], field_name: str, languages: Sequence[str] = (),
         hub: Callable[[str, Sequence[str]], list[dict]] | None = None) -> list[dict]:
    """The rows of `source` with `fields` (the config field that named it in errors), those of
    `languages` only when any are named (each must have rows), in file order."""
    if source.startswith("hf:"):
        rows = _from_hub(source[3:], languages, hub, field_name)
    elif source.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = pq.read_table(source).to_pylist()
    else:
        path = Path(source)
        if not path.exists():
            raise ValueError(f"{field_name}={source}: no such file")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for i, row in enumerate(rows):
        missing = [f for f in fields if f not in row]
        if missing:
            raise ValueError(f"{field_name}={source} row {i}: a record needs the fields {', '.join(fields)}; missing "
                             f"{', '.join(missing)}")
    records = [{f: row[f] for f in fields} for row in rows]
    if "language" not in fields:
        return records
    have = sorted({r["language"] for r in records})
    absent = [lang for lang in languages if lang not in have]
    if absent:
        raise ValueError(f"{field_name.rsplit('.', 1)[0]}.languages names {', '.join(absent)}, but {source} has "
                         f"problems in {', '.join(have) or 'no language'} only")
    return [r for r in records if not languages or r["language"] in languages]


def _from_hub(name: str, languages: Sequence[str], hub, field_name: str) -> list[dict]:
    try:
        import datasets
    except ImportError as e:
        raise ValueError(f"{field_name}=hf:...: reading from the hub needs `datasets` (pip install "
                         f"'jaxcoder[eval]'); or give a local JSONL/Parquet file") from e
    return hub(name, languages) if hub else list(datasets.load_dataset(name, split="test"))
