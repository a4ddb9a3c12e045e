"""Checkpoint save throughput: jaxcoder's Orbax checkpoint of a parameter-like pytree against a raw
write of the same bytes to the same disk, in the same run.

    python bench/checkpoint_save.py [--gib 1] [--dir ../runs/bench/ckpt] [--repeats 3]

Reported per repeat (best of `--repeats`): the raw write (one file per array, then fsync), the
checkpoint's time until `save()` returns (what the training loop waits for: the device-to-host
copy), and until the asynchronous write has committed; throughput = bytes / seconds and the ratio
checkpoint / raw (1.0 = as fast as the disk allows). `--local_dir` (default /dev/shm) adds the
emergency tier's save of the same pytree there (`train.local_checkpoint_dir`), the cheap one.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

import jax
import numpy as np

from jaxcoder.train.checkpoint import Checkpointer
from jaxcoder.train.emergency import LocalTier

ROOT = Path(__file__).resolve().parents[1]


def make_tree(gib: float, arrays: int = 16) -> dict:
    per = int(gib * (1 << 30)) // arrays // 4
    rng = np.random.default_rng(0)
    return {f"w{i:02d}": jax.device_put(rng.standard_normal(per, dtype=np.float32)) for i in range(arrays)}


def raw_write(tree: dict, directory: Path) -> float:
    directory.mkdir(parents=True)
    host = {k: np.asarray(v) for k, v in tree.items()}
    start = time.perf_counter()
    for name, array in host.items():
        with open(directory / name, "wb") as f:
            f.write(array.tobytes())
            f.flush()
            os.fsync(f.fileno())
    return time.perf_counter() - start


class _Position:
    """A data iterator's stand-in: the local tier records its position."""

    def get_state(self) -> bytes:
        return b"{}"


def checkpoint_write(tree: dict, directory: Path, local: bool = False) -> tuple[float, float]:
    if local:
        ckpt = LocalTier(directory, 1, {})
        ckpt.wait = ckpt.manager.wait_until_finished
    else:
        ckpt = Checkpointer(directory, max_to_keep=1)
    start = time.perf_counter()
    if local:
        ckpt.save(1, tree, {"count": jax.numpy.zeros((), np.int32)}, {}, _Position())
    else:
        ckpt.save(1, tree)
    blocked = time.perf_counter() - start
    ckpt.wait()
    done = time.perf_counter() - start
    ckpt.close()
    return blocked, done


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gib", type=float, default=1.0)
    parser.add_argument("--dir", default=str(ROOT / "runs" / "bench" / "ckpt"))
    parser.add_argument("--local_dir", default="/dev/shm/jaxcoder-bench-ckpt")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "runs" / "bench" / "checkpoint_save.jsonl"))
    args = parser.parse_args()
    tree = make_tree(args.gib)
    nbytes = sum(x.nbytes for x in tree.values())
    scratch = Path(args.dir)
    raw, blocked, done, local = [], [], [], []
    for i in range(args.repeats):
        shutil.rmtree(scratch, ignore_errors=True)
        raw.append(raw_write(tree, scratch / f"raw{i}"))
        b, d = checkpoint_write(tree, scratch / f"ckpt{i}")
        blocked.append(b)
        done.append(d)
        shutil.rmtree(args.local_dir, ignore_errors=True)
        local.append(checkpoint_write(tree, Path(args.local_dir), local=True))
    shutil.rmtree(scratch, ignore_errors=True)
    shutil.rmtree(args.local_dir, ignore_errors=True)
    gb = nbytes / 1e9
    row = {"bytes": nbytes, "raw_s": min(raw), "checkpoint_blocked_s": min(blocked), "checkpoint_s": min(done),
           "raw_gb_s": gb / min(raw), "checkpoint_gb_s": gb / min(done), "ratio": min(raw) / min(done),
           "local_blocked_s": min(b for b, _ in local), "local_s": min(d for _, d in local),
           "local_gb_s": gb / min(d for _, d in local), "local_dir": args.local_dir,
           "jax": jax.__version__, "date": time.strftime("%Y-%m-%d"), "disk": str(scratch)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(f"{gb:.2f} GB: raw write + fsync {row['raw_gb_s']:.2f} GB/s; checkpoint {row['checkpoint_gb_s']:.2f} GB/s "
          f"(training blocked {row['checkpoint_blocked_s']:.2f} s of {row['checkpoint_s']:.2f} s); "
          f"checkpoint / raw throughput {row['ratio']:.2f}; local tier ({args.local_dir}) "
          f"{row['local_gb_s']:.2f} GB/s (blocked {row['local_blocked_s']:.2f} s)", file=sys.stderr)


if __name__ == "__main__":
    main()
