"""StarCoder2 (GQA, RoPE, sliding window 4096) and the paper's two training stages.

    --config=configs/starcoder2.py:3b              stage 1: 4K context, RoPE theta 1e5
    --config=configs/starcoder2.py:3b,stage=long   stage 2: 16K context, repository-level data

Sizes: 3b, 7b, 15b (published) and tiny (tests); `smoke=1` shrinks a stage to seconds. From the
paper (shared/reference/code-llm-papers.md 4.2): base training at 4K with RoPE base period 1e5,
then 16K on repository-level documents. The released 3B and 7B configs carry theta 1e6 (the 15B
1e5); stage 2 uses the released value, as `import` does. The paper's long-stage schedule was not
read: stage 2 here follows DeepSeek-Coder's (1,000 steps at the final learning rate, Adam moments
kept) [unverified for StarCoder2].
"""

from jaxcoder.config import base_config, parse_arg, smoke_stage

_SIZES = ("3b", "7b", "15b", "tiny")
_STAGES = ("base", "long")


def get_config(arg=None):
    a = parse_arg(arg, size="3b", stage="base", smoke=False)
    if a.size not in _SIZES:
        raise ValueError(f"starcoder2 sizes: {', '.join(_SIZES)}; got {a.size!r}")
    if a.stage not in _STAGES:
        raise ValueError(f"starcoder2 stages: {', '.join(_STAGES)}; got {a.stage!r}")
    c = base_config(f"starcoder2-{a.size}")
    c.tokenizer.layout = "starcoder"
    c.train.lr = 3e-4 if a.size != "tiny" else 1e-3
    c.train.min_lr_ratio = 0.1
    base_dir = f"runs/starcoder2-{a.size}"
    if a.stage == "base":
        c.model.rope.theta = 100000.0
        c.train.warmup_steps = 1000 if a.size != "tiny" else 20
        c.train.seq_len = 4096 if a.size != "tiny" else 256
        c.data.repo_level = False  # file-level documents; repositories come in stage 2
        c.data.prepared_dir = f"{base_dir}/data"
        c.workdir = base_dir
    else:
        c.train.seq_len = 16384
        c.train.steps = 1000
        c.train.lr *= c.train.min_lr_ratio
        c.train.warmup_steps = 0
        c.train.schedule = "constant"
        c.train.init_from = f"{base_dir}/checkpoints"
        c.train.init_optimizer = "keep"
        c.data.repo_level = True
        c.data.repo_format = "starcoder2"  # <repo_name>, <file_sep> metadata tokens
        c.data.max_sample_tokens = 16384
        c.data.prepared_dir = f"{base_dir}/data-repo"
        c.workdir = f"{base_dir}-16k"
    if a.smoke:
        smoke_stage(c, a.stage)
    return c
