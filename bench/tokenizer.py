"""Tokenizer encode throughput and exactness, both kinds, on every file of the standard library:

* sentencepiece (jaxcoder's default) against Hugging Face tokenizers loaded from the tokenizer.json
  jaxcoder exports for it;
* the hf kind (a byte-level BPE trained here, as published code models ship) against transformers'
  own reading of the same tokenizer.json.

Both print the share of files whose ids are identical (100% is the requirement).

    python bench/tokenizer.py [--data_dir runs/bench/data]
"""

from __future__ import annotations

import argparse
import tempfile
import time

from _corpus import ensure_prepared, stdlib_texts
from _record import record

from jaxcoder.data.tokenizer import load_tokenizer


def timed(fn, texts):
    start = time.perf_counter()
    out = fn(texts)
    return out, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data_dir", default="runs/bench/data")
    ap.add_argument("--files", type=int, default=0, help="first N stdlib files (0: all)")
    args = ap.parse_args()
    texts = stdlib_texts(args.files or None)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    print(f"{len(texts)} stdlib files, {mb:.1f} MB")
    print(f"{'tokenizer':58s} {'MB/s':>8s} {'tokens/s':>12s} {'ratio':>7s} {'same ids':>9s}")
    for kind, directory in (("sentencepiece", args.data_dir), ("hf", f"{args.data_dir}-hf")):
        tok = load_tokenizer(ensure_prepared(directory, kind=kind))
        with tempfile.TemporaryDirectory() as d:
            tok.save_hf(d)
            ref = (AutoTokenizer if kind != "hf" else PreTrainedTokenizerFast).from_pretrained(d)
        ours, t_ours = timed(tok.encode_batch, texts)
        theirs, t_ref = timed(lambda x, ref=ref: ref(x, add_special_tokens=False)["input_ids"], texts)
        same = sum(a == b for a, b in zip(ours, theirs, strict=True)) / len(texts)
        n = sum(map(len, ours))
        label = "transformers (same tokenizer.json)" if kind == "hf" else "HF tokenizers (exported tokenizer.json)"
        print(f"{label + ', batch (reference)':58s} {mb / t_ref:8.2f} {n / t_ref:12,.0f} {1.0:7.2f}")
        print(f"{'jaxcoder ' + kind + ', batch':58s} {mb / t_ours:8.2f} {n / t_ours:12,.0f} {t_ref / t_ours:7.2f} "
              f"{same:9.1%}")
        record("tokenizer", f"batch encode, {kind} (ids identical: {same:.1%} of files)", n / t_ours, n / t_ref,
               "tokens/s", label)


if __name__ == "__main__":
    main()
