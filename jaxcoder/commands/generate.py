"""jaxcoder generate: sample a completion of --prompt from a checkpoint."""

from __future__ import annotations

from absl import flags

from jaxcoder.commands import common
from jaxcoder.data.tokenizer import load_tokenizer
from jaxcoder.eval.generate import SamplingConfig, generate
from jaxcoder.train.checkpoint import checkpoint_tokenizer, load_params

PROMPT = flags.DEFINE_string("prompt", None, "Text to complete (backslash escapes \\n, \\t, \\r, \\\\ are "
                             "decoded).")
MAX_NEW = flags.DEFINE_integer("max_new_tokens", 64, "Tokens to generate.")
TEMPERATURE = flags.DEFINE_float("temperature", 0.0, "0 = greedy.")
TOP_K = flags.DEFINE_integer("top_k", 0, "Sample from the k most likely tokens (0 = off).")
TOP_P = flags.DEFINE_float("top_p", 1.0, "Nucleus sampling mass (1.0 = off).")
SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
TOKENIZER = flags.DEFINE_string("tokenizer", None, "A tokenizer (default: the checkpoint's own).")


def main(argv):
    del argv
    ckpt = common.require(common.CHECKPOINT, "the checkpoint to sample from")
    prompt = common.unescape(common.require(PROMPT, "the text to complete"))
    cfg, params, meta = load_params(ckpt, common.STEP.value)
    tok = load_tokenizer(TOKENIZER.value) if TOKENIZER.value else checkpoint_tokenizer(ckpt, meta)
    if tok is None:
        raise SystemExit("error: the checkpoint carries no tokenizer; pass --tokenizer=PATH")
    s = SamplingConfig(max_new_tokens=MAX_NEW.value, temperature=TEMPERATURE.value, top_k=TOP_K.value,
                       top_p=TOP_P.value, seed=SEED.value)
    out = generate(cfg, params, [tok.encode_prompt(prompt)], s, stop_ids=(tok.eos_id,))[0]
    print(prompt + tok.decode(t for t in out if t != tok.eos_id))
