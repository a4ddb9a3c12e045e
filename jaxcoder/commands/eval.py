"""jaxcoder eval: evaluate a checkpoint on the tasks in eval.tasks (perplexity and bits per byte
on held-out shards, HumanEval pass@k in a sandbox, FIM exact match: HumanEval single lines,
held-out lines, held-out random spans). --untrained evaluates freshly initialised weights.

Resumable: generated and executed samples are kept under eval.out_dir and reused on a rerun.
"""

from __future__ import annotations

import json

from absl import flags

from jaxcoder.commands import common
from jaxcoder.eval import runner

UNTRAINED = flags.DEFINE_bool("untrained", False, "Evaluate the checkpoint's architecture with freshly "
                              "initialised weights instead (the baseline; results under eval/untrained_seed<seed>).")


def main(argv):
    del argv
    run = common.require_config()
    ckpt = common.require(common.CHECKPOINT, "the checkpoint to evaluate")
    results = runner.run(run, ckpt, common.STEP.value, untrained=UNTRAINED.value)
    what = "untrained baseline" if UNTRAINED.value else f"step {results['step']}"
    print(f"eval of {ckpt} {what} (sandbox isolation: {results['sandbox_isolation']}; "
          f"{results['seconds']} s):")
    print(runner.table(results))
    print(json.dumps({k: v for k, v in results.items() if k not in ("perplexity",)}, indent=None)[:2000])
