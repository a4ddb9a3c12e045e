"""Sampling throughput of `jaxcoder eval`'s generation against transformers' `generate` on the same
model (exported to Hugging Face format), same sampling settings, same machine, in the same run.

    python bench/generation.py [--problems 8] [--samples 20] [--new_tokens 128]

The workload is HumanEval's as `jaxcoder eval` runs it with n samples per problem (temperature
0.8, top-p 0.95): prompts of the lengths HumanEval's first `--problems` prompts have in the demo
model's tokenizer (about 3.5 characters per token; random ids, as the model is random too), every
sample `--new_tokens` long (no stop token fires, so both sides do the same work). Ours: the eval's
batches of eval.batch_size (16) jobs; transformers: the bigcode harness's way, one prompt at a
time with num_return_sequences = n. Ours is timed twice: cold (compiling each new batch shape, as
one `jaxcoder eval` does) and warm (a second pass); transformers after a warm-up prompt (it has
nothing to compile). Reported: samples/s each and ours / theirs, warm and cold.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxcoder.eval import humaneval
from jaxcoder.eval.generate import SamplingConfig, batches, generate
from jaxcoder.model import functional as F
from jaxcoder.model.presets import preset

ROOT = Path(__file__).resolve().parents[1]


def demo_model():
    """The `make demo` model's architecture (DeepSeek line, 2.8M parameters), fresh weights."""
    import dataclasses

    cfg = dataclasses.replace(preset("deepseek-coder-tiny"), d_model=128, n_layers=4, n_heads=4, n_kv_heads=2,
                              head_dim=32, vocab_size=8192, d_ff=344, dtype="float32", remat="none")
    return cfg, jax.device_get(F.init_params(cfg, 0))


def prompts(n_problems: int, vocab: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    lengths = [max(8, round(len(humaneval.prompt(p)) / 3.5)) for p in humaneval.problems()[:n_problems]]
    return [rng.integers(100, vocab, size=n).tolist() for n in lengths]


def ours(cfg, params, jobs: list[list[int]], s: SamplingConfig, batch: int) -> float:
    start = time.perf_counter()
    for _, prompts, kw in batches(jobs, batch):  # as `jaxcoder eval` batches its jobs
        generate(cfg, params, prompts, s, **kw)
    return time.perf_counter() - start


def theirs(model, problems: list[list[int]], n: int, s: SamplingConfig) -> float:
    import torch

    start = time.perf_counter()
    with torch.no_grad():
        for p in problems:
            ids = torch.tensor([p])
            model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=s.temperature,
                           top_p=s.top_p, top_k=0, max_new_tokens=s.max_new_tokens, min_new_tokens=s.max_new_tokens,
                           num_return_sequences=n, pad_token_id=0)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--problems", type=int, default=8)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--new_tokens", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "generation.jsonl"))
    args = parser.parse_args()
    import torch
    from transformers import AutoModelForCausalLM

    from jaxcoder.export.hf_io import export_hf

    torch.manual_seed(0)
    cfg, params = demo_model()
    probs = prompts(args.problems, cfg.vocab_size)
    jobs = [p for p in probs for _ in range(args.samples)]
    s = SamplingConfig(max_new_tokens=args.new_tokens, temperature=0.8, top_p=0.95, seed=0)
    with tempfile.TemporaryDirectory() as d:
        export_hf(cfg, params, d)
        model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    t_cold = ours(cfg, params, jobs, s, args.batch)
    t_ours = ours(cfg, params, jobs, s, args.batch)
    theirs(model, probs[:1], args.samples, s)
    t_theirs = theirs(model, probs, args.samples, s)
    row = {"samples": len(jobs), "new_tokens": args.new_tokens, "ours_s": t_ours, "ours_cold_s": t_cold,
           "transformers_s": t_theirs, "ours_samples_per_s": len(jobs) / t_ours,
           "transformers_samples_per_s": len(jobs) / t_theirs, "ratio": t_theirs / t_ours,
           "ratio_cold": t_theirs / t_cold, "threads": torch.get_num_threads(), "jax": jax.__version__,
           "date": time.strftime("%Y-%m-%d")}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    sys.path.insert(0, str(Path(__file__).parent))
    from _record import record

    record("generation", "HumanEval-shaped sampling", row["ours_samples_per_s"], row["transformers_samples_per_s"],
           "samples/s", "transformers generate")
    print(f"{len(jobs)} samples of {args.new_tokens} tokens: jaxcoder {row['ours_samples_per_s']:.2f} samples/s, "
          f"transformers {row['transformers_samples_per_s']:.2f} samples/s; ratio {row['ratio']:.2f} warm, "
          f"{row['ratio_cold']:.2f} cold (compiles included)",
          file=sys.stderr)


if __name__ == "__main__":
    main()
