"""`jaxcoder eval`: the configured tasks on one checkpoint, resumable.

Every generated sample and every execution result is appended to
`<out_dir>/step_<N>/samples.jsonl` as soon as it exists, keyed by task, problem, sample index and
sampling settings; a rerun reuses them and only does what is missing. Results go to
`<out_dir>/step_<N>/results.json` and a printed table.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxcoder.data import shards
from jaxcoder.data.fim import FimTokens
from jaxcoder.data.tokenizer import Tokenizer, load_tokenizer
from jaxcoder.eval import humaneval, infilling, perplexity
from jaxcoder.eval.generate import SamplingConfig, generate, place, truncate
from jaxcoder.eval.sandbox import SandboxConfig, describe, isolation, run_many
from jaxcoder.model.config import ModelConfig
from jaxcoder.train.checkpoint import checkpoint_tokenizer, load_params, read_meta, recorded_layout

TASKS = ("perplexity", "humaneval", "fim_single_line", "fim_heldout_line", "fim_random_span")
FIM_TASKS = ("fim_single_line", "fim_heldout_line", "fim_random_span")


class SampleStore:
    """An append-only JSONL map: what was generated or executed survives interruptions."""

    def __init__(self, path: Path):
        self.path = path
        self.values: dict[str, object] = {}
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash: that sample is redone
                    continue
                self.values[rec["key"]] = rec["value"]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("a")

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str):
        return self.values[key]

    def put(self, key: str, value) -> None:
        self.values[key] = value
        self._file.write(json.dumps({"key": key, "value": value}) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _generate_missing(store: SampleStore, jobs: list[tuple[str, list[int]]], make_text: Callable,
                      batch_size: int, s: SamplingConfig, desc: str, cfg, params, stop_ids, stop_check,
                      mesh=None) -> None:
    """Generates the jobs (key, prompt ids) whose key is not in the store yet, in batches."""
    pending = [(k, p) for k, p in jobs if k not in store]
    batches = [pending[i:i + batch_size] for i in range(0, len(pending), batch_size)]
    for n, batch in enumerate(tqdm(batches, desc=desc, unit="batch", mininterval=1.0)):
        sb = SamplingConfig(**{**s.__dict__, "seed": s.seed * 100003 + n + len(jobs) - len(pending)})
        outs = generate(cfg, params, [p for _, p in batch], sb, stop_ids=stop_ids,
                        stop_check=(lambda i, toks: stop_check(toks)) if stop_check else None, mesh=mesh)
        for (key, _), toks in zip(batch, outs, strict=True):
            store.put(key, make_text(toks))


def run(cfg: ml_collections.ConfigDict, checkpoint: str, step: int | None = None,
        untrained: bool = False) -> dict:
    """Evaluates `checkpoint` (latest step unless `step`). With `untrained`, the same architecture
    and tokenizer with freshly initialised weights: the baseline a trained model must beat."""
    if untrained:  # the architecture and tokenizer from the metadata; the saved arrays are not read
        from jaxcoder.model import functional as F

        step, meta = read_meta(checkpoint, step)
        mcfg = ModelConfig.from_dict(meta["model"])
        params = jax.device_get(F.init_params(mcfg, cfg.seed))
    else:
        mcfg, params, meta = load_params(checkpoint, step)
    step = int(meta.get("step", 0))
    mesh = None
    if jax.device_count() > 1:  # generate sharded over every device, by the run's mesh and rules
        from jaxcoder import config as run_config
        from jaxcoder.parallel.mesh import make_mesh

        mesh = make_mesh({k: v for k, v in cfg.mesh.items() if k not in ("rules", "num_devices")})
        params = place(mcfg, params, mesh, run_config.mesh_rules(cfg))
    e = cfg.eval
    tasks = tuple(e.tasks)
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ValueError(f"eval.tasks: unknown task(s) {', '.join(unknown)}; known: {', '.join(TASKS)}")
    tok = checkpoint_tokenizer(checkpoint, meta) or (load_tokenizer(cfg.tokenizer.path) if cfg.tokenizer.path
                                                     else None)
    if tok is None:
        raise ValueError(f"the checkpoint {checkpoint} carries no tokenizer; set --config.tokenizer.path")
    layout = recorded_layout(meta) or cfg.tokenizer.layout
    if {"perplexity", "fim_heldout_line", "fim_random_span"} & set(tasks):
        _check_data_tokenizer(cfg.data.prepared_dir, tok, checkpoint)
    run_name = f"untrained_seed{cfg.seed}" if untrained else f"step_{step}"
    out_dir = Path(e.out_dir or Path(cfg.workdir) / "eval") / run_name
    store = SampleStore(out_dir / "samples.jsonl")
    results: dict = {"checkpoint": str(checkpoint), "step": 0 if untrained else step, "untrained": untrained,
                     "sandbox_isolation": describe(isolation())}
    decode = tok.decode
    start = time.perf_counter()
    try:
        if "perplexity" in tasks:
            data_dir = cfg.data.prepared_dir
            per_lang = perplexity.evaluate(mcfg, params, data_dir, e.seq_len, e.batch_size, e.perplexity_batches)
            results["perplexity"] = {"overall": perplexity.overall(per_lang), "per_language": per_lang}

        if "humaneval" in tasks:
            h = e.humaneval
            s = SamplingConfig(max_new_tokens=h.max_new_tokens, temperature=h.temperature, top_p=h.top_p,
                               seed=cfg.seed)
            probs = humaneval.problems()[: h.limit or None]
            tag = f"t{h.temperature}_p{h.top_p}_m{h.max_new_tokens}"
            keyed = [(f"he/{tag}/{p['task_id']}/{j}", p) for p in probs for j in range(h.n_samples)]
            jobs = [(k, tok.encode_prompt(humaneval.prompt(p))) for k, p in keyed]
            _generate_missing(store, jobs, lambda t: truncate(decode(t), humaneval.STOP_WORDS), e.batch_size, s,
                              "humaneval: generate", mcfg, params, (tok.eos_id,),
                              lambda t: any(w in decode(t) for w in humaneval.STOP_WORDS), mesh)
            sandbox = SandboxConfig(timeout_s=h.timeout_s, workers=e.sandbox_workers)
            todo = [(k, p) for k, p in keyed if f"exec/{k}" not in store]
            for i in tqdm(range(0, len(todo), 16), desc="humaneval: execute", unit="batch", mininterval=1.0):
                chunk = todo[i:i + 16]
                for (k, _), r in zip(chunk, run_many([humaneval.program(p, store[k]) for k, p in chunk], sandbox),
                                     strict=True):
                    store.put(f"exec/{k}", r.status)
            by_problem: dict[str, list[bool]] = {p["task_id"]: [] for p in probs}
            for k, p in keyed:
                by_problem[p["task_id"]].append(store[f"exec/{k}"] == "passed")
            correct = list(by_problem.values())
            results["humaneval"] = {"problems": len(probs), "samples_per_problem": h.n_samples,
                                    "temperature": h.temperature, "top_p": h.top_p,
                                    **humaneval.mean_pass_at_k(correct, tuple(h.ks))}

        fim_ids = None
        if set(FIM_TASKS) & set(tasks):
            tok.check_layout(layout, "the FIM tasks")
            fim_ids = FimTokens.from_tokenizer(tok, layout)
        heldout: list[str] = []  # decoded once, for both held-out tasks
        for task in FIM_TASKS:
            if task not in tasks:
                continue
            f = e.fim
            if task == "fim_single_line":
                items = infilling.single_line_tasks()[: f.limit or None]
                stop = ("\n",)
            else:
                heldout = heldout or _heldout_texts(cfg.data.prepared_dir, tok, f.languages)
                if task == "fim_heldout_line":
                    items = infilling.heldout_line_tasks(heldout, f.heldout_lines, seed=cfg.seed)
                    stop = ("\n",)
                else:
                    items = infilling.random_span_tasks(heldout, f.random_spans, seed=cfg.seed)
                    stop = ()
            s = SamplingConfig(max_new_tokens=f.max_new_tokens)
            spm = _fim_mode(f.mode, layout) == "spm"
            # The prompt settings are part of the key: a rerun with another mode, context or length
            # regenerates instead of reusing generations made for different prompts.
            tag = f"{f.mode}_c{f.max_context}_m{f.max_new_tokens}"
            jobs = [(f"{task}/{tag}/{it['id']}",
                     infilling.fim_prompt(tok, fim_ids, it["prefix"], it["suffix"], f.max_context, spm=spm))
                    for it in items]
            _generate_missing(store, jobs, lambda t, stop=stop: truncate(decode(t), stop), e.batch_size, s,
                              f"{task}: generate", mcfg, params, (tok.eos_id,),
                              (lambda t, stop=stop: any(x in decode(t) for x in stop)) if stop else None, mesh)
            hits = [infilling.exact_match(store[k], it["middle"]) for (k, _), it in zip(jobs, items, strict=True)]
            results[task] = {"tasks": len(items), "mode": f.mode, "matches": int(sum(hits)),
                             "exact_match": float(np.mean(hits)) if hits else math.nan,
                             "matched_examples": [it["middle"] for it, h in zip(items, hits, strict=True) if h][:5]}
            if task == "fim_heldout_line" and items:  # also the true middle's likelihood, teacher-forced
                results[task]["middle_nll"] = perplexity.continuation_nll(
                    mcfg, params, [(p, tok.encode(it["middle"])) for (_, p), it in zip(jobs, items, strict=True)],
                    e.batch_size)
    finally:
        store.close()
    results["seconds"] = round(time.perf_counter() - start, 1)
    (out_dir / "results.json").write_text(json.dumps(results, indent=2))
    return results


def _fim_mode(mode: str, layout: str) -> str:
    if mode not in ("psm", "spm"):
        raise ValueError(f"eval.fim.mode must be psm or spm; got {mode!r}")
    if mode == "spm" and layout == "deepseek":
        raise ValueError("eval.fim.mode=spm: the deepseek FIM layout is PSM only (DeepSeek-Coder never trains SPM)")
    return mode


def _check_data_tokenizer(data_dir: str, tok: Tokenizer, checkpoint: str) -> None:
    """Held-out data must be tokenized with the model's own tokenizer (perplexity reads its ids)."""
    data_sha = shards.load_manifest(data_dir)["tokenizer"]["sha256"]
    if data_sha != tok.sha256():
        raise ValueError(f"{data_dir} was tokenized with another tokenizer than the checkpoint's; prepare it "
                         f"with the model's own: jaxcoder data prepare --config.tokenizer.path={checkpoint} "
                         f"--config.data.prepared_dir=...")


def _heldout_texts(data_dir: str, tok: Tokenizer, languages=()) -> list[str]:
    """Decoded held-out documents, of the given languages only when any are named."""
    manifest = shards.load_manifest(data_dir)
    held = manifest.get("heldout_shards", {})
    unknown = sorted(set(languages) - set(held))
    if unknown:
        raise ValueError(f"eval.fim.languages: no held-out shards for {', '.join(unknown)} in {data_dir} "
                         f"(held out: {', '.join(sorted(held))})")
    texts = []
    for language in sorted(languages or held):
        for p in shards.shard_paths(data_dir, manifest, language, "heldout"):
            for d in shards.read_documents(Path(p)):
                ids = d.tolist()
                texts.append(tok.decode(ids[1:] if tok.add_bos and ids[:1] == [tok.bos_id] else ids))
    if not texts:
        raise ValueError(f"{data_dir} has no held-out shards for the held-out FIM tasks (data.heldout_fraction was 0)")
    return texts


def table(results: dict) -> str:
    rows = [("task", "metric", "value")]
    if "perplexity" in results:
        o = results["perplexity"]["overall"]
        rows += [("held-out", "loss", f"{o['loss']:.4f}"), ("held-out", "perplexity", f"{o['perplexity']:.2f}"),
                 ("held-out", "bits per byte", f"{o['bits_per_byte']:.4f}")]
        for lang, v in results["perplexity"]["per_language"].items():
            rows.append((f"  {lang}", "bits per byte", f"{v['bits_per_byte']:.4f}"))
    if "humaneval" in results:
        h = results["humaneval"]
        for k, v in h.items():
            if k.startswith("pass@"):
                rows.append((f"HumanEval ({h['problems']} problems, n={h['samples_per_problem']})", k, f"{v:.4f}"))
    for task in FIM_TASKS:
        if task in results:
            rows.append((f"{task} ({results[task]['tasks']} tasks)", "exact match",
                         f"{results[task]['exact_match']:.4f}"))
            if "middle_nll" in results[task]:
                rows.append((f"{task} ({results[task]['tasks']} tasks)", "middle NLL (nats/token)",
                             f"{results[task]['middle_nll']:.4f}"))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, width, strict=True)) for r in rows)
