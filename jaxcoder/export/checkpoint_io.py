"""A jaxcoder checkpoint to and from a Hugging Face model directory, tokenizer included.

`import_checkpoint` reads a published model's weights (safetensors) and its tokenizer files into a
checkpoint at step 0 (the tokenizer in `<out>/tokenizer/`); `export_checkpoint` writes a
checkpoint's weights, configs and tokenizer back (a byte-level BPE tokenizer's files byte for
byte; a sentencepiece one converted for transformers).
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxcoder.export.hf_io import export_hf, import_hf
from jaxcoder.train.checkpoint import Checkpointer, checkpoint_tokenizer, load_params, store_tokenizer


def hf_tokenizer(src: str | os.PathLike):
    """The tokenizer a Hugging Face model directory ships: its tokenizer.json when that is a
    byte-level BPE (published code models), else its sentencepiece tokenizer.model, else None."""
    from jaxcoder.data.tokenizer import load_tokenizer

    path = Path(src)
    if (path / "tokenizer.json").exists():
        try:
            return load_tokenizer(path)
        except ValueError:
            if not (path / "tokenizer.model").exists():
                raise
    return load_tokenizer(path / "tokenizer.model") if (path / "tokenizer.model").exists() else None


def import_checkpoint(src: str | os.PathLike, out: str | os.PathLike) -> dict:
    """A Hugging Face directory -> a jaxcoder checkpoint at step 0 with its tokenizer. Returns a
    summary (parameters, tokenizer kind)."""
    cfg, params, special = import_hf(src)
    tok = hf_tokenizer(src)
    meta = {"model": cfg.to_dict(), "step": 0, "imported_from": str(Path(src).absolute()), "special_tokens": special}
    if tok is not None:
        if tok.vocab_size > cfg.vocab_size:
            raise ValueError(f"{src}: the tokenizer has {tok.vocab_size} tokens but the model's vocab_size is "
                             f"{cfg.vocab_size}")
        meta["tokenizer"] = {"kind": tok.kind, "sha256": tok.sha256()}
        meta["tokenizer_sha256"] = tok.sha256()
    ckpt = Checkpointer(out, async_save=False)
    ckpt.save(0, params, meta=meta)
    ckpt.close()
    if tok is not None:
        store_tokenizer(ckpt.directory, tok)
    return {"directory": ckpt.directory, "parameters": cfg.param_count(), "tokenizer": tok.kind if tok else None}


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike, *, step: int | None = None,
                      architecture: str = "auto", dtype: str = "float32", max_shard_size: str = "5GB",
                      tokenizer_path: str | None = None) -> tuple[dict, dict]:
    """Writes the checkpoint as a Hugging Face directory; the tokenizer is the checkpoint's own
    (`tokenizer_path` only for checkpoints that carry none). Returns (summary, meta)."""
    cfg, params, meta = load_params(checkpoint, step)
    tok = checkpoint_tokenizer(checkpoint, meta)
    if tok is None and tokenizer_path:
        from jaxcoder.data.tokenizer import load_tokenizer

        tok = load_tokenizer(tokenizer_path)
    summary = export_hf(cfg, params, out, architecture=architecture, dtype=dtype, max_shard_size=max_shard_size,
                        special_tokens=tok.special_tokens() if tok else None)
    if tok is not None:  # a published model's tokenizer files go back byte for byte
        summary["tokenizer_files"] = tok.save_hf(out)
    return summary, {"meta": meta, "cfg": cfg, "params": params, "tokenizer": tok}
