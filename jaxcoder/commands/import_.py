"""jaxcoder import: read a Hugging Face directory (safetensors only) into a jaxcoder checkpoint."""

from __future__ import annotations

from pathlib import Path

from absl import flags

from jaxcoder.commands import common
from jaxcoder.export.hf_io import import_hf
from jaxcoder.train.checkpoint import Checkpointer

HF_DIR = flags.DEFINE_string("hf_dir", None, "The Hugging Face model directory to read.")


def main(argv):
    del argv
    src = common.require(HF_DIR, "the Hugging Face model directory")
    out = Path(common.require(common.OUT, "the checkpoint directory to write"))
    cfg, params, special = import_hf(src)
    tok = Path(src) / "tokenizer.model"
    meta = {"model": cfg.to_dict(), "step": 0, "imported_from": str(Path(src).absolute()),
            "special_tokens": special, **({"tokenizer_path": str(tok.absolute())} if tok.exists() else {})}
    ckpt = Checkpointer(out, async_save=False)
    ckpt.save(0, params, meta=meta)
    ckpt.close()
    print(f"imported {src} ({cfg.param_count():,} parameters) into {ckpt.directory} at step 0")
