"""`jaxcoder report`: one Markdown page and a loss-curve PNG for a run directory.

Reads what the other verbs leave in the workdir: `metrics.jsonl` (train), `eval/step_<N>/` and
`eval/untrained_seed<S>/` (eval, eval --untrained), the data manifest (data prepare) and
`hf.check.json` (export --verify_prompt). Missing pieces are reported as not run, never invented.
"""

from __future__ import annotations

import json
from pathlib import Path

from jaxcoder.eval.runner import FIM_TASKS, PASS_AT_K_TASKS


def read_metrics(path: Path) -> list[dict]:
    """Training log records; a line cut by a crash is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def plot_loss(rows: list[dict], out: Path) -> Path:
    """Train loss per logged step and held-out loss where measured, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    held = [(r["step"], r["heldout_loss"]) for r in rows if "heldout_loss" in r]
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", color="tab:blue")
    if held:
        ax.plot(*zip(*held, strict=True), "o-", label="held-out loss", color="tab:orange")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _latest_eval(eval_dir: Path) -> dict | None:
    steps = sorted((int(p.name.split("_", 1)[1]), p) for p in eval_dir.glob("step_*")
                   if (p / "results.json").exists() and p.name.split("_", 1)[1].isdigit())
    return json.loads((steps[-1][1] / "results.json").read_text()) if steps else None


def _metrics(results: dict | None) -> dict[str, float]:
    """Flat {metric name: value} of an eval results.json."""
    if not results:
        return {}
    out = {}
    if "perplexity" in results:
        o = results["perplexity"]["overall"]
        out["held-out loss (nats/token)"] = o["loss"]
        out["held-out bits per byte"] = o["bits_per_byte"]
    for task, title in PASS_AT_K_TASKS.items():
        out.update({f"{title} {k}": v for k, v in results.get(task, {}).items() if k.startswith("pass@")})
    if "repo_completion" in results:
        r = results["repo_completion"]
        out[f"repo_completion exact match ({r['records']} records)"] = r["exact_match"]
        out[f"repo_completion edit similarity ({r['records']} records)"] = r["edit_similarity"]
    for task in FIM_TASKS:
        if task in results:
            r = results[task]
            mode = f", {r['mode'].upper()}" if "mode" in r else ""
            out[f"{task} exact match ({r['tasks']} tasks{mode})"] = r["exact_match"]
            if "middle_nll" in r:
                out[f"{task}: true middle's NLL, teacher-forced (nats/token, lower is better)"] = r["middle_nll"]
    return out


def _per_language_metrics(results: dict | None) -> dict[str, float]:
    """{metric: value} of every per-language breakdown (MultiPL-E, SantaCoder FIM, repository-level)."""
    out = {}
    for lang, r in ((results or {}).get("multipl_e") or {}).get("per_language", {}).items():
        out.update({f"MultiPL-E {lang} {k}": v for k, v in r.items() if k.startswith("pass@")})
    for lang, v in ((results or {}).get("santacoder_fim") or {}).get("per_language", {}).items():
        out[f"santacoder_fim {lang} exact match"] = v
    for lang, r in ((results or {}).get("repo_completion") or {}).get("per_language", {}).items():
        out[f"repo_completion {lang} exact match"] = r["exact_match"]
        out[f"repo_completion {lang} edit similarity"] = r["edit_similarity"]
    return out


def plot_languages(trained: dict | None, untrained: dict | None, out: Path) -> Path | None:
    """pass@1 per language (MultiPL-E, and HumanEval as Python), trained beside untrained, as a PNG;
    None when no language has a pass@1."""
    def rates(results):
        r = {lang: v["pass@1"] for lang, v in ((results or {}).get("multipl_e") or {}).get("per_language", {}).items()
             if "pass@1" in v}
        if "pass@1" in (results or {}).get("humaneval", {}):
            r["py (HumanEval)"] = results["humaneval"]["pass@1"]
        return r

    t, u = rates(trained), rates(untrained)
    langs = sorted(set(t) | set(u))
    if not langs:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(langs))
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(langs)), 3.5), dpi=110)
    ax.bar(x - 0.2, [u.get(lang, 0.0) for lang in langs], 0.4, label="untrained", color="tab:gray")
    ax.bar(x + 0.2, [t.get(lang, 0.0) for lang in langs], 0.4, label="trained", color="tab:blue")
    ax.set_xticks(x, langs)
    ax.set_ylabel("pass@1")
    ax.set_ylim(0, max(0.05, *t.values(), *u.values()) * 1.15)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def compare_lines(a: dict, b: dict, labels: tuple[str, str]) -> list[str]:
    """Two checkpoints' results task by task (every metric either has), with the difference."""
    ma, mb = ({**_metrics(r), **_per_language_metrics(r)} for r in (a, b))
    lines = [f"| metric | {labels[0]} | {labels[1]} | difference |", "|---|---:|---:|---:|"]
    for name in dict.fromkeys([*ma, *mb]):
        va, vb = ma.get(name), mb.get(name)
        diff = _fmt(vb - va) if isinstance(va, float) and isinstance(vb, float) else "—"
        lines.append(f"| {name} | {_fmt(va)} | {_fmt(vb)} | {diff} |")
    return lines


def read_results(path: str | Path, eval_dir: Path) -> dict:
    """An eval's results.json: a file, a results directory, or a directory name under `eval_dir`
    (e.g. `step_0`)."""
    for candidate in (Path(path), Path(path) / "results.json", eval_dir / str(path) / "results.json"):
        if candidate.is_file():
            return json.loads(candidate.read_text())
    raise ValueError(f"--compare={path}: no results.json there or under {eval_dir}/{path}")


def _fmt(v) -> str:
    return "—" if v is None else f"{v:.4f}"


def fisher_greater(k1: int, n1: int, k0: int, n0: int) -> float:
    """One-sided Fisher exact test: P(at least k1 of the k1 + k0 successes fall in group 1 of
    sizes n1, n0) when both groups share one success rate. Small p: group 1 is really better.
    Written here (a hypergeometric tail, exact with integers) so the report needs no scipy; the
    test checks it against scipy.stats.fisher_exact."""
    from math import comb

    total = k1 + k0
    return sum(comb(n1, k) * comb(n0, total - k) for k in range(k1, min(n1, total) + 1)) / comb(n1 + n0, total)


def _fim_comparison(trained: dict | None, untrained: dict | None) -> list[str]:
    """Per FIM task: matches of each model, the test that the trained model's rate is higher, and
    what it matched (so a reader sees which lines a small model gets right)."""
    out = []
    for task in FIM_TASKS:
        t, u = (trained or {}).get(task), (untrained or {}).get(task)
        if not t or "matches" not in t:
            continue
        line = f"- {task}: trained {t['matches']}/{t['tasks']} exact"
        if u and "matches" in u:
            p = fisher_greater(t["matches"], t["tasks"], u["matches"], u["tasks"])
            line += (f", untrained {u['matches']}/{u['tasks']}; one-sided Fisher exact test that the trained "
                     f"rate is higher: p = {p:.2g}")
        if t.get("matched_examples"):
            line += "; e.g. " + ", ".join(f"`{m.strip()[:60]}`" for m in t["matched_examples"])
        out.append(line + ".")
    return out


def _per_language_lines(trained: dict | None, untrained: dict | None) -> list[str]:
    """MultiPL-E pass@k per language, trained next to untrained, with the languages skipped."""
    runs = {name: (r or {}).get("multipl_e") for name, r in (("untrained", untrained), ("trained", trained))}
    langs = sorted({lang for m in runs.values() if m for lang in m["per_language"]})
    if not langs:
        return []
    ks = sorted({k for m in runs.values() if m for r in m["per_language"].values() for k in r if k.startswith("pass@")},
                key=lambda k: int(k.split("@")[1]))
    lines = ["", "MultiPL-E, per language (programs compiled and run in the sandbox):", "",
             "| language | problems | " + " | ".join(f"{k} untrained | {k} trained" for k in ks) + " |",
             "|---|---:|" + "---:|" * (2 * len(ks))]
    for lang in langs:
        cells = [(runs[n] or {}).get("per_language", {}).get(lang, {}) for n in ("untrained", "trained")]
        problems = next((c["problems"] for c in cells if c), 0)
        lines.append(f"| {lang} | {problems} | " + " | ".join(f"{_fmt(cells[0].get(k))} | {_fmt(cells[1].get(k))}"
                                                             for k in ks) + " |")
    skipped = {lang: why for m in runs.values() if m for lang, why in m["skipped"].items()}
    if skipped:
        lines += ["", "Skipped (not runnable on the evaluating host): "
                  + "; ".join(f"{lang}: {why}" for lang, why in sorted(skipped.items())) + "."]
    return lines


def _goodput_lines(work: Path) -> list[str]:
    from jaxcoder.train.goodput import PHASES, read_attempts, summarize

    attempts = read_attempts(work)
    if not attempts:
        return []
    g = summarize(attempts)
    lines = ["", f"Goodput {g['goodput']:.1%}: {g['seconds']['step']:.0f} s of training steps in "
             f"{g['wall']:.0f} s over {g['attempts']} attempt(s) (time between attempts not counted).", "",
             "| where the wall clock went | seconds | share |", "|---|---:|---:|"]
    names = {"lost": "lost to restarts (work after the restored checkpoint)"}
    for p in ("step", *[q for q in PHASES if q != "step"], "lost"):
        lines.append(f"| {names.get(p, p.replace('_', ' '))} | {g['seconds'][p]:.1f} | "
                     f"{g['seconds'][p] / g['wall'] if g['wall'] else 0:.1%} |")
    return lines


def write_report(workdir: str | Path, data_dir: str | Path | None = None, export_check: str | Path | None = None,
                 title: str = "jaxcoder run", compare: str | None = None) -> Path:
    """Writes `<workdir>/report.md` (and `loss.png` when there is a training log, `languages.png`
    when there are per-language pass rates); returns its path. `compare`: another evaluation (a
    results.json, its directory, or a name under `<workdir>/eval` such as `step_0`) to set beside
    the latest one, task by task."""
    work = Path(workdir)
    lines = [f"# {title}", "", f"Run directory: `{work}`", ""]
    manifest_path = Path(data_dir or work / "data") / "manifest.json"
    lines += ["## Data", ""]
    if manifest_path.exists():
        m = json.loads(manifest_path.read_text())
        counts = m.get("counts", {})
        dropped = sum(v for k, v in counts.items() if k.startswith("dropped/"))
        n_split = counts.get("samples_split", 0)
        runner = f" on Beam's {m['runner']}" if m.get("runner") else ""
        max_tokens = m.get("config", {}).get("data", {}).get("max_sample_tokens")
        split_note = (f" ({n_split:,} longer than {max_tokens:,} tokens, stored in pieces)"
                      if n_split and max_tokens else "")
        lines.append(
            f"Prepared in `{manifest_path.parent}` ({m.get('seconds', '?')} s{runner}): "
            f"{counts.get('files_seen', 0):,} files "
            f"seen in {m.get('repositories', '?')} repositories, {dropped:,} dropped by the filters, "
            f"{counts.get('duplicates/exact', 0):,} exact and {counts.get('duplicates/near', 0):,} near duplicates "
            f"removed, {sum(v for k, v in counts.items() if k.startswith('redacted/')):,} PII redactions, "
            f"{counts.get('dropped/contaminated', 0):,} files dropped as benchmark contamination; "
            f"{m.get('total_tokens', 0):,} training tokens in {counts.get('samples', '?')} samples"
            f"{split_note}.")
        langs = m.get("tokens", {})
        if langs:
            lines += ["", "| language | documents | tokens |", "|---|---:|---:|"]
            lines += [f"| {lang} | {m.get('documents', {}).get(lang, 0):,} | {n:,} |"
                      for lang, n in sorted(langs.items(), key=lambda kv: -kv[1])]
    else:
        lines.append("No prepared data manifest found (`jaxcoder data prepare` not run here).")

    rows = read_metrics(work / "metrics.jsonl")
    lines += ["", "## Training", ""]
    if rows:
        png = plot_loss(rows, work / "loss.png")
        first, last = rows[0], rows[-1]
        held = [r for r in rows if "heldout_loss" in r]
        lines.append(f"{last['step']} steps. Train loss {first['loss']:.3f} (step {first['step']}) -> "
                     f"{last['loss']:.3f} (step {last['step']}).")
        if held:
            lines.append(f"Held-out loss {held[0]['heldout_loss']:.3f} (step {held[0]['step']}) -> "
                         f"{held[-1]['heldout_loss']:.3f} (step {held[-1]['step']}).")
        lines += ["", f"![loss curve]({png.name})"]
    else:
        lines.append("No training log (`metrics.jsonl`) found.")
    lines += _goodput_lines(work)

    trained = _latest_eval(work / "eval")
    baselines = sorted((work / "eval").glob("untrained_seed*/results.json"), key=lambda p: p.stat().st_mtime)
    untrained = json.loads(baselines[-1].read_text()) if baselines else None
    lines += ["", "## Evaluation", ""]
    if trained or untrained:
        t, u = _metrics(trained), _metrics(untrained)
        step = trained["step"] if trained else "—"
        lines += [f"| metric | untrained (same architecture, fresh weights) | trained (step {step}) |",
                  "|---|---:|---:|"]
        lines += [f"| {name} | {_fmt(u.get(name))} | {_fmt(t.get(name))} |" for name in dict.fromkeys([*u, *t])]
        lines += _per_language_lines(trained, untrained)
        chart = plot_languages(trained, untrained, work / "languages.png")
        if chart:
            lines += ["", f"![pass@1 per language]({chart.name})"]
        fim = _fim_comparison(trained, untrained)
        if fim:
            lines += ["", "Fill-in-the-middle exact matches (after stripping whitespace, as bigcode's harness "
                      "scores them):", "", *fim]
        if trained:
            lines += ["", f"Sandbox isolation for executed code: {trained.get('sandbox_isolation', '?')}."]
    else:
        lines.append("No evaluation results found (`jaxcoder eval` not run here).")

    if compare:
        other = read_results(compare, work / "eval")
        if not trained:
            raise ValueError(f"--compare={compare}: {work / 'eval'} has no evaluation of a checkpoint to compare with")
        labels = (f"{other.get('checkpoint', compare)} step {other.get('step', '?')}",
                  f"{trained['checkpoint']} step {trained['step']}")
        lines += ["", "## Checkpoints compared", "", *compare_lines(other, trained, labels)]

    check_path = Path(export_check) if export_check else work / "hf.check.json"
    lines += ["", "## Hugging Face export", ""]
    if check_path.exists():
        c = json.loads(check_path.read_text())
        lines.append(f"`{check_path.with_suffix('').with_suffix('')}` loads in transformers as "
                     f"`{c.get('architecture', '?')}`; max |logit difference| from jaxcoder "
                     f"{c['max_logit_diff']:.2e} over {c['prompt_tokens']} tokens.")
        same = "the same tokens as" if c.get("completion_matches_jaxcoder") else "different tokens from"
        lines += ["", f"Greedy completion by transformers ({same} jaxcoder's):", "", "```",
                  c["prompt"] + c["completion"], "```"]
        if "infill_middle" in c:
            same = "the same tokens as" if c.get("infill_matches_jaxcoder") else "different tokens from"
            lines += ["", f"Fill-in-the-middle by transformers ({same} jaxcoder's); the generated middle is "
                      "between `>>>` and `<<<`:", "", "```",
                      c["infill_prefix"] + ">>>" + c["infill_middle"] + "<<<" + c["infill_suffix"], "```"]
    else:
        lines.append("No export check found (`jaxcoder export --verify_prompt=...` not run here).")
    out = work / "report.md"
    out.write_text("\n".join(lines) + "\n")
    return out
