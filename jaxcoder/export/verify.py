"""Check an exported directory with transformers: logits parity and a greedy completion."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def verify_export(hf_dir: str | Path, cfg, params, prompt: str, max_new_tokens: int = 48) -> dict:
    """Loads `hf_dir` with transformers (CPU, float32), compares logits with jaxcoder's on the
    prompt, and prints transformers' greedy completion. Returns the measurements."""
    import jax.numpy as jnp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jaxcoder.model import functional as F

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hf_logits = model(ids).logits.numpy()
        out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    jx_logits = np.asarray(F.forward(cfg.replace(dtype="float32"), params, jnp.asarray(ids.numpy())))
    diff = float(np.abs(hf_logits - jx_logits).max())
    completion = tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    print(f"transformers check: {type(model).__name__}, max |logit difference| vs jaxcoder = {diff:.2e} "
          f"over {ids.shape[1]} prompt tokens")
    print("transformers completion:\n" + "-" * 60 + f"\n{prompt}{completion}\n" + "-" * 60)
    return {"max_logit_diff": diff, "completion": completion, "prompt_tokens": int(ids.shape[1])}
