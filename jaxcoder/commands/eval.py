"""jaxcoder eval: evaluate a checkpoint on the tasks in eval.tasks (perplexity and bits per byte
on held-out shards, HumanEval pass@k in a sandbox, FIM single-line and random-span exact match).

Resumable: generated and executed samples are kept under eval.out_dir and reused on a rerun.
"""

from __future__ import annotations

import json

from jaxcoder.commands import common
from jaxcoder.eval import runner


def main(argv):
    del argv
    cfg = common.require_config()
    ckpt = common.require(common.CHECKPOINT, "the checkpoint to evaluate")
    results = runner.run(cfg, ckpt, common.STEP.value)
    print(f"eval of {ckpt} step {results['step']} (sandbox isolation: {results['sandbox_isolation']}; "
          f"{results['seconds']} s):")
    print(runner.table(results))
    print(json.dumps({k: v for k, v in results.items() if k not in ("perplexity",)}, indent=None)[:2000])
