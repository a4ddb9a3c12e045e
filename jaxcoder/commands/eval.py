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


LOAD_GENERATIONS = flags.DEFINE_string(
    "load_generations", None, "Score a bigcode-evaluation-harness generations file (its --save_generations "
    "output) in our sandbox instead of generating: eval.tasks names its task; no checkpoint needed.")


def main(argv):
    del argv
    run = common.require_config()
    if LOAD_GENERATIONS.value:
        results = runner.score_generations(run, LOAD_GENERATIONS.value)
        print(f"eval of {LOAD_GENERATIONS.value} (sandbox isolation: {results['sandbox_isolation']}; "
              f"{results['seconds']} s):")
        print(runner.table(results))
        return
    ckpt = common.require(common.CHECKPOINT, "the checkpoint to evaluate")
    results = runner.run(run, ckpt, common.STEP.value, untrained=UNTRAINED.value)
    what = "untrained baseline" if UNTRAINED.value else f"step {results['step']}"
    print(f"eval of {ckpt} {what} (sandbox isolation: {results['sandbox_isolation']}; "
          f"{results['seconds']} s):")
    print(runner.table(results))
    print(json.dumps({k: v for k, v in results.items() if k not in ("perplexity",)}, indent=None)[:2000])
