"""`data prepare` at 1x and 4x the demo corpus: wall time and peak memory of the Beam pipeline
(DirectRunner, one worker per core), against the process-pool implementation it replaced
(run from a git revision of this repository, in the same run), and whether both keep the same
documents, token for token, given the same tokenizer (exact and near dedup deciding alike).

    python bench/prepare.py [--reference_rev ec4f292] [--copies 4] [--skip_reference]

Memory is the driver's peak resident set (the runner holds every shuffle) and the largest worker
process's; a pipeline whose memory followed the corpus would show 4x the 1x figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _record import record

ROOT = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: prepares the demo corpus (sources overridable) and prints what it measured.
PREPARE = r"""
import importlib.util, json, resource, sys, time
spec = importlib.util.spec_from_file_location("demo", sys.argv[1] + "/configs/demo.py")
demo = importlib.util.module_from_spec(spec); spec.loader.exec_module(demo)
from jaxcoder.config import resolve
cfg = demo.get_config()
cfg.data.prepared_dir = sys.argv[2]
roots = json.loads(sys.argv[3])
if sys.argv[4]:
    cfg.tokenizer.path = sys.argv[4]
if roots is not None:
    cfg.data.sources.repo_roots, cfg.data.sources.repo_dirs = tuple(roots), ()
run = resolve(cfg)
start = time.perf_counter()
if hasattr(run, "prepare"):  # the process-pool implementation took one PrepareConfig
    from jaxcoder.data.prepare import prepare
    manifest = prepare(run.prepare(), progress=False)
else:
    from jaxcoder.data.prepare import prepare
    manifest = prepare(run.data, run.tokenizer, progress=False)
seconds = time.perf_counter() - start
hwm = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": seconds, "driver_peak_mb": hwm / 1024, "worker_peak_mb": child / 1024,
                  "tokens": manifest["total_tokens"], "counts": manifest["counts"]}))
"""


def run_prepare(tree: Path, out: Path, roots: list[str] | None, tokenizer: str = "") -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", PREPARE, str(tree), str(out), json.dumps(roots), tokenizer],
                          env=env, capture_output=True, text=True, cwd=tree)
    if proc.returncode:
        raise RuntimeError(f"prepare in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def kept_documents(data_dir: Path) -> set[str]:
    """Hashes of the token sequences of every document a prepared directory holds (pieces joined)."""
    sys.path.insert(0, str(ROOT))
    from jaxcoder.data import shards

    manifest = shards.load_manifest(data_dir)
    out = set()
    for split in ("shards", "heldout_shards"):
        for lang in manifest[split]:
            for p in shards.shard_paths(data_dir, manifest, lang, "train" if split == "shards" else "heldout"):
                for doc in shards.read_documents(Path(p)):
                    out.add(hashlib.sha256(doc.astype("<i4").tobytes()).hexdigest())
    return out


def copies(work: Path, n: int) -> list[str]:
    """The demo corpus n times, each copy's repositories under other names (hard links)."""
    sys.path.insert(0, str(ROOT))
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo", ROOT / "configs" / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    sources = demo.get_config().data.sources
    roots = []
    for k in range(n):
        base = work / f"copy{k}"
        base.mkdir(parents=True)
        for src in list(sources.repo_roots):
            dest = base / f"{Path(src).name}-{k}"
            subprocess.run(["cp", "-al", src, str(dest)], check=True)
            roots.append(str(dest))
        dirs = base / f"repos-{k}"
        dirs.mkdir()
        for src in list(sources.repo_dirs):
            subprocess.run(["cp", "-al", src, str(dirs / f"{Path(src).name}-{k}")], check=True)
        roots.append(str(dirs))
    return roots


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--reference_rev", default="ec4f292", help="the commit of the process-pool implementation")
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--skip_reference", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = {}

        def measure(name, tree, out, roots, tokenizer=""):
            rows[name] = run_prepare(tree, out, roots, tokenizer)
            print(f"{name}: {json.dumps(rows[name])}", flush=True)

        measure("beam 1x", ROOT, tmp / "beam-1x", None)
        if not args.skip_reference:
            old = tmp / "reference-tree"
            old.mkdir()
            archive = subprocess.run(["git", "archive", args.reference_rev, "jaxcoder", "kernels", "configs"],
                                     cwd=ROOT, check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            measure("process pool 1x", old, tmp / "pool-1x", None)
            # Each trained its own tokenizer (on differently chosen samples); to compare what they
            # keep token for token, the process pool prepares once more with Beam's tokenizer.
            beam_tok = json.loads((tmp / "beam-1x" / "manifest.json").read_text())["tokenizer"]["path"]
            measure("process pool 1x, Beam's tokenizer", old, tmp / "pool-1x-same-tok", None,
                    str(tmp / "beam-1x" / beam_tok))
        roots = copies(tmp / "corpus", args.copies)
        measure(f"beam {args.copies}x", ROOT, tmp / f"beam-{args.copies}x", roots)
        print(f"{'implementation':22s} {'seconds':>8s} {'driver MB':>10s} {'worker MB':>10s} {'tokens':>12s}")
        for name, r in rows.items():
            print(f"{name:22s} {r['seconds']:8.1f} {r['driver_peak_mb']:10.0f} {r['worker_peak_mb']:10.0f} "
                  f"{r['tokens']:12,d}")
        beam1, beam4 = rows["beam 1x"], rows[f"beam {args.copies}x"]
        print(f"memory {args.copies}x / 1x: driver {beam4['driver_peak_mb'] / beam1['driver_peak_mb']:.2f}, "
              f"largest worker {beam4['worker_peak_mb'] / beam1['worker_peak_mb']:.2f}")
        if not args.skip_reference:
            pool = rows["process pool 1x"]
            ratio = beam1["seconds"] / pool["seconds"]
            print(f"wall time Beam / process pool: {ratio:.2f} (target <= 1.3: {'met' if ratio <= 1.3 else 'NOT met'})")
            ours, theirs = kept_documents(tmp / "beam-1x"), kept_documents(tmp / "pool-1x-same-tok")
            print(f"documents kept (same tokenizer, token sequences compared): Beam {len(ours):,}, process pool "
                  f"{len(theirs):,}, identical in both {len(ours & theirs):,}; near duplicates removed: Beam "
                  f"{beam1['counts'].get('duplicates/near')}, process pool {pool['counts'].get('duplicates/near')}")
            record("data prepare", "demo corpus wall time", beam1["seconds"], pool["seconds"], "s",
                   "process-pool implementation", higher_is_better=False)


if __name__ == "__main__":
    main()
