"""Loader throughput: prepared ArrayRecord shards -> FIM -> packing -> batches, on ONE core.

Reference in the same run: reading and decoding the same records with no transformation (the
ceiling for any loader over these shards). Target: >= 1M tokens/s per core with FIM at 0.5.

    python bench/data_pipeline.py [--data_dir runs/bench/data] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from _corpus import ensure_prepared
from _record import record

from jaxcoder.data import pipeline, shards
from jaxcoder.data.fim import FimConfig


def rate(it, seconds: float, per_item) -> float:
    next(it)  # warm up (opens files, spawns nothing: one core)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        n += per_item(next(it))
    return n / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data_dir", default="runs/bench/data")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seq_len", type=int, default=2048)
    ap.add_argument("--batch_size", type=int, default=8)
    args = ap.parse_args()
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, honestly
    data_dir = ensure_prepared(args.data_dir)
    manifest = shards.load_manifest(data_dir)
    paths = [p for lang in manifest["shards"] for p in shards.shard_paths(data_dir, manifest, lang)]

    import grain
    raw = iter(grain.MapDataset.source(grain.sources.ArrayRecordDataSource(paths)).seed(0).shuffle().repeat()
               .map(shards.decode_record).to_iter_dataset())
    raw_tps = rate(raw, args.seconds, len)
    rows = []
    for fim_rate in (0.0, 0.5):
        layout = manifest["tokenizer"]["layout"]
        fim = FimConfig(rate=fim_rate, spm_rate=0.0 if layout == "deepseek" else 0.5, layout=layout)
        cfg = pipeline.PipelineConfig(data_dir=str(data_dir), seq_len=args.seq_len, batch_size=args.batch_size,
                                      fim=fim)
        tps = rate(iter(pipeline.build(cfg)), args.seconds, lambda b: int(np.prod(b["inputs"].shape)))
        rows.append((fim_rate, tps))
    print(f"data: {data_dir} ({manifest['total_tokens']:,} tokens); one core; seq_len {args.seq_len}")
    print(f"{'loader':34s} {'tokens/s':>12s} {'vs raw read':>12s}")
    print(f"{'record-by-record read (reference)':34s} {raw_tps:12,.0f} {1.0:12.2f}")
    for fim_rate, tps in rows:
        print(f"{f'jaxcoder pipeline, FIM {fim_rate}':34s} {tps:12,.0f} {tps / raw_tps:12.2f}")
    record("data pipeline", "loader tokens/s/core, FIM 0.5", rows[-1][1], raw_tps, "tokens/s",
           "record-by-record ArrayRecord read")
    print(f"target >= 1,000,000 tokens/s/core with FIM 0.5: {'met' if rows[-1][1] >= 1e6 else 'NOT met'}")


if __name__ == "__main__":
    main()
