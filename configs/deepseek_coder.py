"""DeepSeek-Coder base models (Llama architecture) and the paper's two training stages.

    --config=configs/deepseek_coder.py:6.7b              stage 1: 4K context, RoPE theta 1e4
    --config=configs/deepseek_coder.py:6.7b,stage=long   stage 2: 16K, linear RoPE x4, theta 1e5

Sizes: 1.3b, 6.7b, 33b (published) and tiny (tests). `smoke=1` shrinks a stage to seconds (the
README's runbook in tests/test_readme.py). From the paper (shared/reference/code-llm-papers.md
4.3): AdamW 0.9/0.95, 2,000 warmup steps, DeepSeek-LLM's multi-step schedule (the peak until 80%
of the steps, x sqrt(1/10) until 90%, 10% of the peak after); 1.8T tokens at 4K context; then RoPE
linear scaling 1 -> 4 and base 10,000 -> 100,000 for 1,000 more steps of 512 x 16K tokens at the
final learning rate. The released checkpoints (and `import`) carry stage 2's RoPE.
"""

from jaxcoder.config import base_config, parse_arg, smoke_stage

_LR = {"1.3b": 5.3e-4, "6.7b": 4.2e-4, "33b": 3.5e-4, "tiny": 1e-3}
# Table 2's batch sizes; the paper does not state the unit: read as sequences of 4K tokens.
_BATCH = {"1.3b": 1024, "6.7b": 2304, "33b": 3840, "tiny": 8}
_BASE_TOKENS = 1.8e12
_STAGES = ("base", "long")


def get_config(arg=None):
    a = parse_arg(arg, size="1.3b", stage="base", smoke=False)
    if a.size not in _LR:
        raise ValueError(f"deepseek_coder sizes: {', '.join(_LR)}; got {a.size!r}")
    if a.stage not in _STAGES:
        raise ValueError(f"deepseek_coder stages: {', '.join(_STAGES)}; got {a.stage!r}")
    c = base_config(f"deepseek-coder-{a.size}")
    c.tokenizer.layout = "deepseek"
    c.data.fim.spm_rate = 0.0  # DeepSeek-Coder: FIM rate 0.5, PSM only
    c.train.b1, c.train.b2 = 0.9, 0.95
    c.train.min_lr_ratio = 0.1
    base_dir = f"runs/deepseek-coder-{a.size}"
    c.data.prepared_dir = f"{base_dir}/data"  # both stages read the same repository-level corpus
    if a.stage == "base":
        c.model.rope.update(theta=10000.0, scaling="none", factor=1.0)
        c.train.seq_len = 4096 if a.size != "tiny" else 256
        c.train.batch_size = _BATCH[a.size]
        c.train.steps = round(_BASE_TOKENS / (_BATCH[a.size] * 4096)) if a.size != "tiny" else 1000
        c.train.lr = _LR[a.size]
        c.train.warmup_steps = 2000 if a.size != "tiny" else 20
        c.train.schedule = "multistep"
        c.workdir = base_dir
    else:  # the published checkpoints' RoPE (the preset's), from stage 1's last checkpoint
        c.train.seq_len = 16384
        c.train.batch_size = 512
        c.train.steps = 1000
        c.train.lr = _LR[a.size] * c.train.min_lr_ratio  # "LR kept from the final stage"
        c.train.warmup_steps = 0
        c.train.schedule = "constant"
        c.train.init_from = f"{base_dir}/checkpoints"
        c.train.init_optimizer = "keep"
        c.workdir = f"{base_dir}-16k"
    if a.smoke:
        smoke_stage(c, a.stage)
    return c
