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
