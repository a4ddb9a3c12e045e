"""Where evaluation samples are kept: an append-only JSONL map, so an interrupted evaluation
resumes with what it had generated and executed."""

from __future__ import annotations

import json
from pathlib import Path


class SampleStore:
    """An append-only JSONL map: what was generated or executed survives interruptions."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, object] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash: that sample is redone
                    continue
                self.values[rec["key"]] = rec["value"]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a")

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str):
        return self.values[key]

    def put(self, key: str, value) -> None:
        self.values[key] = value
        self._file.write(json.dumps({"key": key, "value": value}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
