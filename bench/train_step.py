"""Train-step throughput on CPU: jaxcoder vs Hugging Face transformers (PyTorch) training the same
architecture from the same initial weights on the same batches, in one run. Also checks that the
first-step losses agree (same model, same data).

    python bench/train_step.py [--line deepseek|starcoder2|santacoder] [--steps 10]

On a GPU, pass --device_peak_tflops to print jaxcoder's MFU for the chosen shape (e.g. the
DeepSeek-Coder 1.3B preset at seq 4096 with --preset deepseek-coder-1.3b --seq_len 4096 --batch 4).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from _record import record

from jaxcoder.export.hf_io import export_hf
from jaxcoder.model import functional as F
from jaxcoder.model.presets import preset
from jaxcoder.train.optimizer import OptimizerConfig, make_optimizer
from jaxcoder.train.step import make_train_step

SMALL = dict(d_model=256, n_layers=4, n_heads=8, head_dim=32, vocab_size=8192, max_seq_len=1024)
LINES = {"deepseek": ("deepseek-coder-tiny", dict(n_kv_heads=4, d_ff=688)),
         "starcoder2": ("starcoder2-tiny", dict(n_kv_heads=4, d_ff=1024, sliding_window=None)),
         "santacoder": ("santacoder-tiny", dict(n_kv_heads=1, d_ff=1024))}


def batches(cfg, batch, seq, n, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n):
        toks = rng.integers(3, cfg.vocab_size, (batch, seq + 1)).astype(np.int32)
        yield toks


def run_jax(cfg, params, data, lr):
    opt = make_optimizer(OptimizerConfig(lr=lr, warmup_steps=0, total_steps=10**6, schedule="constant",
                                         weight_decay=0.0, clip_norm=1e9))
    step = jax.jit(make_train_step(cfg, opt), donate_argnums=(0, 1))
    state = opt.init(params)
    losses, times = [], []
    for toks in data:
        b, t = toks.shape[0], toks.shape[1] - 1
        batch = {"inputs": jnp.asarray(toks[:, :-1]), "targets": jnp.asarray(toks[:, 1:]),
                 "segment_ids": jnp.ones((b, t), jnp.int32),
                 "positions": jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t)),
                 "loss_mask": jnp.ones((b, t), jnp.int32)}
        start = time.perf_counter()
        params, state, m = step(params, state, batch)
        losses.append(float(m["loss"]))  # blocks until the step is done
        times.append(time.perf_counter() - start)
    return losses, times


def run_torch(model_dir, data, lr):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="sdpa")
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    losses, times = [], []
    for toks in data:
        x = torch.tensor(toks, dtype=torch.long)
        start = time.perf_counter()
        logits = model(input_ids=x[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        times.append(time.perf_counter() - start)
    return losses, times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--line", default="deepseek", choices=sorted(LINES))
    ap.add_argument("--preset", default=None, help="a full preset instead of the small CPU model")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq_len", type=int, default=256)
    ap.add_argument("--device_peak_tflops", type=float, default=0.0)
    ap.add_argument("--skip_torch", action="store_true")
    args = ap.parse_args()
    if args.preset:
        cfg = preset(args.preset, dtype="bfloat16")
    else:
        name, extra = LINES[args.line]
        cfg = preset(name, **SMALL, **extra, dtype="float32", remat="none")
    params = F.init_params(cfg, 0)
    host_params = jax.tree.map(np.asarray, params)  # the step donates its inputs
    data = list(batches(cfg, args.batch, args.seq_len, args.steps + 2))
    tokens = args.batch * args.seq_len
    j_losses, j_times = run_jax(cfg, params, data, 1e-3)
    j_tps = tokens / np.median(j_times[2:])
    print(f"model: {cfg.param_count():,} parameters ({args.preset or args.line}); batch {args.batch} x "
          f"{args.seq_len}; {args.steps} timed steps after 2 warm-up; device {jax.devices()[0].device_kind}")
    rows = [("jaxcoder (JAX, jit)", j_tps)]
    if not args.skip_torch:
        import torch
        torch.set_num_threads(max(1, len(__import__("os").sched_getaffinity(0))))
        with tempfile.TemporaryDirectory() as d:
            export_hf(cfg.replace(dtype="float32"), host_params, d)
            t_losses, t_times = run_torch(d, data, 1e-3)
        rows.insert(0, ("transformers (PyTorch, reference)", tokens / np.median(t_times[2:])))
        print(f"first-step loss: jaxcoder {j_losses[0]:.5f}, transformers {t_losses[0]:.5f}")
    ref = rows[0][1]
    print(f"{'implementation':36s} {'tokens/s':>10s} {'ratio':>7s}")
    for name, tps in rows:
        print(f"{name:36s} {tps:10,.0f} {tps / ref:7.2f}")
    if len(rows) > 1:
        record("train step", "CPU training throughput", j_tps, ref, "tokens/s", "transformers + PyTorch")
    if args.device_peak_tflops:
        util = j_tps * cfg.flops_per_token(args.seq_len) / (args.device_peak_tflops * 1e12)
        print(f"jaxcoder MFU: {util:.1%} of {args.device_peak_tflops} TFLOP/s")


if __name__ == "__main__":
    main()
