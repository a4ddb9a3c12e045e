"""Shared test set-up: fp32 matmuls at full precision, tiny configs, and HF availability."""

from __future__ import annotations

import jax
import pytest

jax.config.update("jax_default_matmul_precision", "highest")


@pytest.fixture
def hf():
    """Skips a test when the hf extra (torch + transformers) is not installed."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    return transformers


@pytest.fixture(scope="session")
def prepared_data(tmp_path_factory):
    """A small prepared dataset (two stdlib packages as repositories) shared by data/train tests."""
    import sysconfig

    from helpers import Prepared, prepare_configs

    from jaxcoder.data.prepare import prepare

    stdlib = sysconfig.get_paths()["stdlib"]
    out = tmp_path_factory.mktemp("prepared") / "data"
    run = Prepared(*prepare_configs(out, repo_dirs=(f"{stdlib}/json", f"{stdlib}/email", f"{stdlib}/http"),
                                    vocab_size=1024, heldout_fraction=0.2, tokens_per_shard=50_000,
                                    max_sample_tokens=4096))
    return run, prepare(run.data, run.tokenizer, progress=False)
