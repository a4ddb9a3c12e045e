"""`jaxcoder eval`: the configured tasks on one checkpoint, resumable.

Every generated sample and every execution result is appended to
`<out_dir>/step_<N>/samples.jsonl` as soon as it exists, keyed by task, problem, sample index and
sampling settings; a rerun reuses them and only does what is missing. Results go to
`<out_dir>/step_<N>/results.json` and a printed table. The tasks themselves are registered
functions (`jaxcoder/eval/tasks.py`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jax

from jaxcoder.data.tokenizer import load_tokenizer
from jaxcoder.eval.generate import place
from jaxcoder.eval.sandbox import describe, isolation
from jaxcoder.eval.store import SampleStore
from jaxcoder.eval.tasks import FIM_TASKS, TASKS, EvalContext
from jaxcoder.model.config import ModelConfig
from jaxcoder.train.checkpoint import checkpoint_tokenizer, load_params, read_meta, recorded_layout

if TYPE_CHECKING:
    from jaxcoder.config import RunConfig


PASS_AT_K_TASKS = {"humaneval": "HumanEval", "humaneval_plus": "HumanEval+", "mbpp": "MBPP", "mbpp_plus": "MBPP+"}


def _model(run: RunConfig, checkpoint: str, step: int | None, untrained: bool):
    """(model config, params, meta); `untrained`: the checkpoint's architecture, fresh weights
    (the saved arrays are not read)."""
    if not untrained:
        return load_params(checkpoint, step)
    from jaxcoder.model import functional as F

    _, meta = read_meta(checkpoint, step)
    mcfg = ModelConfig.from_dict(meta["model"])
    return mcfg, jax.device_get(F.init_params(mcfg, run.seed)), meta


def score_generations(run: RunConfig, path: str) -> dict:
    """Scores a bigcode-evaluation-harness generations file (`harness.py`) in our sandbox, for the
    one generation task in eval.tasks (`humaneval`, or `multipl_e` with one language); no model is
    loaded. Results under `<eval.out_dir>/harness_<file name>/`."""
    tasks = tuple(run.eval.tasks)
    one_language = len(run.eval.multipl_e.languages) == 1
    single = len(tasks) == 1 and tasks[0] in ("humaneval", "humaneval_plus", "mbpp", "mbpp_plus", "multipl_e")
    if not single or (tasks == ("multipl_e",) and not one_language):
        raise ValueError(f"--load_generations={path}: set eval.tasks to the file's task, e.g. ('humaneval',), or "
                         f"('multipl_e',) with one eval.multipl_e.languages; got eval.tasks={tasks}")
    out_dir = Path(run.eval.out_dir or Path(run.workdir) / "eval") / f"harness_{Path(path).stem}"
    store = SampleStore(out_dir / "samples.jsonl")
    ctx = EvalContext(run=run, checkpoint=str(path), mcfg=None, params=None, tokenizer=None,
                      layout=run.tokenizer.layout, store=store, loaded=str(path))
    return _run_tasks(ctx, tasks, {"generations": str(path), "step": 0, "untrained": False}, out_dir)


def _run_tasks(ctx: EvalContext, tasks: tuple[str, ...], results: dict, out_dir: Path) -> dict:
    results["sandbox_isolation"] = describe(isolation())
    start = time.perf_counter()
    try:
        for name in tasks:
            results[name] = TASKS[name](ctx)
    finally:
        ctx.store.close()
    results["seconds"] = round(time.perf_counter() - start, 1)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def run(run: RunConfig, checkpoint: str, step: int | None = None, untrained: bool = False) -> dict:
    """Evaluates `checkpoint` (latest step unless `step`) on eval.tasks. With `untrained`, the same
    architecture and tokenizer with freshly initialised weights: the baseline a trained model must beat."""
    tasks = tuple(run.eval.tasks)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"eval.tasks: unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    mcfg, params, meta = _model(run, checkpoint, step, untrained)
    step = int(meta.get("step", 0))
    tok = checkpoint_tokenizer(checkpoint, meta) or (load_tokenizer(run.tokenizer.path) if run.tokenizer.path
                                                     else None)
    if tok is None:
        raise ValueError(f"the checkpoint {checkpoint} carries no tokenizer; set --config.tokenizer.path")
    mesh = None
    if jax.device_count() > 1:  # generate sharded over every device, by the run's mesh and rules
        from jaxcoder.parallel.mesh import make_mesh

        mesh_cfg = run.mesh.without_context()  # a training run's context devices generate rows of their own
        mesh = make_mesh(mesh_cfg.sizes(), dcn=mesh_cfg.dcn_sizes(), granule=mesh_cfg.granule)
        params = place(mcfg, params, mesh, run.mesh.rules_table())
    out_dir = Path(run.eval.out_dir or Path(run.workdir) / "eval") / (
        f"untrained_seed{run.seed}" if untrained else f"step_{step}")
    store = SampleStore(out_dir / "samples.jsonl")
    ctx = EvalContext(run=run, checkpoint=str(checkpoint), mcfg=mcfg, params=params, tokenizer=tok,
                      layout=recorded_layout(meta) or run.tokenizer.layout, store=store, mesh=mesh)
    return _run_tasks(ctx, tasks, {"checkpoint": str(checkpoint), "step": 0 if untrained else step,
                                   "untrained": untrained}, out_dir)


def table(results: dict) -> str:
    rows = [("task", "metric", "value")]
    if "perplexity" in results:
        o = results["perplexity"]["overall"]
        rows += [("held-out", "loss", f"{o['loss']:.4f}"), ("held-out", "perplexity", f"{o['perplexity']:.2f}"),
                 ("held-out", "bits per byte", f"{o['bits_per_byte']:.4f}")]
        for lang, v in results["perplexity"]["per_language"].items():
            rows.append((f"  {lang}", "bits per byte", f"{v['bits_per_byte']:.4f}"))
    for task, title in PASS_AT_K_TASKS.items():
        if task in results:
            h = results[task]
            rows += [(f"{title} ({h['problems']} problems, n={h['samples_per_problem']})", k, f"{v:.4f}")
                     for k, v in h.items() if k.startswith("pass@")]
    if "multipl_e" in results:
        m = results["multipl_e"]
        for lang, r in m["per_language"].items():
            rows += [(f"MultiPL-E {lang} ({r['problems']} problems, n={m['samples_per_problem']})", k, f"{v:.4f}")
                     for k, v in r.items() if k.startswith("pass@")]
        rows += [(f"MultiPL-E {lang}", "skipped", why) for lang, why in m["skipped"].items()]
    if "repo_completion" in results:
        r = results["repo_completion"]
        rows += [(f"repo_completion ({r['records']} records)", metric.replace("_", " "), f"{r[metric]:.4f}")
                 for metric in ("exact_match", "edit_similarity")]
    for task in FIM_TASKS:
        if task in results:
            rows.append((f"{task} ({results[task]['tasks']} tasks)", "exact match",
                         f"{results[task]['exact_match']:.4f}"))
            if "middle_nll" in results[task]:
                rows.append((f"{task} ({results[task]['tasks']} tasks)", "middle NLL (nats/token)",
                             f"{results[task]['middle_nll']:.4f}"))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) for r in rows)
