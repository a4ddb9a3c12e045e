"""The README's command blocks marked `<!-- runs here -->` run, in order, in a scratch directory,
with the demo config at its smoke size (`configs/demo.py` -> `configs/demo.py:smoke=1`): the docs
cannot rot. Each command must exit 0; the results they promise are checked at the end."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent
MARKER = "<!-- runs here -->"
# Runbook commands for real slices, at smoke size: the tiny model line on a 4-chip slice of the
# same generation.
SMOKE = [(r"configs/(\w+)\.py:[\d.]+b --dry_run_topology=(\w+):\S+", r"configs/\1.py:tiny --dry_run_topology=\2:2x2x1"),
         (r"batch_size=\d+ --config\.train\.seq_len=\d+", "batch_size=4 --config.train.seq_len=256"),
         # The long-context runbook's stages at smoke size.
         (r"configs/(deepseek_coder|starcoder2)\.py:[\d.]+b(,stage=\w+)?(?= |$)", r"configs/\1.py:tiny\2,smoke=1")]


def readme_blocks() -> list[list[str]]:
    """Commands of each marked ```bash block (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text()
    blocks = []
    for part in text.split(MARKER)[1:]:
        body = re.match(r"\s*```bash\n(.*?)```", part, re.S)
        assert body, "a runs-here marker must be followed by a ```bash block"
        joined = body.group(1).replace("\\\n", " ")
        blocks.append([line for line in (ln.split("  #")[0].strip() for ln in joined.splitlines())
                       if line and not line.startswith("#")])
    return blocks


def test_readme_command_blocks_run(tmp_path):
    """The published model of the continued-pretraining runbook is a stand-in made here
    (tests/test_published.py), and REPOS two standard-library packages. The first block is the
    whole skeleton: prepare -> train -> export (checked by transformers) -> import -> generate."""
    import shutil
    import sysconfig

    from test_published import make_standin

    blocks = readme_blocks()
    assert len(blocks) >= 4
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    make_standin("deepseek", tmp_path / "hf" / "deepseek-coder-1.3b-base")
    stdlib = sysconfig.get_paths()["stdlib"]
    for package in ("json", "email"):
        shutil.copytree(f"{stdlib}/{package}", tmp_path / "repos" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "REPOS": str(tmp_path / "repos")}
    env.pop("XLA_FLAGS", None)  # one device, as a user's shell
    for block in blocks:
        for command in block:
            command = command.replace("configs/demo.py", "configs/demo.py:smoke=1")
            command = re.sub(r"(configs/continue\.py:\S+)", r"\1,smoke=1", command)
            for pattern, smoke in SMOKE:
                command = re.sub(pattern, smoke, command)
            proc = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True,
                                  text=True, timeout=600)
            assert proc.returncode == 0, f"README command failed: {command}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"  # noqa: E501
            if "--dry_run_topology" in command:
                assert "TPU v5 (TPU compiler: exact)" in proc.stdout, proc.stdout
            if command.startswith("jaxcoder export --checkpoint=runs/demo/") and "--dtype" not in command:
                fp32_check = json.loads((tmp_path / "runs" / "demo" / "hf.check.json").read_text())
    demo = tmp_path / "runs" / "demo"
    check = json.loads((demo / "hf.check.json").read_text())  # the bfloat16 export's, the last
    assert check["architecture"] == "LlamaForCausalLM" and check["completion_matches_jaxcoder"]
    assert fp32_check["completion_matches_jaxcoder"] and fp32_check["max_logit_diff"] < 1e-4
    # The imported HF export generates exactly what the checkpoint it came from generates.
    greedy = [subprocess.run(["jaxcoder", "generate", f"--checkpoint={ckpt}", "--prompt=import os",
                              "--max_new_tokens=8"], cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=600, check=True).stdout for ckpt in ("runs/demo/checkpoints", "runs/imported")]
    assert greedy[0].startswith("import os") and greedy[0] == greedy[1]
    ds13 = tmp_path / "runs" / "ds13"
    assert (ds13 / "continued" / "checkpoints" / "tokenizer" / "tokenizer.json").exists()
    assert (ds13 / "continued" / "eval" / "step_12" / "results.json").exists()
    assert "## Checkpoints compared" in (ds13 / "continued" / "report.md").read_text()
    original = tmp_path / "hf" / "deepseek-coder-1.3b-base" / "tokenizer.json"
    assert (ds13 / "hf" / "tokenizer.json").read_bytes() == original.read_bytes()
    # Stage 2 continued stage 1's checkpoint with the long-context RoPE.
    from jaxcoder.train.checkpoint import read_meta

    long = read_meta(tmp_path / "runs" / "deepseek-coder-tiny-16k" / "checkpoints")[1]
    assert read_meta(tmp_path / "runs" / "deepseek-coder-tiny" / "checkpoints")[1]["model"]["rope"]["theta"] == 1e4
    assert long["step"] == 6 and long["model"]["rope"]["theta"] == 1e5 and long["model"]["rope"]["factor"] == 4.0
    report = (demo / "report.md").read_text()
    assert (demo / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for section in ("## Data", "## Training", "## Evaluation", "## Hugging Face export"):
        assert section in report
    assert "| untrained (same architecture, fresh weights) | trained (step 12) |" in report
    assert "MultiPL-E, per language" in report and "| js | 2 | " in report  # a non-Python task ran
