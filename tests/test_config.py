"""Configs: every configs/*.py preset loads, overrides are typed, bad values name the field."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from jaxcoder import config as run_config
from jaxcoder.model.config import ConfigError, ModelConfig
from jaxcoder.model.presets import preset

CONFIGS = Path(__file__).parent.parent / "configs"


def load(name):
    spec = importlib.util.spec_from_file_location(name, CONFIGS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("file,sizes", [
    ("deepseek_coder", ["1.3b", "6.7b", "33b", "tiny"]),
    ("starcoder2", ["3b", "7b", "15b", "tiny"]),
    ("starcoderbase", ["1b", "3b", "7b", "15.5b", "tiny"]),
    ("santacoder", ["1.1b", "tiny"]),
    ("demo", ["deepseek", "starcoder2", "santacoder"]),
])
def test_config_files_build_valid_models(file, sizes):
    module = load(file)
    for size in sizes:
        run = run_config.resolve(module.get_config(size))
        assert run.train.seq_len <= run.model.max_seq_len
        run.optimizer()


@pytest.mark.parametrize("line,name", [("starcoder2", "starcoder2-15b"), ("deepseek_coder", "deepseek-coder-33b")])
def test_config_file_presets_match_model_presets(line, name):
    """The long-context stage is the released model; the base stage differs in RoPE and context only."""
    import dataclasses

    size = name.rsplit("-", 1)[1]
    long = run_config.resolve(load(line).get_config(f"{size},stage=long")).model
    base = run_config.resolve(load(line).get_config(size)).model
    assert long == preset(name)
    # (max_seq_len stays the released one: a base-stage config still plans 16K runs with --dry_run_*.)
    assert dataclasses.replace(base, rope=long.rope) == long


def test_unknown_size_is_refused_with_choices():
    with pytest.raises(ValueError, match="starcoder2 sizes: 3b, 7b, 15b, tiny; got '5b'"):
        load("starcoder2").get_config("5b")


@pytest.mark.parametrize("change,message", [
    (dict(n_heads=6, n_kv_heads=4), r"model.n_heads \(6\) must be a multiple of model.n_kv_heads \(4\)"),
    (dict(norm="batchnorm"), "model.norm must be one of rmsnorm, layernorm; got 'batchnorm'"),
    (dict(d_model=0), "model.d_model must be a positive integer, got 0"),
    (dict(sliding_window=-3), "model.sliding_window must be positive"),
    (dict(attention_impl="flash"), "model.attention_impl must be one of"),
    (dict(remat="some"), "model.remat must be one of"),
])
def test_bad_model_values_name_the_field(change, message):
    with pytest.raises(ConfigError, match=message):
        preset("deepseek-coder-tiny", **change)


def test_unknown_fields_are_named():
    values = preset("deepseek-coder-tiny").to_dict()
    with pytest.raises(ConfigError, match="model.n_expert"):
        ModelConfig.from_dict({**values, "n_expert": 8})
    with pytest.raises(ConfigError, match="model.rope.thetta"):
        ModelConfig.from_dict({**values, "rope": {"thetta": 1.0}})


def test_rope_scaling_needs_its_fields():
    from jaxcoder.model.config import RopeConfig
    with pytest.raises(ConfigError, match="model.rope.original_max_position is required"):
        preset("deepseek-coder-tiny", rope=RopeConfig(scaling="yarn", factor=4.0))


def test_model_config_round_trips_through_dict():
    cfg = preset("starcoder2-7b")
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg


def test_parse_arg():
    a = run_config.parse_arg("7b,steps=10,fast=true", size="1b", steps=5, fast=False)
    assert (a.size, a.steps, a.fast) == ("7b", 10, True)
    with pytest.raises(ValueError, match="unknown config argument 'bogus'"):
        run_config.parse_arg("bogus=1", size="1b")


def test_flops_per_token_counts_attention_and_head():
    cfg = preset("deepseek-coder-1.3b")
    n_matmul = cfg.param_count() - cfg.vocab_size * cfg.d_model  # input embedding is a lookup
    attn = 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim * (4096 + 1) / 2  # query i sees i + 1 keys
    assert cfg.flops_per_token(4096) == pytest.approx(6 * n_matmul + attn)
    # StarCoder2 at 16K with its 4K window: past the window each query sees 4096 keys, not 2048.
    s2 = preset("starcoder2-7b")
    w, t = 4096, 16384
    mean_keys = (w * (w + 1) / 2 + (t - w) * w) / t
    assert s2.mean_visible_keys(t) == pytest.approx(mean_keys) and mean_keys > 0.87 * w
