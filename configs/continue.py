"""Continued pretraining of a checkpoint, typically a published model brought in with
`jaxcoder import`: `--config=configs/continue.py:runs/ds13/imported`.

The model section is the checkpoint's own (so `train.init_from` accepts it), the tokenizer is the
one it carries (data is prepared with it), and the FIM layout is the one its tokenizer has tokens
for: DeepSeek-Coder's (PSM only) or StarCoder's. Everything else is `base_config`'s, with a
continued-pretraining learning rate; point `data.sources` at your code. `:<dir>,smoke=1` shrinks
the run for the tests that execute the README.
"""

from pathlib import Path

from jaxcoder.config import base_config, parse_arg
from jaxcoder.fields import section
from jaxcoder.model.config import ModelConfig


def get_config(arg=None):
    a = parse_arg(arg, checkpoint="", steps=1000, smoke=False)
    if not a.checkpoint:
        raise ValueError("configs/continue.py needs the checkpoint: --config=configs/continue.py:<checkpoint dir>")
    from jaxcoder.train.checkpoint import checkpoint_tokenizer, read_meta

    ckpt = str(Path(a.checkpoint).absolute())
    _, meta = read_meta(ckpt)
    tok = checkpoint_tokenizer(ckpt, meta)
    if tok is None:
        raise ValueError(f"{ckpt} carries no tokenizer: import the model with its tokenizer files")
    c = base_config()
    c.model = section(ModelConfig.from_dict(meta["model"]))
    c.model.preset = ""
    c.workdir = str(Path(ckpt).parent / "continued")
    c.data.prepared_dir = str(Path(ckpt).parent / "continued-data")
    c.tokenizer.path = ckpt
    deepseek = tok.has_token("<｜fim▁begin｜>")
    c.tokenizer.layout = "deepseek" if deepseek else "starcoder"
    c.data.fim.spm_rate = 0.0 if deepseek else 0.5  # DeepSeek-Coder trains PSM only
    c.data.repo_format = "path_comment" if deepseek else "starcoder2"
    if not tok.has_token("<file_sep>"):
        c.data.repo_format = "path_comment"
    c.train.init_from = ckpt
    c.train.steps = a.steps
    c.train.lr = 1e-4  # a fraction of pretraining's peak: the model is trained already
    c.train.warmup_steps = min(100, a.steps // 10)
    c.train.seq_len = min(4096, c.model.max_seq_len)
    if a.smoke:
        c.train.update(steps=min(a.steps, 12), batch_size=4, seq_len=min(64, c.model.max_seq_len), warmup_steps=2,
                       log_every=4, eval_every=6, checkpoint_every=6, eval_batches=1)
        c.data.heldout_fraction = 0.2
        c.data.repo_level = False
        c.eval.update(batch_size=4, seq_len=64, perplexity_batches=1)
        c.eval.humaneval.update(limit=2, max_new_tokens=8, ks=(1,))
        c.eval.fim.update(limit=4, heldout_lines=4, random_spans=2, max_new_tokens=8, max_context=64)
    return c
