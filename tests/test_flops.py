"""Model FLOPs per token (the MFU numerator) against XLA's own count of the compiled forward and
backward pass, and the attention term against the pairs the model's mask really leaves visible."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcoder.model import functional as F
from jaxcoder.model.attention_ops import attention_mask
from jaxcoder.model.loss import loss_sums
from jaxcoder.model.presets import preset

B, T = 1, 512


def _cfg(window):
    # Layers unrolled: XLA's cost analysis counts a while loop's body once, not per layer.
    return preset("starcoder2-tiny", dtype="float32", param_dtype="float32", attention_impl="xla", remat="none",
                  d_model=256, n_heads=4, n_kv_heads=2, head_dim=64, d_ff=1024, n_layers=2, vocab_size=1024,
                  max_seq_len=T, sliding_window=window, scan_layers=False)


def _xla_flops(cfg) -> float:
    """XLA's FLOP count of one forward + backward pass over a [B, T] batch."""
    ints = jax.ShapeDtypeStruct((B, T), jnp.int32)
    batch = {"inputs": ints, "targets": ints, "segment_ids": ints, "positions": ints,
             "loss_mask": jax.ShapeDtypeStruct((B, T), jnp.float32)}
    grad = jax.grad(lambda p, b: loss_sums(cfg, p, b)["nll"])
    analysis = jax.jit(grad).lower(F.abstract_params(cfg), batch).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list | tuple) else analysis
    return float(analysis["flops"])


@pytest.mark.parametrize("window", [None, 100])
def test_flops_per_token_against_xla_cost_analysis(window):
    cfg = _cfg(window)
    per_pair = 12 * cfg.n_layers * cfg.n_heads * cfg.head_dim
    # The attention term counts exactly the (query, key) pairs the model's own mask lets through.
    seg = jnp.ones((1, T), jnp.int32)
    visible = int(np.asarray(attention_mask(seg, seg, cfg.sliding_window)).sum())
    matmul = cfg.flops_per_token(T) - per_pair * cfg.mean_visible_keys(T)
    assert cfg.flops_per_token(T) * T == pytest.approx(matmul * T + per_pair * visible, rel=1e-12)
    if window:
        assert visible == sum(min(i + 1, window) for i in range(T))
    # XLA's reference attention also computes the masked scores, so XLA counts all T keys per
    # query. With that, XLA's count is ours plus the elementwise work (norms, softmax, RoPE, loss:
    # 1.7% here); attention is 20% of the total, so a factor 2 error in it shows as 10%.
    xla = _xla_flops(cfg)
    dense = (matmul + per_pair * T) * B * T
    assert 1.0 <= xla / dense < 1.025, (xla, dense)
