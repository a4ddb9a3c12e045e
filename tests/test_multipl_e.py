"""The `multipl_e` task: MultiPL-E records from JSONL or Parquet, programs built as MultiPL-E builds
them and run per language, pass@k per language, unrunnable languages skipped and named; the
problems shipped for the demo are right (their reference completions pass, wrong ones fail);
generations round-trip through bigcode-evaluation-harness's file layout."""

from __future__ import annotations

import json

import pytest

from jaxcoder.eval import humaneval, languages, multipl_e

# Reference completions of the shipped problems (what a correct model writes after the prompt).
REFERENCE = {
    ("js", "jaxcoder_0_add"): "  return x + y;\n}",
    ("js", "jaxcoder_1_max_element"): "  return Math.max(...l);\n}",
    ("js", "jaxcoder_2_is_palindrome"): "  return text === text.split('').reverse().join('');\n}",
    ("js", "jaxcoder_3_count_vowels"): "  return [...s].filter(c => 'aeiou'.includes(c)).length;\n}",
    ("cpp", "jaxcoder_0_add"): "    return x + y;",
    ("cpp", "jaxcoder_1_max_element"): "    return *std::max_element(l.begin(), l.end());",
}
WRONG = {"js": "  return 0;\n}", "cpp": "    return 0;"}


def test_the_shipped_problems_pass_with_reference_completions_and_fail_with_wrong_ones():
    records = multipl_e.load(multipl_e.DEMO)
    assert {(r["language"], r["name"]) for r in records} == set(REFERENCE)
    for lang in ("js", "cpp"):
        if languages.available()[lang]:
            pytest.skip(f"{lang}: {languages.available()[lang]}")
        recs = [r for r in records if r["language"] == lang]
        programs = [multipl_e.program(r, REFERENCE[lang, r["name"]]) for r in recs]
        programs += [multipl_e.program(r, WRONG[lang]) for r in recs]
        status = [r.status for r in languages.run_programs(lang, programs)]
        assert status == ["passed"] * len(recs) + ["failed"] * len(recs), (lang, status)


def test_records_load_from_jsonl_and_parquet_and_bad_ones_name_the_field(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = multipl_e.load(multipl_e.DEMO, ("cpp",))
    assert [r["name"] for r in records] == ["jaxcoder_0_add", "jaxcoder_1_max_element"]
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "cpp.parquet")
    assert multipl_e.load(str(tmp_path / "cpp.parquet")) == records
    (tmp_path / "bad.jsonl").write_text(json.dumps({"name": "x", "language": "js", "prompt": "p"}) + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl row 0: a record needs the fields name, language, "
                                         r"prompt, tests, stop_tokens; missing tests, stop_tokens"):
        multipl_e.load(str(tmp_path / "bad.jsonl"))
    with pytest.raises(ValueError, match="eval.multipl_e.languages names rs, but .*multipl_e_demo.jsonl has problems "
                                         "in cpp, js only"):
        multipl_e.load(multipl_e.DEMO, ("js", "rs"))
    with pytest.raises(ValueError, match="no such file"):
        multipl_e.load(str(tmp_path / "missing.jsonl"))


def _hub_layout(root, configs: dict[str, list[dict]]) -> str:
    """A dataset folder laid out as the hub stores one: a Parquet file per configuration and
    split, named in the README's `configs` card (the layout of nuprl/MultiPL-E)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    card = ["---", "configs:"]
    for name, rows in configs.items():
        (root / name).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows), root / name / "test-00000-of-00001.parquet")
        card += [f"- config_name: {name}", "  data_files:", "  - split: test", f"    path: {name}/test-*.parquet"]
    (root / "README.md").write_text("\n".join([*card, "---", ""]))
    return f"hf:{root}"


def test_hub_sources_load_through_datasets(tmp_path, monkeypatch):
    """`hf:` sources go through `datasets.load_dataset`, per configuration for MultiPL-E: here on a
    folder in the hub's layout (load_dataset reads a local folder exactly as a hub repository,
    offline), so the loading code runs without downloading anything."""
    datasets = pytest.importorskip("datasets")
    from jaxcoder.eval import mbpp

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")
    demo = multipl_e.load(multipl_e.DEMO)
    by_lang = {f"humaneval-{lang}": [r for r in demo if r["language"] == lang] for lang in ("cpp", "js")}
    source = _hub_layout(tmp_path / "multipl_e", by_lang)
    assert multipl_e.load(source, ("js", "cpp")) == by_lang["humaneval-js"] + by_lang["humaneval-cpp"]
    with pytest.raises(ValueError, match="name the languages"):
        multipl_e.load(source)
    row = {"task_id": 11, "text": "Write a function to add two numbers.", "test_list": ["assert add(1, 2) == 3"]}
    mbpp_source = _hub_layout(tmp_path / "mbpp", {"default": [row]})
    assert mbpp.load(mbpp_source) == [{"task_id": "11", "description": row["text"], "test_list": row["test_list"],
                                       "tests": "assert add(1, 2) == 3"}]


class _Tokenizer:
    def encode_prompt(self, text: str) -> list[int]:
        return [len(text)]


def test_the_task_scores_each_language_and_skips_what_cannot_run(tmp_path):
    """Two samples per problem: add right twice, max_element right once (pass@1 = (1 + 1/2) / 2),
    and a language without a runner skipped with its reason."""
    from helpers import scripted_context

    from jaxcoder.config import base_config, resolve
    from jaxcoder.eval.generate import truncate
    from jaxcoder.eval.store import SampleStore
    from jaxcoder.eval.tasks import TASKS

    if languages.available()["cpp"]:
        pytest.skip(languages.available()["cpp"])
    records = multipl_e.load(multipl_e.DEMO, ("cpp",))
    records.append({**records[0], "language": "cobol"})
    path = tmp_path / "problems.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = base_config("deepseek-coder-tiny")
    cfg.eval.multipl_e.update(path=str(path), n_samples=2, ks=(1, 2))
    samples = {"jaxcoder_0_add": [REFERENCE["cpp", "jaxcoder_0_add"]] * 2,
               "jaxcoder_1_max_element": [REFERENCE["cpp", "jaxcoder_1_max_element"] + "\n}\nint x;", WRONG["cpp"]]}

    def answer(key, stop):
        _, lang, _, name, j = key.split("/")
        return truncate(samples[name][int(j)], stop)

    store = SampleStore(tmp_path / "samples.jsonl")
    ctx = scripted_context(resolve(cfg), store, answer, tokenizer=_Tokenizer())
    out = TASKS["multipl_e"](ctx)
    store.close()
    cpp = out["per_language"]["cpp"]
    assert cpp["problems"] == 2
    assert cpp["pass@1"] == pytest.approx((humaneval.pass_at_k(2, 2, 1) + humaneval.pass_at_k(2, 1, 1)) / 2) == 0.75
    assert cpp["pass@2"] == pytest.approx(1.0)
    assert list(out["skipped"]) == ["cobol"] and "no runner for it" in out["skipped"]["cobol"]

    # The harness's layout: per problem, its generations as prompt + completion. Scoring that file
    # (as one the harness wrote) without a model gives the same numbers.
    from jaxcoder.eval import runner

    written = json.loads((tmp_path / "generations_multiple-cpp.json").read_text())
    assert written == [[records[0]["prompt"] + REFERENCE["cpp", "jaxcoder_0_add"]] * 2,
                       [records[1]["prompt"] + REFERENCE["cpp", "jaxcoder_1_max_element"],
                        records[1]["prompt"] + WRONG["cpp"]]]
    cfg.eval.multipl_e.languages = ("cpp",)
    cfg.eval.tasks = ("multipl_e",)
    cfg.workdir = str(tmp_path / "scored")
    again = runner.score_generations(resolve(cfg), str(tmp_path / "generations_multiple-cpp.json"))
    assert again["multipl_e"]["per_language"] == out["per_language"]
    assert (tmp_path / "scored" / "eval" / "harness_generations_multiple-cpp" / "results.json").exists()


def test_a_harness_humaneval_file_is_scored_without_a_model(tmp_path):
    """The harness's own file for its first 3 HumanEval problems, 2 generations each (the canonical
    solution, then `pass`): pass@1 0.5, pass@2 1.0; a generation of another task is refused."""
    from jaxcoder.config import base_config, resolve
    from jaxcoder.eval import runner

    probs = humaneval.problems()[:3]
    rows = [[humaneval.prompt(p) + humaneval.canonical_completion(p), humaneval.prompt(p) + "\n    pass\n"]
            for p in probs]
    (tmp_path / "generations_humaneval.json").write_text(json.dumps(rows))
    cfg = base_config("deepseek-coder-tiny")
    cfg.workdir = str(tmp_path)
    cfg.eval.tasks = ("humaneval",)
    cfg.eval.humaneval.ks = (1, 2)
    out = runner.score_generations(resolve(cfg), str(tmp_path / "generations_humaneval.json"))["humaneval"]
    assert out["problems"] == 3 and out["samples_per_problem"] == 2
    assert out["pass@1"] == pytest.approx(0.5) and out["pass@2"] == pytest.approx(1.0)
    rows[1][0] = "def f():\n    return 1\n"
    (tmp_path / "other.json").write_text(json.dumps(rows))
    with pytest.raises(ValueError, match="other.json: problem 1 generation 0 does not start with the task's prompt"):
        runner.score_generations(resolve(cfg), str(tmp_path / "other.json"))
    (tmp_path / "empty.json").write_text("[]")
    with pytest.raises(ValueError, match="empty.json holds no problems"):
        runner.score_generations(resolve(cfg), str(tmp_path / "empty.json"))


def test_the_report_charts_languages_and_compares_two_checkpoints(tmp_path):
    """An imported model (step 0) and the same after continued pretraining (step 12), evaluated
    into one run directory: the report sets them side by side, task by task and per language."""
    from jaxcoder.eval.report import write_report

    def results(step, js, cpp, he):
        return {"checkpoint": f"runs/x/{'imported' if step == 0 else 'continued/checkpoints'}", "step": step,
                "humaneval": {"problems": 164, "samples_per_problem": 1, "pass@1": he},
                "multipl_e": {"samples_per_problem": 1, "skipped": {"rs": "rustc not found on PATH"},
                              "per_language": {"js": {"problems": 4, "pass@1": js},
                                               "cpp": {"problems": 2, "pass@1": cpp}}}}

    for step, r in ((0, results(0, 0.25, 0.5, 0.1)), (12, results(12, 0.5, 0.5, 0.125))):
        (tmp_path / "eval" / f"step_{step}").mkdir(parents=True)
        (tmp_path / "eval" / f"step_{step}" / "results.json").write_text(json.dumps(r))
    report = write_report(tmp_path, compare="step_0").read_text()
    assert (tmp_path / "languages.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| cpp | 2 | — | 0.5000 |" in report and "Skipped (not runnable on the evaluating host): rs: rustc" in report
    assert "| metric | runs/x/imported step 0 | runs/x/continued/checkpoints step 12 | difference |" in report
    assert "| MultiPL-E js pass@1 | 0.2500 | 0.5000 | 0.2500 |" in report
    assert "| HumanEval pass@1 | 0.1000 | 0.1250 | 0.0250 |" in report
    with pytest.raises(ValueError, match="--compare=step_7: no results.json"):
        write_report(tmp_path, compare="step_7")
