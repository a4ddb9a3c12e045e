"""StarCoderBase (GPTBigCode: multi-query attention, learned positions).

`--config=configs/starcoderbase.py:15.5b`. Sizes: 1b, 3b, 7b, 15.5b and tiny. Learning rates,
warmup and the 8K context follow BigCode's Megatron launch scripts (cosine to 10%).
"""

from jaxcoder.config import base_config, parse_arg

_LR = {"1b": 4e-4, "3b": 5e-4, "7b": 3e-4, "15.5b": 3e-4}


def get_config(arg=None):
    a = parse_arg(arg, size="1b")
    if a.size == "tiny":
        c = base_config("santacoder-tiny")
        c.train.lr, c.train.warmup_steps, c.train.seq_len = 1e-3, 20, 256
    elif a.size in _LR:
        c = base_config(f"starcoderbase-{a.size}")
        c.train.lr, c.train.warmup_steps, c.train.seq_len = _LR[a.size], 2000, 8192
    else:
        raise ValueError(f"starcoderbase sizes: {', '.join(_LR)}, tiny; got {a.size!r}")
    c.tokenizer.layout = "starcoder"
    c.workdir = f"runs/starcoderbase-{a.size}"
    return c
