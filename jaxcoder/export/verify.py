"""Check an exported directory with transformers: logits parity, and a greedy completion and a
fill-in-the-middle produced by transformers, each compared token for token with jaxcoder's own
greedy decoding of the same prompt."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from jaxcoder.data.fim import FimTokens
from jaxcoder.eval.infilling import fim_prompt


def _greedy_both(model, cfg, params, ids: list[int], eos_id: int, pad_id: int, max_new_tokens: int):
    """transformers' and jaxcoder's greedy continuations (token ids, eos excluded)."""
    import torch

    from jaxcoder.eval.generate import SamplingConfig, generate

    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=pad_id, eos_token_id=eos_id)
    hf = [int(t) for t in out[0, len(ids):]]
    hf = hf[:hf.index(eos_id)] if eos_id in hf else hf
    ours = generate(cfg.replace(dtype="float32"), params, [ids], SamplingConfig(max_new_tokens=max_new_tokens),
                    stop_ids=(eos_id,))[0]
    return hf, list(ours)


def verify_export(hf_dir: str | Path, cfg, params, prompt: str, max_new_tokens: int = 48,
                  infill: tuple[str, str] | None = None, layout: str | None = None) -> dict:
    """Loads `hf_dir` with transformers (CPU, float32), compares logits with jaxcoder's on the
    prompt, prints transformers' greedy completion and, with `infill=(prefix, suffix)` and the
    tokenizer `layout`, its fill-in-the-middle; both are compared with jaxcoder's greedy tokens.
    Returns the measurements."""
    import jax.numpy as jnp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from jaxcoder.model import functional as F

    tok = AutoTokenizer.from_pretrained(str(hf_dir))
    model = AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype=torch.float32).eval()
    ids = tok(prompt, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hf_logits = model(ids).logits.numpy()
    jx_logits = np.asarray(F.forward(cfg.replace(dtype="float32"), params, jnp.asarray(ids.numpy())))
    diff = float(np.abs(hf_logits - jx_logits).max())
    print(f"transformers check: {type(model).__name__}, max |logit difference| vs jaxcoder = {diff:.2e} "
          f"over {ids.shape[1]} prompt tokens")
    hf, ours = _greedy_both(model, cfg, params, ids[0].tolist(), tok.eos_token_id, tok.pad_token_id,
                            max_new_tokens)
    completion = tok.decode(hf, skip_special_tokens=True)
    print(f"transformers completion ({'same tokens as' if hf == ours else 'DIFFERS from'} jaxcoder's):\n"
          + "-" * 60 + f"\n{prompt}{completion}\n" + "-" * 60)
    result = {"architecture": type(model).__name__, "max_logit_diff": diff, "prompt": prompt,
              "completion": completion, "prompt_tokens": int(ids.shape[1]), "completion_matches_jaxcoder": hf == ours}
    if infill is not None:
        if layout is None:
            raise ValueError("an infill check needs the tokenizer layout (starcoder or deepseek)")
        prefix, suffix = infill
        bos = tok.bos_token_id
        plain = SimpleNamespace(encode=lambda text: tok(text, add_special_tokens=False)["input_ids"], bos_id=bos,
                                add_bos=bos is not None and tok("x")["input_ids"][:1] == [bos])
        fim_ids = fim_prompt(plain, FimTokens.from_tokenizer(tok, layout), prefix, suffix,
                             max_context=model.config.max_position_embeddings - max_new_tokens)
        hf, ours = _greedy_both(model, cfg, params, fim_ids, tok.eos_token_id, tok.pad_token_id, max_new_tokens)
        middle = tok.decode(hf, skip_special_tokens=True)
        print(f"transformers infill ({'same tokens as' if hf == ours else 'DIFFERS from'} jaxcoder's), "
              f"middle between >>> and <<<:\n" + "-" * 60 + f"\n{prefix}>>>{middle}<<<{suffix}\n" + "-" * 60)
        result.update(infill_prefix=prefix, infill_suffix=suffix, infill_middle=middle,
                      infill_matches_jaxcoder=hf == ours)
    return result
