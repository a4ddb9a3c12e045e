"""Evaluation: pass@k estimator, HumanEval through the sandbox (canonical solutions pass, broken ones
fail), FIM task construction, and a resumable `eval` run on a small checkpoint."""

from __future__ import annotations

import json

import pytest

from jaxcoder.config import resolve
from jaxcoder.eval import humaneval, infilling
from jaxcoder.eval.sandbox import SandboxConfig, run_many


def test_pass_at_k_matches_hand_computed_values():
    assert humaneval.pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert humaneval.pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert humaneval.pass_at_k(10, 0, 5) == 0.0
    assert humaneval.pass_at_k(4, 3, 2) == 1.0  # n - c < k
    # n=3, c=1, k=2: 1 - C(2,2)/C(3,2) = 2/3
    assert humaneval.pass_at_k(3, 1, 2) == pytest.approx(2 / 3)
    res = humaneval.mean_pass_at_k([[True, False], [False, False]], ks=(1, 2, 10))
    assert res == {"pass@1": pytest.approx(0.25), "pass@2": pytest.approx(0.5)}  # no pass@10 with n=2


def test_canonical_solutions_pass_and_broken_ones_fail():
    probs = humaneval.problems()
    assert len(probs) == 164
    cfg = SandboxConfig(timeout_s=10.0, workers=2)
    good = run_many([humaneval.program(p, humaneval.canonical_completion(p)) for p in probs], cfg)
    assert [p["task_id"] for p, r in zip(probs, good, strict=True) if not r.passed] == []
    broken = run_many([humaneval.program(p, "    return None\n") for p in probs[:40]], cfg)
    assert not any(r.passed for r in broken)


def test_single_line_tasks_rebuild_the_solutions():
    tasks = infilling.single_line_tasks()
    assert 900 < len(tasks) < 1200  # every non-blank line of the 164 canonical solutions
    by_id = {p["task_id"]: p for p in humaneval.problems()}
    for t in tasks[::37]:
        p = by_id[t["id"].rsplit("/", 1)[0]]
        assert t["prefix"] + t["middle"] + t["suffix"] == p["prompt"] + p["canonical_solution"]
        assert "\n" not in t["middle"] and t["middle"].strip()
    assert infilling.exact_match("  x = 1 ", "x = 1") and not infilling.exact_match("x = 2", "x = 1")


@pytest.fixture(scope="module")
def checkpoint(prepared_data, tmp_path_factory):
    """A random tiny model saved as a checkpoint that points at the prepared tokenizer."""
    from jaxcoder.model import functional as F
    from jaxcoder.model.presets import preset
    from jaxcoder.train.checkpoint import Checkpointer

    cfg, manifest = prepared_data
    mcfg = preset("deepseek-coder-tiny", vocab_size=1024, dtype="float32")
    directory = tmp_path_factory.mktemp("ckpt") / "checkpoints"
    ckpt = Checkpointer(directory, async_save=False)
    ckpt.save(7, F.init_params(mcfg, 0), meta={
        "model": mcfg.to_dict(), "step": 7, "tokenizer_path": cfg.tokenizer_path,
        "config": {"tokenizer": {"layout": "starcoder"}}})
    ckpt.close()
    return directory


def test_eval_run_reports_every_task_and_resumes(prepared_data, checkpoint, tmp_path):
    from jaxcoder.config import base_config
    from jaxcoder.eval import runner

    cfg = base_config("deepseek-coder-tiny")
    cfg.data.prepared_dir = prepared_data[0].out_dir
    cfg.workdir = str(tmp_path)
    cfg.eval.update(batch_size=8, seq_len=64, perplexity_batches=2)
    cfg.eval.humaneval.update(limit=3, n_samples=2, temperature=0.8, max_new_tokens=16, ks=(1, 2))
    cfg.eval.fim.update(limit=10, heldout_lines=5, random_spans=6, max_new_tokens=8, max_context=256)
    first = runner.run(resolve(cfg), str(checkpoint))
    assert first["step"] == 7 and first["perplexity"]["overall"]["bits_per_byte"] > 0
    assert set(first["humaneval"]) >= {"pass@1", "pass@2"} and first["humaneval"]["problems"] == 3
    assert first["fim_single_line"]["tasks"] == 10 and first["fim_random_span"]["tasks"] == 6
    assert first["fim_heldout_line"]["tasks"] == 5
    for task in ("fim_single_line", "fim_heldout_line", "fim_random_span"):
        r = first[task]
        assert r["matches"] == round(r["exact_match"] * r["tasks"])
        assert len(r["matched_examples"]) == min(5, r["matches"])
    samples = tmp_path / "eval" / "step_7" / "samples.jsonl"
    lines = samples.read_text().splitlines()
    assert len(lines) == 3 * 2 * 2 + 10 + 5 + 6  # generations + executions, each stored once
    second = runner.run(resolve(cfg), str(checkpoint))
    assert samples.read_text().splitlines() == lines  # nothing regenerated or re-executed
    drop = lambda r: {k: v for k, v in r.items() if k != "seconds"}  # noqa: E731
    assert drop(second) == drop(first)
    assert json.loads((tmp_path / "eval" / "step_7" / "results.json").read_text())["step"] == 7
    print(runner.table(second))
    cfg.eval.tasks = ("perplexity",)
    base = runner.run(resolve(cfg), str(checkpoint), untrained=True)
    assert base["untrained"] and base["step"] == 0
    # The fixture saved the seed-0 initialisation, so the seed-0 baseline is those same weights...
    assert base["perplexity"]["overall"]["loss"] == first["perplexity"]["overall"]["loss"]
    cfg.seed = 1  # ...and another seed gives other fresh weights.
    assert runner.run(resolve(cfg), str(checkpoint), untrained=True)["perplexity"]["overall"]["loss"] != base[
        "perplexity"]["overall"]["loss"]
    assert (tmp_path / "eval" / "untrained_seed0" / "results.json").exists()


def test_heldout_line_tasks_cut_whole_lines():
    from jaxcoder.eval.infilling import heldout_line_tasks

    docs = ["import os\n\ndef f(x):\n    return x + 1\n", "int main() {\n  return 0;\n}\n", "x" * 300 + "\n"]
    tasks = heldout_line_tasks(docs, 20, seed=1)
    assert len(tasks) == 6  # every non-blank line of at most 100 characters, once
    for t in tasks:
        assert t["prefix"] + t["middle"] + t["suffix"] in docs
        assert "\n" not in t["middle"] and t["middle"].strip()
        assert t["prefix"] == "" or t["prefix"].endswith("\n")
        assert t["suffix"].startswith("\n")


def test_unknown_task_is_named(prepared_data, checkpoint, tmp_path):
    from jaxcoder.config import base_config
    from jaxcoder.eval import runner

    cfg = base_config("deepseek-coder-tiny")
    cfg.eval.tasks = ("apps",)
    with pytest.raises(ValueError, match="eval.tasks: unknown task.*apps"):
        runner.run(resolve(cfg), str(checkpoint))


def test_continuation_nll_is_the_targets_mean_log_likelihood():
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jaxcoder.eval.perplexity import continuation_nll
    from jaxcoder.model import functional as F
    from jaxcoder.model.presets import preset

    cfg = preset("deepseek-coder-tiny", vocab_size=64, dtype="float32")
    params = F.init_params(cfg, 3)
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(0, 64, n).tolist(), rng.integers(0, 64, m).tolist())
             for n, m in ((5, 3), (40, 1), (9, 20))]
    total, count = 0.0, 0
    for prompt, target in pairs:  # one unpadded sequence at a time, by hand
        seq = jnp.asarray([prompt + target])
        logp = jax.nn.log_softmax(F.forward(cfg, params, seq)[0].astype(jnp.float32))
        for j, tok in enumerate(target):
            total -= float(logp[len(prompt) - 1 + j, tok])
            count += 1
    assert abs(continuation_nll(cfg, params, pairs, batch_size=2) - total / count) < 1e-5


def test_fim_prompts_psm_and_spm_and_refusals():
    from types import SimpleNamespace

    from jaxcoder.data.fim import FimTokens
    from jaxcoder.eval import infilling

    tok = SimpleNamespace(encode=lambda s: [ord(c) for c in s])
    ids = FimTokens(prefix=1, suffix=2, middle=3)
    pre, suf = [ord(c) for c in "abcdef"], [ord(c) for c in "uvwxyz"]
    assert infilling.fim_prompt(tok, ids, "abcdef", "uvwxyz", 100) == [1, *pre, 2, *suf, 3]
    assert infilling.fim_prompt(tok, ids, "abcdef", "uvwxyz", 100, spm=True) == [1, 2, *suf, 3, *pre]
    # trimmed to 7 tokens: the prefix's end and the suffix's start survive
    assert infilling.fim_prompt(tok, ids, "abcdef", "uvwxyz", 7) == [1, *pre[-2:], 2, *suf[:2], 3]
    from jaxcoder.eval.config import FimEvalConfig
    from jaxcoder.eval.tasks import fim_task

    spm = SimpleNamespace(run=SimpleNamespace(eval=SimpleNamespace(fim=FimEvalConfig(mode="spm"))), layout="deepseek")
    with pytest.raises(ValueError, match="deepseek FIM layout is PSM only"):
        fim_task(spm, "fim_single_line")
    with pytest.raises(ValueError, match="eval.fim.mode must be one of psm, spm; got 'mps'"):
        FimEvalConfig(mode="mps")


def test_fisher_exact_test_of_the_report():
    from math import comb

    from jaxcoder.eval.report import fisher_greater

    assert fisher_greater(1, 1, 0, 1) == 0.5  # one success between two single trials
    assert fisher_greater(0, 10, 3, 10) == 1.0
    # 3 successes among 2 + 2 trials, at least 2 of them in group 1: (C(2,2)C(2,1)) / C(4,3)
    assert fisher_greater(2, 2, 1, 2) == comb(2, 2) * comb(2, 1) / comb(4, 3)
    scipy_stats = pytest.importorskip("scipy.stats")
    for k1, n1, k0, n0 in ((22, 1000, 0, 1000), (3, 200, 1, 200), (5, 50, 9, 70)):
        want = scipy_stats.fisher_exact([[k1, n1 - k1], [k0, n0 - k0]], alternative="greater").pvalue
        assert abs(fisher_greater(k1, n1, k0, n0) - want) < 1e-12 * max(1.0, want)


def test_report_describes_the_prepared_data(prepared_data, tmp_path):
    """The report's data section reads the manifest that `data prepare` writes."""
    from jaxcoder.eval.report import write_report

    cfg, manifest = prepared_data
    text = write_report(tmp_path, data_dir=cfg.data.prepared_dir).read_text()
    c = manifest["counts"]
    assert f"{c['files_seen']:,} files seen in {manifest['repositories']} repositories" in text
    assert f"on Beam's {manifest['runner']}" in text
    assert f"{manifest['total_tokens']:,} training tokens in {c['samples']} samples" in text
    assert c["samples_split"] > 0 and f"{c['samples_split']:,} longer than 4,096 tokens" in text
    for lang, n in manifest["tokens"].items():
        assert f"| {lang} | {manifest['documents'][lang]:,} | {n:,} |" in text
