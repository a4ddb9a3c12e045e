"""SantaCoder 1.1B (GPTBigCode, multi-query, 2K context). `--config=configs/santacoder.py:1.1b`."""

from jaxcoder.config import base_config, parse_arg


def get_config(arg=None):
    a = parse_arg(arg, size="1.1b")
    if a.size not in ("1.1b", "tiny"):
        raise ValueError(f"santacoder sizes: 1.1b, tiny; got {a.size!r}")
    c = base_config(f"santacoder-{a.size}")
    c.tokenizer.layout = "starcoder"
    c.train.lr = 2e-4 if a.size == "1.1b" else 1e-3
    c.train.min_lr_ratio = 0.0
    c.train.warmup_steps = 12000 if a.size == "1.1b" else 20
    c.train.seq_len = 2048 if a.size == "1.1b" else 256
    c.workdir = f"runs/santacoder-{a.size}"
    return c
