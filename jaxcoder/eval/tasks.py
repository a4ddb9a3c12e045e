"""Evaluation tasks, each a small function registered by name (as big_vision's evaluators are).

A task takes one `EvalContext` (the model, its tokenizer, the run's sections, the sample store)
and returns its results dict; `jaxcoder eval` runs the names in `eval.tasks`. A new task is a
function decorated with `@register("name")` in any module the runner imports.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from jaxcoder.data import shards
from jaxcoder.data.fim import FimTokens
from jaxcoder.data.tokenizer import Tokenizer
from jaxcoder.eval import harness, humaneval, infilling, languages, mbpp, multipl_e, perplexity, repo_completion
from jaxcoder.eval.generate import SamplingConfig, batches, generate, truncate
from jaxcoder.eval.records import load as load_records
from jaxcoder.eval.sandbox import SandboxConfig, run_many
from jaxcoder.eval.store import SampleStore
from jaxcoder.model.config import ModelConfig

if TYPE_CHECKING:
    from jaxcoder.config import RunConfig

TASKS: dict[str, Callable[[EvalContext], dict]] = {}
FIM_TASKS = ("fim_single_line", "fim_heldout_line", "fim_random_span", "santacoder_fim")


def register(name: str):
    """Makes the decorated `fn(ctx) -> dict` the task `name`."""
    def wrap(fn):
        TASKS[name] = fn
        return fn

    return wrap


@dataclasses.dataclass
class EvalContext:
    """What every task may use."""

    run: RunConfig
    checkpoint: str
    mcfg: ModelConfig
    params: Any
    tokenizer: Tokenizer
    layout: str  # the FIM token set of the model's training run
    store: SampleStore
    mesh: Any = None  # generation is sharded over it when there are several devices
    loaded: str | None = None  # a bigcode-harness generations file to score instead of generating
    _heldout: list[str] | None = None

    @property
    def out_dir(self) -> Path:
        return self.store.path.parent

    def generate(self, jobs: Sequence[tuple[str, str | list[int]]], sampling: SamplingConfig, stop: Sequence[str],
                 desc: str) -> None:
        """Generates the jobs (key, prompt text or ids) whose key is not in the store yet, in
        batches of eval.batch_size; each completion is stored cut at its first stop string."""
        pending = [(k, p if isinstance(p, list) else self.tokenizer.encode_prompt(p))
                   for k, p in jobs if k not in self.store]
        if not pending:
            return
        decode = self.tokenizer.decode
        check = (lambda i, toks: any(s in decode(toks) for s in stop)) if stop else None
        planned = list(batches([p for _, p in pending], self.run.eval.batch_size, self.mesh))
        for n, (offset, prompts, kw) in enumerate(tqdm(planned, desc=desc, unit="batch", mininterval=1.0)):
            s = dataclasses.replace(sampling, seed=sampling.seed * 100003 + n + len(jobs) - len(pending))
            outs = generate(self.mcfg, self.params, prompts, s, stop_ids=(self.tokenizer.eos_id,),
                            stop_check=check, mesh=self.mesh, **kw)
            real = pending[offset:offset + len(prompts)]
            for (key, _), toks in zip(real, outs[:len(real)], strict=True):  # topped-up rows dropped
                self.store.put(key, truncate(decode(toks), stop))

    def check_data_tokenizer(self) -> None:
        """Held-out data must be tokenized with the model's own tokenizer (perplexity reads its ids)."""
        data_dir = self.run.data.prepared_dir
        if shards.load_manifest(data_dir)["tokenizer"]["sha256"] != self.tokenizer.sha256():
            raise ValueError(f"{data_dir} was tokenized with another tokenizer than the checkpoint's; prepare it "
                             f"with the model's own: jaxcoder data prepare --config.tokenizer.path={self.checkpoint} "
                             f"--config.data.prepared_dir=...")

    def heldout_texts(self) -> list[str]:
        """Decoded held-out documents (eval.fim.languages only, when any are named), read once."""
        if self._heldout is None:
            self.check_data_tokenizer()
            self._heldout = _heldout_texts(self.run.data.prepared_dir, self.tokenizer, self.run.eval.fim.languages)
        return self._heldout


def _heldout_texts(data_dir: str, tok: Tokenizer, languages=()) -> list[str]:
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


@register("perplexity")
def perplexity_task(ctx: EvalContext) -> dict:
    """Held-out loss, perplexity and bits per byte per language, and over all of them."""
    ctx.check_data_tokenizer()
    e = ctx.run.eval
    per_lang = perplexity.evaluate(ctx.mcfg, ctx.params, ctx.run.data.prepared_dir, e.seq_len, e.batch_size,
                                   e.perplexity_batches)
    return {"overall": perplexity.overall(per_lang), "per_language": per_lang}


def _samples(ctx: EvalContext, keys: list[str], prompts: list[str], n: int) -> tuple[int, int]:
    """With a harness file loaded (`ctx.loaded`): its completions stored under the task's keys
    (`keys[i]` + `/<sample>`). Returns (problems covered, samples per problem): the file's, else
    all of them and `n`."""
    if not ctx.loaded:
        return len(keys), n
    loaded = harness.read(ctx.loaded, prompts)
    n = len(loaded[0]) if loaded else 0
    for key, completions in zip(keys, loaded, strict=False):
        for j, c in enumerate(completions):
            if f"{key}/{j}" not in ctx.store:
                ctx.store.put(f"{key}/{j}", c)
    return len(loaded), n


def _write_harness(ctx: EvalContext, name: str, keys: list[str], prompts: list[str], n: int) -> None:
    harness.write(ctx.out_dir / f"generations_{name}.json", prompts,
                  [[ctx.store[f"{k}/{j}"] for j in range(n)] for k in keys])


def _execute(ctx: EvalContext, keyed: list[tuple[str, dict]], program: Callable[[dict, str], str],
             run: Callable[[list[str]], list], desc: str) -> None:
    """Runs the stored samples `keyed` (key, problem) not executed yet, 16 at a time, storing
    each status under `exec/<key>` (an interrupted evaluation resumes here)."""
    todo = [(k, p) for k, p in keyed if f"exec/{k}" not in ctx.store]
    for i in tqdm(range(0, len(todo), 16), desc=desc, unit="batch", mininterval=1.0):
        chunk = todo[i:i + 16]
        for (k, _), r in zip(chunk, run([program(p, ctx.store[k]) for k, p in chunk]), strict=True):
            ctx.store.put(f"exec/{k}", r.status)


def _python_task(ctx: EvalContext, h, prefix: str, name: str, problems: list[dict], prompt: Callable[[dict], str],
                 program: Callable[[dict, str], str], stops: Sequence[str]) -> dict:
    """A Python benchmark run as HumanEval is: n samples per problem (`h`: a HumanEvalConfig),
    executed in the sandbox, unbiased pass@k. Store keys start with `prefix`; `name` is the
    harness's task name."""
    sampling = SamplingConfig(max_new_tokens=h.max_new_tokens, temperature=h.temperature, top_p=h.top_p,
                              seed=ctx.run.seed)
    problems = problems[: h.limit or None]
    tag = f"t{h.temperature}_p{h.top_p}_m{h.max_new_tokens}"
    keys, prompts = [f"{prefix}/{tag}/{p['task_id']}" for p in problems], [prompt(p) for p in problems]
    count, n = _samples(ctx, keys, prompts, h.n_samples)
    problems, keys, prompts = problems[:count], keys[:count], prompts[:count]
    keyed = [(f"{k}/{j}", p) for k, p in zip(keys, problems, strict=True) for j in range(n)]
    ctx.generate([(k, prompt(p)) for k, p in keyed], sampling, stops, f"{name}: generate")
    _write_harness(ctx, name, keys, prompts, n)
    sandbox = SandboxConfig(timeout_s=h.timeout_s, workers=ctx.run.eval.sandbox_workers)
    _execute(ctx, keyed, program, lambda programs: run_many(programs, sandbox), f"{name}: execute")
    by_problem: dict[str, list[bool]] = {p["task_id"]: [] for p in problems}
    for k, p in keyed:
        by_problem[p["task_id"]].append(ctx.store[f"exec/{k}"] == "passed")
    return {"problems": len(problems), "samples_per_problem": n, "temperature": h.temperature,
            "top_p": h.top_p, **humaneval.mean_pass_at_k(list(by_problem.values()), tuple(h.ks))}


def _path(value: str, field_name: str, example: str) -> str:
    if not value:
        raise ValueError(f"{field_name} is empty; give the benchmark's rows (.jsonl/.parquet) or {example}")
    return value


@register("humaneval")
def humaneval_task(ctx: EvalContext) -> dict:
    """The 164 problems (eval.humaneval.limit first), n samples each, run in the sandbox; pass@k."""
    return _python_task(ctx, ctx.run.eval.humaneval, "he", "humaneval", humaneval.problems(), humaneval.prompt,
                        humaneval.program, humaneval.STOP_WORDS)


@register("humaneval_plus")
def humaneval_plus_task(ctx: EvalContext) -> dict:
    """EvalPlus's HumanEval+: the same problems and prompts with many more tests."""
    h = ctx.run.eval.humaneval
    rows = load_records(_path(h.plus_path, "eval.humaneval.plus_path", "hf:evalplus/humanevalplus"),
                        ("task_id", "prompt", "entry_point", "test"), "eval.humaneval.plus_path")
    return _python_task(ctx, h, "he+", "humanevalplus", rows, humaneval.prompt, humaneval.program,
                        humaneval.STOP_WORDS)


@register("mbpp")
def mbpp_task(ctx: EvalContext) -> dict:
    """MBPP: the description and first test as a docstring, every test run."""
    m = ctx.run.eval.mbpp
    rows = mbpp.load(_path(m.path, "eval.mbpp.path", "hf:google-research-datasets/mbpp"))
    return _python_task(ctx, m, "mbpp", "mbpp", rows, mbpp.prompt, mbpp.program, mbpp.STOP_WORDS)


@register("mbpp_plus")
def mbpp_plus_task(ctx: EvalContext) -> dict:
    """EvalPlus's MBPP+: MBPP's prompts with its extended tests."""
    m = ctx.run.eval.mbpp
    rows = mbpp.load(_path(m.plus_path, "eval.mbpp.plus_path", "hf:evalplus/mbppplus"), plus=True)
    return _python_task(ctx, m, "mbpp+", "mbppplus", rows, mbpp.prompt, mbpp.program, mbpp.STOP_WORDS)


@register("multipl_e")
def multipl_e_task(ctx: EvalContext) -> dict:
    """MultiPL-E's problems per language: n samples each, compiled and run in the sandbox; pass@k
    per language. Languages this host cannot run are skipped and listed with the reason."""
    m, e = ctx.run.eval.multipl_e, ctx.run.eval
    if not m.path:
        raise ValueError("eval.tasks has multipl_e but eval.multipl_e.path is empty; give a MultiPL-E JSONL or "
                         f"Parquet file (e.g. the demo's {multipl_e.DEMO}) or hf:nuprl/MultiPL-E")
    records = multipl_e.load(m.path, m.languages)
    if not records:
        raise ValueError(f"eval.multipl_e.path={m.path} has no problems in eval.multipl_e.languages={m.languages}")
    by_lang: dict[str, list[dict]] = {}
    for r in records:
        by_lang.setdefault(r["language"], []).append(r)
    status = languages.available()
    skipped = {lang: status.get(lang) or f"no runner for it (jaxcoder runs {', '.join(languages.LANGUAGES)})"
               for lang in by_lang if status.get(lang, "unknown") is not None}
    for lang, why in skipped.items():
        tqdm.write(f"multipl_e: skipping {lang} ({len(by_lang[lang])} problems): {why}")
    sampling = SamplingConfig(max_new_tokens=m.max_new_tokens, temperature=m.temperature, top_p=m.top_p,
                              seed=ctx.run.seed)
    tag = f"t{m.temperature}_p{m.top_p}_m{m.max_new_tokens}"
    per_language, n, sandbox = {}, m.n_samples, SandboxConfig(workers=e.sandbox_workers)
    for lang, recs in sorted(by_lang.items()):
        if lang in skipped:
            continue
        recs = recs[: m.limit or None]
        keys = [f"mpe/{lang}/{tag}/{r['name']}" for r in recs]
        count, n = _samples(ctx, keys, [r["prompt"] for r in recs], m.n_samples)
        recs, keys = recs[:count], keys[:count]
        keyed = [(f"{k}/{j}", r) for k, r in zip(keys, recs, strict=True) for j in range(n)]
        for stops in {tuple(r["stop_tokens"]) for r in recs}:  # one generation call per stop set
            ctx.generate([(k, r["prompt"]) for k, r in keyed if tuple(r["stop_tokens"]) == stops], sampling, stops,
                         f"multipl_e {lang}: generate")
        _write_harness(ctx, harness.task_name("multipl_e", lang), keys, [r["prompt"] for r in recs], n)
        _execute(ctx, keyed, multipl_e.program,
                 lambda programs, lang=lang: languages.run_programs(lang, programs, sandbox),
                 f"multipl_e {lang}: execute")
        correct: dict[str, list[bool]] = {r["name"]: [] for r in recs}
        for k, r in keyed:
            correct[r["name"]].append(ctx.store[f"exec/{k}"] == "passed")
        per_language[lang] = {"problems": len(recs), **humaneval.mean_pass_at_k(list(correct.values()), m.ks)}
    return {"samples_per_problem": n, "temperature": m.temperature, "per_language": per_language,
            "skipped": skipped}


@register("repo_completion")
def repo_completion_task(ctx: EvalContext) -> dict:
    """Next-line completion with retrieved cross-file context: exact match and edit similarity,
    overall and per language (greedy, the first generated line)."""
    r = ctx.run.eval.repo_completion
    records = repo_completion.load(_path(r.path, "eval.repo_completion.path", "a CrossCodeEval/RepoBench export"),
                                   r.languages)[: r.limit or None]
    if not records:
        raise ValueError(f"eval.repo_completion.path={r.path} has no records")
    jobs = [(f"repo/c{r.max_context}_m{r.max_new_tokens}/{rec['task_id']}",
             repo_completion.prompt_ids(ctx.tokenizer, rec, r.max_context)) for rec in records]
    ctx.generate(jobs, SamplingConfig(max_new_tokens=r.max_new_tokens), ("\n",), "repo_completion: generate")
    scores: dict[str, list[tuple[bool, float]]] = {}
    for (key, _), rec in zip(jobs, records, strict=True):
        line, truth = repo_completion.first_line(ctx.store[key]).strip(), rec["groundtruth"].strip()
        scores.setdefault(rec["language"], []).append((line == truth, repo_completion.edit_similarity(line, truth)))

    def summary(rows):
        return {"records": len(rows), "exact_match": float(np.mean([em for em, _ in rows])),
                "edit_similarity": float(np.mean([es for _, es in rows]))}

    return {**summary([s for rows in scores.values() for s in rows]),
            "per_language": {lang: summary(rows) for lang, rows in sorted(scores.items())}}


def _fim_items(ctx: EvalContext, name: str) -> tuple[list[dict], tuple[str, ...]]:
    """The infilling tasks of `name` and where a generated middle stops."""
    f, seed = ctx.run.eval.fim, ctx.run.seed
    if name == "fim_single_line":
        return infilling.single_line_tasks()[: f.limit or None], ("\n",)
    if name == "fim_heldout_line":
        return infilling.heldout_line_tasks(ctx.heldout_texts(), f.heldout_lines, seed=seed), ("\n",)
    if name == "santacoder_fim":
        if not f.santacoder_path:
            raise ValueError("eval.tasks has santacoder_fim but eval.fim.santacoder_path is empty; give the "
                             "benchmark's rows (.jsonl/.parquet) or hf:bigcode/santacoder-fim-task")
        return infilling.santacoder_tasks(f.santacoder_path, f.santacoder_languages)[: f.limit or None], ("\n",)
    return infilling.random_span_tasks(ctx.heldout_texts(), f.random_spans, seed=seed), ()


def fim_task(ctx: EvalContext, name: str) -> dict:
    """Exact match of greedy middles (SantaCoder's protocol); for held-out lines also the true
    middle's teacher-forced NLL (the FIM loss of Bavarian et al.)."""
    f = ctx.run.eval.fim
    if f.mode == "spm" and ctx.layout == "deepseek":
        raise ValueError("eval.fim.mode=spm: the deepseek FIM layout is PSM only (DeepSeek-Coder never trains SPM)")
    ctx.tokenizer.check_layout(ctx.layout, "the FIM tasks")
    ids = FimTokens.from_tokenizer(ctx.tokenizer, ctx.layout)
    items, stop = _fim_items(ctx, name)
    # The prompt settings are part of the key: a rerun with another mode, context or length
    # regenerates instead of reusing generations made for different prompts.
    tag = f"{f.mode}_c{f.max_context}_m{f.max_new_tokens}"
    jobs = [(f"{name}/{tag}/{it['id']}", infilling.fim_prompt(ctx.tokenizer, ids, it["prefix"], it["suffix"],
                                                              f.max_context, spm=f.mode == "spm"))
            for it in items]
    ctx.generate(jobs, SamplingConfig(max_new_tokens=f.max_new_tokens), stop, f"{name}: generate")
    hits = [infilling.exact_match(ctx.store[k], it["middle"]) for (k, _), it in zip(jobs, items, strict=True)]
    out = {"tasks": len(items), "mode": f.mode, "matches": int(sum(hits)),
           "exact_match": float(np.mean(hits)) if hits else math.nan,
           "matched_examples": [it["middle"] for it, h in zip(items, hits, strict=True) if h][:5]}
    if name == "santacoder_fim":
        out["per_language"] = {lang: float(np.mean([h for it, h in zip(items, hits, strict=True)
                                                    if it["language"] == lang]))
                               for lang in sorted({it["language"] for it in items})}
    if name == "fim_heldout_line" and items:
        pairs = [(p, ctx.tokenizer.encode(it["middle"])) for (_, p), it in zip(jobs, items, strict=True)]
        out["middle_nll"] = perplexity.continuation_nll(ctx.mcfg, ctx.params, pairs, ctx.run.eval.batch_size)
    return out


for _name in FIM_TASKS:
    register(_name)(functools.partial(fim_task, name=_name))
