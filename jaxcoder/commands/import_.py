"""jaxcoder import: read a Hugging Face directory (safetensors only) into a jaxcoder checkpoint,
with the model's tokenizer, which then travels with it (train, eval, generate, export use it)."""

from __future__ import annotations

from absl import flags

from jaxcoder.commands import common

HF_DIR = flags.DEFINE_string("hf_dir", None, "The Hugging Face model directory to read.")


def main(argv):
    del argv
    from jaxcoder.export.checkpoint_io import import_checkpoint

    src = common.require(HF_DIR, "the Hugging Face model directory")
    out = common.require(common.OUT, "the checkpoint directory to write")
    s = import_checkpoint(src, out)
    print(f"imported {src} ({s['parameters']:,} parameters) into {s['directory']} at step 0"
          + (f", with its {s['tokenizer']} tokenizer" if s["tokenizer"] else "; it has no tokenizer files"))
