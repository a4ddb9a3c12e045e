"""Export refuses what Hugging Face cannot express, naming the fields; import refuses pickles."""

from __future__ import annotations

import pytest

from jaxcoder.export.architectures import ExportError, choose_architecture
from jaxcoder.export.hf_io import export_hf, import_hf
from jaxcoder.model import functional as F
from jaxcoder.model.presets import preset


@pytest.mark.parametrize("name,arch,change,message", [
    ("deepseek-coder-tiny", "llama", dict(sliding_window=64), "sliding_window=64"),
    ("deepseek-coder-tiny", "starcoder2", {}, "norm='rmsnorm' \\(needs 'layernorm'\\)"),
    ("santacoder-tiny", "gpt_bigcode", dict(n_kv_heads=2), "n_kv_heads=2 \\(only multi-query"),
    ("santacoder-tiny", "gpt_bigcode", dict(tie_embeddings=False), "tie_embeddings=False"),
    ("starcoder2-tiny", "starcoder2", dict(mlp_bias=False), "one use_bias flag covers both"),
    ("starcoder2-tiny", "gpt_bigcode", {}, "position='rope' \\(needs 'learned'\\)"),
])
def test_requested_architecture_refuses_with_reason(name, arch, change, message):
    with pytest.raises(ExportError, match=message):
        choose_architecture(preset(name, **change), arch)


def test_auto_picks_the_line_architecture():
    assert choose_architecture(preset("deepseek-coder-33b")).name == "LlamaForCausalLM"
    assert choose_architecture(preset("starcoder2-15b")).name == "Starcoder2ForCausalLM"
    assert choose_architecture(preset("starcoderbase-15.5b")).name == "GPTBigCodeForCausalLM"


def test_auto_explains_when_nothing_fits(tmp_path):
    cfg = preset("deepseek-coder-tiny", sliding_window=64, mlp="gelu")  # rmsnorm + gelu: no HF class
    with pytest.raises(ExportError, match="no Hugging Face architecture can express this model") as err:
        export_hf(cfg, F.init_params(cfg, 0), tmp_path)
    for arch in ("LlamaForCausalLM", "Starcoder2ForCausalLM", "GPTBigCodeForCausalLM"):
        assert arch in str(err.value)


def test_import_refuses_pickle_only_directories(tmp_path):
    (tmp_path / "config.json").write_text('{"architectures": ["LlamaForCausalLM"], "model_type": "llama", '
                                          '"vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1, '
                                          '"num_attention_heads": 2, "intermediate_size": 8, '
                                          '"max_position_embeddings": 16}')
    (tmp_path / "pytorch_model.bin").write_bytes(b"not read")
    with pytest.raises(ExportError, match="safetensors only"):
        import_hf(tmp_path)


def test_import_names_missing_tensors(tmp_path):
    cfg = preset("deepseek-coder-tiny")
    export_hf(cfg, F.init_params(cfg, 0), tmp_path)
    from safetensors.numpy import load_file, save_file
    sd = load_file(str(tmp_path / "model.safetensors"))
    del sd["model.layers.1.mlp.up_proj.weight"]
    save_file(sd, str(tmp_path / "model.safetensors"))
    with pytest.raises(ExportError, match="model.layers.1.mlp.up_proj.weight"):
        import_hf(tmp_path)
