"""StarCoder2 (GQA, RoPE, sliding window 4096). `--config=configs/starcoder2.py:3b`.

Sizes: 3b, 7b, 15b (published) and tiny (tests). Base training ran at 4K context, then 16K.
"""

from jaxcoder.config import base_config, parse_arg

_SIZES = ("3b", "7b", "15b", "tiny")


def get_config(arg=None):
    a = parse_arg(arg, size="3b")
    if a.size not in _SIZES:
        raise ValueError(f"starcoder2 sizes: {', '.join(_SIZES)}; got {a.size!r}")
    c = base_config(f"starcoder2-{a.size}")
    c.tokenizer.layout = "starcoder"
    c.train.lr = 3e-4 if a.size != "tiny" else 1e-3
    c.train.warmup_steps = 1000 if a.size != "tiny" else 20
    c.train.seq_len = 4096 if a.size != "tiny" else 256
    c.workdir = f"runs/starcoder2-{a.size}"
    return c
