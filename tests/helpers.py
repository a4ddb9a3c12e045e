"""Test helpers shared across modules."""

from __future__ import annotations

import jax
import numpy as np


def random_params(params, seed: int = 0, scale: float = 0.05):
    """Perturbs every parameter (biases and norm scales too) so no mapping hides behind zeros/ones."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: np.asarray(x) + scale * rng.standard_normal(x.shape).astype(np.float32), params)
