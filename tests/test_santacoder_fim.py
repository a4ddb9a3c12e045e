"""SantaCoder's FIM benchmark (`santacoder_fim`): its rows from JSONL, PSM prompts in both token
layouts with each layout's sentinel ids (and DeepSeek's BOS), exact match per language."""

from __future__ import annotations

import pytest
from helpers import deepseek_like_tokenizer, starcoder2_like_tokenizer, write_jsonl

from jaxcoder.data.fim import FimTokens
from jaxcoder.data.tokenizer import load_tokenizer
from jaxcoder.eval import infilling

ROWS = [
    {"name": "HumanEval_0_has_close_elements", "language": "py", "prompt": "def add(x, y):\n",
     "suffix": "\n\nprint(add(1, 2))\n", "canonical_solution": "    return x + y"},
    {"name": "HumanEval_23_strlen", "language": "js", "prompt": "function strlen(string){\n",
     "suffix": "\n}\n", "canonical_solution": "  return string.length;"},
    {"name": "HumanEval_23_strlen", "language": "java",
     "prompt": "class Problem {\n    public static long strlen(String s) {\n",
     "suffix": "\n    }\n}\n", "canonical_solution": "        return s.length();"},
]
# The sentinels as each layout spells them: (prefix, suffix, middle), and whether BOS leads.
LAYOUTS = {"starcoder": (("<fim_prefix>", "<fim_suffix>", "<fim_middle>"), False),
           "deepseek": (("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"), True)}


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    texts = [r["prompt"] + r["canonical_solution"] + r["suffix"] for r in ROWS] * 20
    d = tmp_path_factory.mktemp("tok")
    return {"starcoder": load_tokenizer(starcoder2_like_tokenizer(texts, d / "sc2", vocab_size=400)),
            "deepseek": load_tokenizer(deepseek_like_tokenizer(texts, d / "ds", vocab_size=400))}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_prompts_use_the_layouts_sentinel_ids(tokenizers, tmp_path, layout):
    path = write_jsonl(tmp_path / "santacoder_fim.jsonl", ROWS)
    items = infilling.santacoder_tasks(path)
    assert [(it["language"], it["middle"]) for it in items] == [(r["language"], r["canonical_solution"]) for r in ROWS]
    tok = tokenizers[layout]
    (pre, suf, mid), bos = LAYOUTS[layout]
    ids = [tok.token_id(t) for t in (pre, suf, mid)]
    assert len(set(ids)) == 3 and all(i is not None for i in ids)
    for it in items:
        prompt = infilling.fim_prompt(tok, FimTokens.from_tokenizer(tok, layout), it["prefix"], it["suffix"], 1024)
        expected = [ids[0], *tok.encode(it["prefix"]), ids[1], *tok.encode(it["suffix"]), ids[2]]
        assert prompt == ([tok.bos_id] if bos else []) + expected
    assert [it["id"] for it in infilling.santacoder_tasks(path, ("js", "java"))] == [
        "js/HumanEval_23_strlen/0", "java/HumanEval_23_strlen/1"]


def test_the_task_scores_exact_match_per_language(tokenizers, tmp_path):
    from helpers import run_scripted, write_jsonl

    from jaxcoder.config import base_config, resolve

    cfg = base_config("deepseek-coder-tiny")
    cfg.eval.fim.santacoder_path = write_jsonl(tmp_path / "santacoder_fim.jsonl", ROWS)
    answers = {"py": "    return x + y\nprint()", "js": "  return string.size;", "java": "        return s.length();  "}
    out = run_scripted("santacoder_fim", resolve(cfg), tmp_path,
                       lambda key, stop: answers[key.split("/")[2]].split(stop[0])[0], tokenizer=tokenizers["deepseek"])
    assert out["tasks"] == 3 and out["matches"] == 2
    assert out["per_language"] == {"java": 1.0, "js": 0.0, "py": 1.0}
