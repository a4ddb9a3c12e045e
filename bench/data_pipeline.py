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
    # The same corpus tokenized with a byte-level BPE (the `hf` kind, as published code models ship).
    hf_dir = ensure_prepared(f"{args.data_dir}-hf", kind="hf")
    rows = []
    for name, directory, fim_rate in (("sentencepiece", data_dir, 0.0), ("sentencepiece", data_dir, 0.5),
                                      ("hf", hf_dir, 0.5)):
        layout = shards.load_manifest(directory)["tokenizer"]["layout"]
        fim = FimConfig(rate=fim_rate, spm_rate=0.0 if layout == "deepseek" else 0.5, layout=layout)
        cfg = pipeline.LoaderConfig(data_dir=str(directory), seq_len=args.seq_len, batch_size=args.batch_size,
                                      fim=fim)
        tps = rate(iter(pipeline.build(cfg)), args.seconds, lambda b: int(np.prod(b["inputs"].shape)))
        rows.append((f"jaxcoder pipeline, {name}, FIM {fim_rate}", tps))
    print(f"data: {data_dir} ({manifest['total_tokens']:,} tokens); one core; seq_len {args.seq_len}")
    print(f"{'loader':40s} {'tokens/s':>12s} {'vs raw read':>12s}")
    print(f"{'record-by-record read (reference)':40s} {raw_tps:12,.0f} {1.0:12.2f}")
    for name, tps in rows:
        print(f"{name:40s} {tps:12,.0f} {tps / raw_tps:12.2f}")
    record("data pipeline", "loader tokens/s/core, FIM 0.5", rows[1][1], raw_tps, "tokens/s",
           "record-by-record ArrayRecord read")
    record("data pipeline", "loader tokens/s/core, FIM 0.5, byte-level BPE", rows[2][1], raw_tps, "tokens/s",
           "record-by-record ArrayRecord read")
    for name, tps in rows[1:]:
        print(f"target >= 1,000,000 tokens/s/core, {name}: {'met' if tps >= 1e6 else 'NOT met'}")


if __name__ == "__main__":
    main()
