"""Prints the ratio table of a `make bench` run (the lines the benchmarks appended to the record file)."""

from __future__ import annotations

import datetime
import json
import platform
import sys
from pathlib import Path

import jax


def main(path: str) -> None:
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    print(f"\n# CPU benchmarks: {jax.devices()[0].device_kind}, {jax.device_count()} device(s), "
          f"jax {jax.__version__}, Python {platform.python_version()}, {datetime.date.today()}\n")
    print("| benchmark | measure | jaxcoder | reference | ratio (> 1: jaxcoder better) |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['bench']} | {r['measure']} ({r['unit']}) | {r['ours']:,.4g} | {r['reference']:,.4g} "
              f"({r['reference_name']}) | {r['ratio']:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])
