"""Attention TFLOP/s: our Pallas kernel, cuDNN (jax.nn.dot_product_attention) and XLA in one run.

    python bench/attention.py                  # on a GPU: d 64/128, T 2K..16K, the full table
    python bench/attention.py --smoke          # anywhere: tiny shapes, checks every path runs

Sizing as the FlashAttention-3 paper: batch x T = 16K tokens, heads x head_dim = 2048. FLOPs by
the FlashAttention convention: forward 4*B*H*T^2*D, halved when causal; backward 2.5x forward.
Packed rows ("packed": documents of `--doc_len` tokens, as training batches are) are counted with
the causal FLOPs too, so skipping cross-document tiles shows up as a higher effective rate.
cuDNN sees packed documents as a dense mask (its API has no segment ids); XLA masks [T, T].
Every path is checked against the XLA output before it is timed; a path that cannot run the
case prints why instead of a number. Timing: median of `--iters` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from jaxcoder_kernels.flash_attention import flash_attention, platform_of_backend

from jaxcoder.model.attention_ops import cudnn_attention, cudnn_problem, xla_attention


def attention_flops(b: int, h: int, t: int, d: int, *, causal: bool = True, backward: bool = False) -> float:
    fwd = 4.0 * b * h * t * t * d / (2 if causal else 1)
    return fwd * (3.5 if backward else 1.0)


def _impls(on_cpu: bool):
    # XLA on GPU uses the plain [T, T] path (its fastest); the query-chunked path is what the model
    # uses at 16K for memory, and costs a little speed.
    return {
        "pallas": lambda q, k, v, seg, w: flash_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg,
                                                          sliding_window=w, interpret=on_cpu),
        "cudnn": lambda q, k, v, seg, w: cudnn_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg,
                                                         sliding_window=w),
        "xla": lambda q, k, v, seg, w: xla_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg,
                                                     sliding_window=w),
    }


def _time(fn, args, iters: int) -> float:
    out = fn(*args)
    jax.block_until_ready(out)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _case(b, t, h, kv, d, dtype, packed: bool, doc_len: int, seed=0):
    rng = np.random.default_rng(seed)
    q = jnp.asarray(rng.standard_normal((b, t, h, d)), dtype)
    k = jnp.asarray(rng.standard_normal((b, t, kv, d)), dtype)
    v = jnp.asarray(rng.standard_normal((b, t, kv, d)), dtype)
    seg = np.ones((b, t), np.int32)
    if packed:
        seg = np.broadcast_to(np.arange(t) // doc_len + 1, (b, t)).astype(np.int32)
    return q, k, v, jnp.asarray(seg)


def run(args) -> list[dict]:
    platform = platform_of_backend()
    on_cpu = platform == "cpu"
    dtype = jnp.dtype(args.dtype)
    impls = _impls(on_cpu)
    rows = []
    for d in args.head_dims:
        h = args.hidden // d
        kv = max(1, h // args.gqa)
        for t in args.seq_lens:
            b = max(1, args.tokens // t)
            for packed in (False, True):
                q, k, v, seg = _case(b, t, h, kv, d, dtype, packed, args.doc_len)
                cot = jnp.ones_like(q)
                ref = None
                for name, impl in impls.items():
                    if name == "cudnn" and cudnn_problem(q):
                        rows.append(dict(impl=name, d=d, t=t, packed=packed, skip=cudnn_problem(q)))
                        print(_line(rows[-1]), flush=True)
                        continue
                    fwd = jax.jit(lambda q, k, v, seg, impl=impl: impl(q, k, v, seg, args.window))
                    both = jax.jit(lambda q, k, v, seg, impl=impl, cot=cot: jax.vjp(
                        lambda q, k, v: impl(q, k, v, seg, args.window), q, k, v)[1](cot))
                    try:
                        out = fwd(q, k, v, seg)
                        if ref is None:
                            ref = xla_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg,
                                                sliding_window=args.window)
                        err = float(jnp.abs(out.astype(jnp.float32) - ref.astype(jnp.float32)).max())
                        t_fwd = _time(fwd, (q, k, v, seg), args.iters)
                        t_both = _time(both, (q, k, v, seg), args.iters)  # vjp: forward + backward
                    except Exception as e:  # e.g. out of memory for XLA's [T, T] scores at 16K
                        rows.append(dict(impl=name, d=d, t=t, packed=packed, skip=f"{type(e).__name__}: {str(e)[:80]}"))
                        print(_line(rows[-1]), flush=True)
                        continue
                    rows.append(dict(
                        impl=name, d=d, t=t, b=b, h=h, kv=kv, packed=packed, max_err=err,
                        fwd_ms=1e3 * t_fwd, fwd_bwd_ms=1e3 * t_both,
                        fwd_tflops=attention_flops(b, h, t, d) / t_fwd / 1e12,
                        fwd_bwd_tflops=attention_flops(b, h, t, d, backward=True) / t_both / 1e12))
                    print(_line(rows[-1]), flush=True)
    return rows


def _line(r: dict) -> str:
    case = f"d={r['d']:<4} T={r['t']:<6} {'packed' if r['packed'] else 'causal':<7} {r['impl']:<7}"
    if "skip" in r:
        return f"{case} n/a ({r['skip']})"
    return (f"{case} fwd {r['fwd_tflops']:7.3g} TFLOP/s  fwd+bwd {r['fwd_bwd_tflops']:7.3g} TFLOP/s"
            f"  (max |err| vs XLA {r['max_err']:.1e})")


def table(rows: list[dict]) -> str:
    """Markdown: one line per case, TFLOP/s per implementation and our ratio to the best other."""
    cases = sorted({(r["d"], r["t"], r["packed"]) for r in rows})
    out = ["| d | T | batch | ours fwd | cuDNN fwd | XLA fwd | ours fwd+bwd | cuDNN fwd+bwd | XLA fwd+bwd "
           "| ours / best other (fwd+bwd) |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for d, t, packed in cases:
        by = {r["impl"]: r for r in rows if (r["d"], r["t"], r["packed"]) == (d, t, packed)}

        def cell(name, key, by=by):
            return f"{by[name][key]:.3g}" if name in by and key in by[name] else "n/a"
        others = [by[n]["fwd_bwd_tflops"] for n in ("cudnn", "xla") if n in by and "fwd_bwd_tflops" in by[n]]
        ours = by.get("pallas", {}).get("fwd_bwd_tflops")
        ratio = f"{ours / max(others):.2f}x" if ours and others else "n/a"
        batch = next((r["b"] for r in by.values() if "b" in r), "")
        out.append(f"| {d} | {t}{' packed' if packed else ''} | {batch} | " + " | ".join(
            cell(n, k) for k in ("fwd_tflops", "fwd_bwd_tflops") for n in ("pallas", "cudnn", "xla"))
            + f" | {ratio} |")
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--head_dims", type=int, nargs="+", default=[64, 128])
    p.add_argument("--seq_lens", type=int, nargs="+", default=[2048, 4096, 8192, 16384])
    p.add_argument("--tokens", type=int, default=16384, help="batch x T")
    p.add_argument("--hidden", type=int, default=2048, help="heads x head_dim")
    p.add_argument("--gqa", type=int, default=1, help="query heads per KV head")
    p.add_argument("--window", type=int, default=None)
    p.add_argument("--doc_len", type=int, default=1024, help="document length in packed rows")
    p.add_argument("--dtype", default="bfloat16")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--smoke", action="store_true", help="tiny shapes (CPU: the kernel is interpreted)")
    args = p.parse_args()
    if args.smoke:
        args.head_dims, args.seq_lens, args.tokens, args.hidden = [32], [256], 512, 128
        args.doc_len, args.iters, args.dtype = 64, 2, "float32"
    dev = jax.devices()[0]
    print(f"# attention: {dev.device_kind} ({jax.default_backend()}), jax {jax.__version__}, "
          f"{datetime.date.today()}, dtype {args.dtype}, B*T={args.tokens}, H*D={args.hidden}, "
          f"GQA {args.gqa}, window {args.window}")
    if platform_of_backend() == "cpu":
        print("# CPU: the Pallas kernel runs in the interpreter; these rates say nothing about a GPU")
    rows = run(args)
    print(table(rows))


if __name__ == "__main__":
    main()
