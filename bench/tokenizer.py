"""Tokenizer encode throughput: sentencepiece (what jaxcoder's pipeline uses) vs Hugging Face
tokenizers loaded from the same model (the tokenizer.json jaxcoder exports), same texts, same ids.

    python bench/tokenizer.py [--data_dir runs/bench/data]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _corpus import ensure_prepared, stdlib_texts
from _record import record

from jaxcoder.data.tokenizer import Tokenizer, save_hf_tokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data_dir", default="runs/bench/data")
    ap.add_argument("--files", type=int, default=1000)
    args = ap.parse_args()
    model = ensure_prepared(args.data_dir) / "tokenizer.model"
    texts = stdlib_texts(args.files)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    sp = Tokenizer(model)
    with tempfile.TemporaryDirectory() as d:
        save_hf_tokenizer(model, d)
        from transformers import AutoTokenizer
        hf = AutoTokenizer.from_pretrained(d)

    start = time.perf_counter()
    ours = sp.encode_batch(texts)
    t_sp = time.perf_counter() - start
    start = time.perf_counter()
    ref = hf(texts, add_special_tokens=False)["input_ids"]
    t_hf = time.perf_counter() - start
    same = sum(a == b for a, b in zip(ours, ref, strict=True)) / len(texts)
    n = sum(map(len, ours))
    print(f"{len(texts)} files, {mb:.1f} MB, {n:,} tokens; identical ids for {same:.1%} of files")
    print(f"{'tokenizer':34s} {'MB/s':>8s} {'tokens/s':>12s} {'ratio':>7s}")
    print(f"{'HF tokenizers, batch (reference)':34s} {mb / t_hf:8.2f} {n / t_hf:12,.0f} {1.0:7.2f}")
    print(f"{'sentencepiece, batch (jaxcoder)':34s} {mb / t_sp:8.2f} {n / t_sp:12,.0f} {t_hf / t_sp:7.2f}")
    record("tokenizer", "batch encode", n / t_sp, n / t_hf, "tokens/s", "HF tokenizers")


if __name__ == "__main__":
    main()
