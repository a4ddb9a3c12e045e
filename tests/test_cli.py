"""The `jaxcoder` command line: help on every verb, clear errors, and the whole skeleton pipeline
(tokenizer -> train -> export with transformers check -> import -> generate) on a tiny run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jaxcoder.cli import VERBS

ROOT = Path(__file__).parent.parent


def jaxcoder(*args, check=True, cwd=ROOT):
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("XLA_FLAGS", None)
    proc = subprocess.run([sys.executable, "-m", "jaxcoder", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"jaxcoder {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def test_usage_lists_every_verb():
    out = jaxcoder("--help").stdout
    assert all(v in out for v in VERBS)


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_verb_has_help(verb):
    out = jaxcoder(verb, "--help").stdout
    assert "--config" in out and len(out.splitlines()) > 5


def test_unknown_verb_exits_2():
    proc = jaxcoder("fly", check=False)
    assert proc.returncode == 2 and "unknown verb 'fly'" in proc.stderr


def test_params_prints_a_preset_count():
    out = jaxcoder("params", "--config=configs/deepseek_coder.py:6.7b").stdout
    # 32 * (4*4096^2 + 3*4096*11008 + 2*4096) + 2*32256*4096 + 4096, by hand
    assert "6,740,512,768" in out and "6.74B" in out
    table = jaxcoder("params", "--all").stdout
    assert "starcoder2-15b" in table and "deepseek-coder-33b" in table


def test_bad_override_names_the_field():
    proc = jaxcoder("params", "--config=configs/starcoder2.py:3b", "--config.model.n_kv_heads=5", check=False)
    assert proc.returncode != 0 and "model.n_heads (24) must be a multiple of model.n_kv_heads (5)" in proc.stderr
    proc = jaxcoder("params", "--config=configs/starcoder2.py:3b", "--config.model.n_layerz=5", check=False)
    assert proc.returncode != 0 and "n_layerz" in proc.stderr


@pytest.mark.parametrize("args,message", [
    (["--config.train.bogus=1"], "unknown config field train.bogus (in --config.train.bogus)"),
    (["--config.trian.lr=1"], "unknown config field trian (in --config.trian.lr); did you mean train?"),
    (["--config.train.lr=-0.1"], "train.lr must be > 0; got -0.1"),
    (["--config.train.seq_len=0"], "train.seq_len must be >= 1; got 0"),
    (["--config.train.lr=fast"], "--config.train.lr=fast: could not convert string to float: 'fast'"),
    (["--config=configs/demo.py:bogus=1"], "unknown config argument 'bogus'; known: line, steps, smoke"),
    (["--config=configs/nothere.py"], "--config: configs/nothere.py is not a file"),
])
def test_bad_config_is_one_line_naming_the_field(args, message, tmp_path):
    """No traceback, nothing run: one line on stderr, status 2; --traceback shows the traceback."""
    config = [a for a in args if a.startswith("--config=")] or ["--config=configs/demo.py"]
    rest = [a for a in args if not a.startswith("--config=")]
    proc = jaxcoder("train", *config, *rest, f"--config.workdir={tmp_path}/w", check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("jaxcoder train: error: ") and message in proc.stderr, proc.stderr
    assert not (tmp_path / "w").exists()
    verbose = jaxcoder("train", *config, *rest, f"--config.workdir={tmp_path}/w", "--traceback", check=False)
    assert verbose.returncode != 0 and "Traceback (most recent call last)" in verbose.stderr


def test_every_nonsense_value_is_refused_naming_its_field():
    from jaxcoder.config import base_config, resolve
    from jaxcoder.fields import ConfigError

    cases = {"train.lr": 0.0, "train.steps": -3, "train.batch_size": 0, "train.warmup_steps": -1,
             "train.min_lr_ratio": 1.5, "train.b2": 1.0, "train.z_loss": -1.0, "train.grad_accum": 0,
             "train.keep_checkpoints": 0, "train.clip_norm": -1.0, "train.schedule": "step", "seed": -1,
             "data.heldout_fraction": 1.0, "data.fim.spm_rate": -0.1, "data.fim.line_rate": 2.0,
             "data.max_sample_tokens": -1, "data.shuffle_rows": -5, "data.filters.min_alphanum_fraction": 1.5,
             "data.dedup.threshold": 0.0, "data.decontamination.rule": "fuzzy", "tokenizer.vocab_size": 0,
             "tokenizer.layout": "gpt2", "eval.batch_size": 0, "eval.humaneval.temperature": -1.0,
             "eval.humaneval.ks": (0,), "eval.fim.mode": "sideways", "eval.sandbox_workers": 0,
             "pipeline.repeats": 0, "mesh.num_devices": -1, "export.dtype": "int8", "export.max_shard_size": "big",
             "model.init_std": 0.0, "model.rope.theta": -1.0, "distributed.process_id": -1}
    for path, value in cases.items():
        cfg = base_config()
        *parents, name = path.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        with node.ignore_type():
            node[name] = value
        with pytest.raises(ConfigError, match=f"^{path.replace('.', '[.]')}"):
            resolve(cfg)
    resolve(base_config())  # the defaults themselves are valid


def test_missing_required_flag_is_explained(tmp_path):
    proc = jaxcoder("export", "--out", str(tmp_path), check=False)
    assert proc.returncode != 0 and "--checkpoint is required" in proc.stderr


@pytest.mark.slow
def test_prompt_flags_decode_backslash_escapes_only():
    from jaxcoder.commands.common import unescape

    assert unescape(r"def f(x):\n\treturn x\r\n") == "def f(x):\n\treturn x\r\n"
    assert unescape(r"print('a\\n')") == "print('a\\n')"  # an escaped backslash stays one backslash
    assert unescape("naïve 🙂 \\x41 \\u00e9") == "naïve 🙂 \\x41 \\u00e9"  # non-ASCII and other escapes kept


def test_every_python_folder_is_a_listed_package():
    """A folder missing from pyproject's package list (or without __init__.py) works from a source
    checkout but is left out of the wheel users install."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(project["packages"])
    mapped = {v: k for k, v in project.get("package-dir", {}).items()}
    for init in [*ROOT.glob("jaxcoder/**/*.py"), *ROOT.glob("kernels/*.py")]:
        folder = init.parent.relative_to(ROOT).as_posix()
        name = mapped.get(folder, folder.replace("/", "."))
        assert name in listed, f"{folder} is not in pyproject's [tool.setuptools] packages"
        assert (init.parent / "__init__.py").exists(), f"{folder} has no __init__.py"
    # Data files (the demo's problems) travel with their package.
    import fnmatch

    data = project.get("package-data", {})
    for path in ROOT.glob("jaxcoder/**/*"):
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
            package = next(d for d in path.parents if (d / "__init__.py").exists())
            name, rel = package.relative_to(ROOT).as_posix().replace("/", "."), path.relative_to(package).as_posix()
            assert any(fnmatch.fnmatch(rel, pattern) for pattern in data.get(name, ())), \
                f"{path.relative_to(ROOT)} is not in pyproject's [tool.setuptools.package-data]"
