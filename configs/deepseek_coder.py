"""DeepSeek-Coder base models (Llama architecture). `--config=configs/deepseek_coder.py:6.7b`.

Sizes: 1.3b, 6.7b, 33b (published) and tiny (tests). Training values from the paper: AdamW
0.9/0.95, 2000 warmup steps, 4K context then 16K with linear RoPE scaling x4, theta 1e5.
"""

from jaxcoder.config import base_config, parse_arg

_LR = {"1.3b": 5.3e-4, "6.7b": 4.2e-4, "33b": 3.5e-4, "tiny": 1e-3}


def get_config(arg=None):
    a = parse_arg(arg, size="1.3b")
    if a.size not in _LR:
        raise ValueError(f"deepseek_coder sizes: {', '.join(_LR)}; got {a.size!r}")
    c = base_config(f"deepseek-coder-{a.size}")
    c.tokenizer.layout = "deepseek"
    c.data.fim.spm_rate = 0.0  # DeepSeek-Coder: FIM rate 0.5, PSM only
    c.train.lr = _LR[a.size]
    c.train.warmup_steps = 2000 if a.size != "tiny" else 20
    c.train.seq_len = 4096 if a.size != "tiny" else 256
    c.workdir = f"runs/deepseek-coder-{a.size}"
    return c
