"""Per-device memory of the published presets at their 16K context, from the TPU compiler (libtpu,
ahead of time on this CPU host) next to the XLA CPU compiler's estimate for the same run on as
many fake CPU devices; and the largest batch per device that fits the generation's HBM.

    python bench/tpu_memory.py [--only starcoder2.py:3b] [--out ../runs/bench/tpu_memory.jsonl]

Each row: FSDP over the whole slice, batch = chips x batch-per-device, full remat, the default
(auto) attention, which is splash attention for the TPU and XLA's chunked attention on CPU. The
largest batch per device is found by compiling: a line through the peaks at 1 and 2 rows per
device predicts it, then compiles at and around the prediction (bisecting when it overshoots)
decide; the first size that does not fit is compiled too. Every compile's memory is kept in
`--compiles` (one JSON line each), so a search that is stopped resumes where it was: the larger
presets take minutes per compile.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

MAX_CHIPS = 256
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={MAX_CHIPS}"

from jaxcoder.config import resolve  # noqa: E402
from jaxcoder.parallel.topology import tpu_devices  # noqa: E402
from jaxcoder.train.dry_run import DryRunReport, GiB, dry_run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEQ_LEN = 16384
# (config, TPU slice, chips): StarCoder2-3B on the v5p-128 of the README runbook; the rest on the
# smallest common slice of that generation whose HBM holds the model with FSDP.
ROWS = [("starcoder2.py:3b", "v5p:4x4x4", 64), ("starcoder2.py:7b", "v5p:4x4x4", 64),
        ("starcoder2.py:15b", "v5p:4x4x8", 128), ("deepseek_coder.py:1.3b", "v5e:8x8", 64),
        ("deepseek_coder.py:6.7b", "v5p:4x4x4", 64), ("deepseek_coder.py:33b", "v5p:4x8x8", 256)]


def run_config(config: str, chips: int, per_device: int, cpu: bool):
    path, arg = config.split(":")
    spec = importlib.util.spec_from_file_location(path[:-3], ROOT / "configs" / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cfg = module.get_config(arg)
    cfg.mesh.update(data=1, fsdp=-1, num_devices=chips if cpu else 0)
    cfg.train.update(batch_size=chips * per_device, seq_len=SEQ_LEN)
    return resolve(cfg)


class Compiles:
    """The memory of every compile so far, by (config, target, rows per device), in a JSONL file."""

    def __init__(self, path: Path):
        self.path = path
        self.known = {}
        if path.exists():
            for line in path.read_text().splitlines():
                r = json.loads(line)
                self.known[r["config"], r["target"], r["per_device"]] = DryRunReport(**r["report"])

    def get(self, config: str, target: str, per_device: int, compile_fn) -> DryRunReport:
        key = (config, target, per_device)
        if key not in self.known:
            report = compile_fn()
            self.known[key] = report
            with self.path.open("a") as f:
                f.write(json.dumps({"config": config, "target": target, "per_device": per_device,
                                    "report": dataclasses.asdict(report)}) + "\n")
            print(f"  {config} {target} x{per_device}/device: peak {report.peak_bytes / GiB:.2f} GiB "
                  f"({report.compile_seconds:.0f} s)", flush=True)
        return self.known[key]


def measure(config: str, topology: str, chips: int, compiles: Compiles) -> dict:
    devices = []

    def tpu(n: int) -> DryRunReport:
        def compile_fn():
            if not devices:
                devices.extend(tpu_devices(topology))
                assert len(devices) == chips, (topology, len(devices))
            return dry_run(run_config(config, chips, n, cpu=False), devices)
        return compiles.get(config, topology, n, compile_fn)

    one = tpu(1)
    cpu = compiles.get(config, f"cpu:{chips}", 1, lambda: dry_run(run_config(config, chips, 1, cpu=True)))
    peaks = {1: one, 2: tpu(2)}

    def fits(n: int) -> bool:
        peaks[n] = tpu(n)
        return peaks[n].fits

    most = 0
    if fits(1):
        most = 1
    if fits(2):
        # Peak memory is close to linear in the batch, not exactly (the compiler's choices change
        # with it): start from the line's prediction, then let compiles decide.
        slope = max(peaks[2].peak_bytes - one.peak_bytes, 1)
        most = max(2, 1 + int((one.budget_bytes - one.peak_bytes) // slope))
        if fits(most):
            while fits(most + 1):
                most += 1
        else:
            lo, hi = 2, most
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if fits(mid) else (lo, mid)
            most = lo
    if most:
        fits(most + 1)  # the first size that does not fit, compiled too
    return {"config": config, "topology": topology, "chips": chips, "device_kind": one.device_kind,
            "hbm_gib": one.budget_bytes / GiB, "seq_len": SEQ_LEN, "params": one.params,
            "tpu": {"arguments": one.argument_bytes, "temporaries": one.temp_bytes, "code": one.code_bytes,
                    "peak": one.peak_bytes, "compile_s": one.compile_seconds},
            "cpu": {"arguments": cpu.argument_bytes, "temporaries": cpu.temp_bytes, "peak": cpu.peak_bytes,
                    "compile_s": cpu.compile_seconds},
            "cpu_over_tpu_peak": cpu.peak_bytes / one.peak_bytes,
            "max_batch_per_device": most,
            "peaks_by_batch_per_device": {n: r.peak_bytes for n, r in sorted(peaks.items())}}


def table(rows: list[dict]) -> str:
    lines = ["| preset (16K context) | TPU slice | TPU: args / temps / peak per device (GiB) | CPU estimate: "
             "args / temps / peak (GiB) | CPU / TPU peak | largest batch / device |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        t, c = r["tpu"], r["cpu"]
        most = r["max_batch_per_device"] or "0 (does not fit)"
        lines.append(f"| {r['config']} | {r['topology']} ({r['chips']} x {r['device_kind']}, {r['hbm_gib']:.0f} GiB) "
                     f"| {t['arguments'] / GiB:.2f} / {t['temporaries'] / GiB:.2f} / {t['peak'] / GiB:.2f} "
                     f"| {c['arguments'] / GiB:.2f} / {c['temporaries'] / GiB:.2f} / {c['peak'] / GiB:.2f} "
                     f"| {r['cpu_over_tpu_peak']:.2f} | {most} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="", help="configs to run, e.g. starcoder2.py:3b,starcoder2.py:7b")
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "tpu_memory.jsonl"))
    parser.add_argument("--compiles", default=str(ROOT / "runs" / "bench" / "tpu_memory_compiles.jsonl"),
                        help="every compile's memory, reused on the next run")
    args = parser.parse_args()
    import jax

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {json.loads(line)["config"]: json.loads(line) for line in out.open()} if out.exists() else {}
    start = time.time()
    for config, topology, chips in ROWS:
        if args.only and config not in args.only.split(",") or config in done:
            continue
        done[config] = measure(config, topology, chips, Compiles(Path(args.compiles)))
        with out.open("a") as f:
            f.write(json.dumps(done[config]) + "\n")
    print(f"\n# TPU-compiler memory vs the CPU estimate: jax {jax.__version__}, "
          f"{time.strftime('%Y-%m-%d')}, {time.time() - start:.0f} s\n", file=sys.stderr)
    print(table([done[c] for c, _, _ in ROWS if c in done]))


if __name__ == "__main__":
    main()
