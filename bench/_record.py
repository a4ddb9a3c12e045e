"""Shared by the benchmarks: each appends its headline ratio to the file named by
$JAXCODER_BENCH_RECORD (set by `make bench`), which `bench/summary.py` prints as one table."""

from __future__ import annotations

import json
import os


def record(bench: str, measure: str, ours: float, reference: float, unit: str, reference_name: str,
           higher_is_better: bool = True) -> None:
    """Appends one line: our value, the reference's, and ours relative to it (> 1 = better)."""
    path = os.environ.get("JAXCODER_BENCH_RECORD")
    if not path:
        return
    ratio = ours / reference if higher_is_better else reference / ours
    with open(path, "a") as f:
        f.write(json.dumps({"bench": bench, "measure": measure, "ours": ours, "reference": reference,
                            "reference_name": reference_name, "unit": unit, "ratio": ratio}) + "\n")
