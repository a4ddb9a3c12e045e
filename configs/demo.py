"""The `make demo` run: a small DeepSeek-Coder-style model trained on this machine's Python
standard library, on 2 CPU cores in a few minutes.

`--config=configs/demo.py` (default line: deepseek) or `configs/demo.py:starcoder2` /
`configs/demo.py:santacoder` to train a tiny model of another line.
"""

from jaxcoder.config import base_config, parse_arg

_PRESETS = {"deepseek": "deepseek-coder-tiny", "starcoder2": "starcoder2-tiny", "santacoder": "santacoder-tiny"}


def get_config(arg=None):
    a = parse_arg(arg, line="deepseek", steps=300)
    if a.line not in _PRESETS:
        raise ValueError(f"demo lines: {', '.join(_PRESETS)}; got {a.line!r}")
    c = base_config(_PRESETS[a.line])
    c.workdir = "runs/demo"
    c.model.update(d_model=128, n_layers=4, n_heads=4, head_dim=32, vocab_size=4096,
                   d_ff=344 if a.line == "deepseek" else 512, dtype="float32", remat="none")
    c.model.n_kv_heads = 1 if a.line == "santacoder" else 2
    c.tokenizer.vocab_size = 4096
    c.tokenizer.path = "runs/demo/tokenizer/code.model"
    c.tokenizer.layout = "deepseek" if a.line == "deepseek" else "starcoder"
    c.tokenizer.train_files = 300
    c.data.max_files = 600
    c.train.steps = a.steps
    c.train.batch_size = 8
    c.train.seq_len = 256
    c.train.lr = 2e-3
    c.train.warmup_steps = 30
    c.train.log_every = 25
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    return c
