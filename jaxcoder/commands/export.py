"""jaxcoder export: write a checkpoint as a Hugging Face model directory.

Writes safetensors (sharded past export.max_shard_size, with an index), config.json,
generation_config.json and the tokenizer. --verify_prompt loads the result with transformers,
reports the largest logit difference from jaxcoder, and prints transformers' greedy completion;
--verify_infill_prefix/--verify_infill_suffix add a fill-in-the-middle. Both are compared token for
token with jaxcoder's greedy output, and the check is saved as `<out>.check.json`.
"""

from __future__ import annotations

import json
from pathlib import Path

from absl import flags

from jaxcoder.commands import common
from jaxcoder.export.checkpoint_io import export_checkpoint
from jaxcoder.export.hf_io import ExportConfig
from jaxcoder.train.checkpoint import recorded_layout

ARCH = flags.DEFINE_string("architecture", None, "llama | starcoder2 | gpt_bigcode | auto (default: "
                           "export.architecture of --config, else auto).")
DTYPE = flags.DEFINE_string("dtype", None, "float32 | bfloat16 | float16 (default: export.dtype or float32).")
SHARD = flags.DEFINE_string("max_shard_size", None, "e.g. 5GB (default: export.max_shard_size or 5GB).")
VERIFY = flags.DEFINE_string("verify_prompt", None, "Check the export with transformers on this prompt "
                             "(backslash escapes \\n, \\t, \\r, \\\\ are decoded).")
NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 48, "Tokens transformers generates with --verify_prompt.")
INFILL_PREFIX = flags.DEFINE_string("verify_infill_prefix", None, "Code before the hole for a FIM check "
                                    "(escapes decoded as in --verify_prompt).")
INFILL_SUFFIX = flags.DEFINE_string("verify_infill_suffix", "", "Code after the hole for a FIM check.")


def main(argv):
    del argv
    ckpt = common.require(common.CHECKPOINT, "the checkpoint to export")
    out = Path(common.require(common.OUT, "the Hugging Face directory to write"))
    run = common.require_config() if common.CONFIG.value is not None else None
    exp = run.export if run is not None else ExportConfig()
    summary, loaded = export_checkpoint(
        ckpt, out, step=common.STEP.value, architecture=ARCH.value or exp.architecture,
        dtype=DTYPE.value or exp.dtype, max_shard_size=SHARD.value or exp.max_shard_size,
        tokenizer_path=run.tokenizer.path if run is not None else None)
    meta = loaded["meta"]
    if loaded["tokenizer"] is None:
        print("warning: the checkpoint carries no tokenizer; the export has no tokenizer files")
    print(f"exported step {meta.get('step')} to {out}: " + json.dumps(summary))
    if VERIFY.value:
        from jaxcoder.export.verify import verify_export

        infill = None
        if INFILL_PREFIX.value is not None:
            infill = (common.unescape(INFILL_PREFIX.value), common.unescape(INFILL_SUFFIX.value))
        layout = recorded_layout(meta) or (run.tokenizer.layout if run is not None else None)
        check = verify_export(out, loaded["cfg"], loaded["params"], common.unescape(VERIFY.value), NEW_TOKENS.value,
                              infill=infill, layout=layout)
        check_path = out.with_name(out.name + ".check.json")
        check_path.write_text(json.dumps({"step": meta.get("step"), **check}, indent=2))
        print(f"export check written to {check_path}")
