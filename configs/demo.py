"""The `make demo` run: a small model trained on this machine's own source code (the Python
standard library, Linux headers, Perl's core modules and npm's JavaScript) on 2 CPU cores.

`--config=configs/demo.py` (default line: deepseek) or `configs/demo.py:starcoder2` /
`configs/demo.py:santacoder` to train a tiny model of another line; `:steps=N` sets the length;
`:smoke=1` shrinks everything (two stdlib packages, 12 steps, a few eval tasks) for the tests
that run the README's commands.
"""

import os
import sysconfig

from jaxcoder.config import base_config, parse_arg
from jaxcoder.eval import multipl_e

_PRESETS = {"deepseek": "deepseek-coder-tiny", "starcoder2": "starcoder2-tiny", "santacoder": "santacoder-tiny"}
# Real multi-language code that ships with this machine; missing ones are skipped.
_EXTRA_ROOTS = ("/usr/include",)  # each subdirectory a repository; loose headers one more
_EXTRA_REPOS = ("/usr/lib/x86_64-linux-gnu/perl-base", "/usr/lib/node_modules/npm")


def get_config(arg=None):
    a = parse_arg(arg, line="deepseek", steps=1000, smoke=False)
    if a.line not in _PRESETS:
        raise ValueError(f"demo lines: {', '.join(_PRESETS)}; got {a.line!r}")
    c = base_config(_PRESETS[a.line])
    c.workdir = "runs/demo"
    c.model.update(d_model=128, n_layers=4, n_heads=4, head_dim=32, vocab_size=8192,
                   d_ff=344 if a.line == "deepseek" else 512, dtype="float32", remat="none")
    c.model.n_kv_heads = 1 if a.line == "santacoder" else 2
    c.tokenizer.vocab_size = 8192
    c.tokenizer.layout = "deepseek" if a.line == "deepseek" else "starcoder"
    c.data.prepared_dir = "runs/demo/data"
    c.data.sources.repo_roots = (sysconfig.get_paths()["stdlib"], *(d for d in _EXTRA_ROOTS if os.path.isdir(d)))
    c.data.sources.repo_dirs = tuple(d for d in _EXTRA_REPOS if os.path.isdir(d))
    c.data.sources.exclude = (*c.data.sources.exclude, "test", "tests", "idlelib", "lib2to3", "config-3*")
    c.data.heldout_fraction = 0.02
    # Whole repositories reach 4M tokens here; pieces of 16 rows keep the 400 demo steps from
    # spending themselves on a handful of files.
    c.data.max_sample_tokens = 4096
    c.data.fim.spm_rate = 0.0 if a.line == "deepseek" else 0.5  # DeepSeek-Coder trains PSM only
    # Files are far longer than the 256-token rows: FIM each 128-token piece, so the sentinels and
    # the middle they announce land in the same row (context-level FIM).
    c.data.fim.max_tokens = 128
    # Half of the FIM pieces get whole-line middles (Bavarian et al.'s line-level spans): with only
    # character spans a model this small learns to start a middle mid-word, and the evaluation's
    # holes are whole lines.
    c.data.fim.line_rate = 0.5
    # The headers dominate by size; weight toward Python, the language the demo prompts in.
    c.data.mixture = (("python", 0.6), ("c", 0.25), ("javascript", 0.1), ("perl", 0.05))
    c.train.steps = a.steps
    c.train.batch_size = 8
    c.train.seq_len = 256
    c.train.lr = 2e-3
    c.train.warmup_steps = 30
    c.train.log_every = 10
    c.train.eval_every = 100
    # 10 batches of 8 rows per language are the evaluation's 5 x 16 rows: the log's last held-out
    # loss and `jaxcoder eval`'s are the same number.
    c.train.eval_batches = 10
    c.train.checkpoint_every = 200
    # The evaluation `make demo` ends with: every HumanEval problem greedily (a tiny model scores ~0,
    # but the harness and sandbox run end to end), FIM exact match (HumanEval lines, held-out lines,
    # held-out spans), held-out bits per byte; then the same for the untrained baseline.
    c.eval.humaneval.update(n_samples=1, temperature=0.0, max_new_tokens=128, ks=(1,))
    # 1,000 held-out lines: a small model's exact-match rate is a few percent, so the report's test
    # against the untrained model needs that many. Prompts as long as the FIM pieces trained on.
    c.eval.fim.update(limit=200, heldout_lines=1000, random_spans=100, max_new_tokens=48, max_context=128)
    # A non-Python task: MultiPL-E-format problems written for the project (JavaScript and C++),
    # compiled and run in the sandbox; the report's per-language table.
    c.eval.tasks = (*c.eval.tasks, "multipl_e")
    c.eval.multipl_e.update(path=multipl_e.DEMO, max_new_tokens=128)
    c.eval.perplexity_batches = 5
    c.eval.seq_len = 256
    if a.smoke:
        _smoke(c)
    return c


def _smoke(c):
    stdlib = sysconfig.get_paths()["stdlib"]
    c.data.sources.repo_roots = ()
    c.data.sources.repo_dirs = (f"{stdlib}/json", f"{stdlib}/email")
    c.data.mixture = ()
    c.data.repo_level = False  # file samples, so the held-out split is not empty
    c.data.heldout_fraction = 0.1
    c.tokenizer.vocab_size = c.model.vocab_size = 1024
    c.train.update(steps=12, log_every=4, eval_every=6, checkpoint_every=6, warmup_steps=2, eval_batches=2)
    c.eval.humaneval.update(limit=4, max_new_tokens=16)
    c.eval.multipl_e.update(languages=("js",), limit=2, max_new_tokens=16)
    c.eval.fim.update(limit=6, heldout_lines=6, random_spans=4, max_new_tokens=8)
    c.eval.perplexity_batches = 1
