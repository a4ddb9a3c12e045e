"""The Pallas flash-attention kernel in interpret mode against the XLA reference attention:
output and dq/dk/dv on ragged lengths, GQA ratios 1/4/8, segment layouts, windows smaller and
larger than a block, both memory layouts (GPU [B,T,H,D], TPU [B,H,T,D]), fp32 and bf16; fully
masked tiles really skipped; block shapes refused per hardware; both lowerings succeed."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export
from jaxcoder_kernels.block_sizes import BlockShapeError, BlockSizes, check_blocks
from jaxcoder_kernels.flash_attention import flash_attention

from jaxcoder.model.attention_ops import xla_attention

SMALL = BlockSizes(block_q=32, block_kv=32, block_q_dkv=16, block_kv_dkv=32, block_q_dq=32, block_kv_dq=16)


def _segments(layout: str, rng, b: int, t: int) -> np.ndarray:
    if layout == "one":
        return np.ones((b, t), np.int32)
    if layout == "two":  # a boundary inside a block
        return np.where(np.arange(t) < t // 2 + 5, 1, 2)[None].repeat(b, 0).astype(np.int32)
    if layout == "many":  # short documents, several per block, different per row
        seg = np.zeros((b, t), np.int32)
        for row in range(b):
            cuts = np.sort(rng.choice(np.arange(1, t), size=t // 12, replace=False))
            seg[row] = np.searchsorted(cuts, np.arange(t), side="right") + 1
        return seg
    # "padded": documents then padding id 0 at the end of the row, as the packer leaves it
    seg = np.where(np.arange(t) < t // 3, 1, 2)
    seg = np.where(np.arange(t) >= t - 17, 0, seg)
    return seg[None].repeat(b, 0).astype(np.int32)


def _inputs(rng, b, t, s, h, kv, d, dtype):
    q, k, v = (jnp.asarray(rng.standard_normal(shape), dtype)
               for shape in ((b, t, h, d), (b, s, kv, d), (b, s, kv, d)))
    return q, k, v


def _rel(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.abs(got - want).max() / np.abs(want).max())


def _check(q, k, v, q_seg, kv_seg, window, blocks, platform, tol):
    kw = dict(q_segment_ids=q_seg, kv_segment_ids=kv_seg, sliding_window=window)

    def ours(q, k, v):
        return flash_attention(q, k, v, block_sizes=blocks, platform=platform, interpret=True, **kw)

    def ref(q, k, v):  # float32 reference on the same (possibly bf16-rounded) inputs
        f32 = [x.astype(jnp.float32) for x in (q, k, v)]
        return xla_attention(*f32, **kw)

    cot = jnp.asarray(np.random.default_rng(1).standard_normal(q.shape), jnp.float32)
    got, got_vjp = jax.vjp(ours, q, k, v)
    want, want_vjp = jax.vjp(ref, q, k, v)
    assert got.dtype == q.dtype and got.shape == q.shape
    assert _rel(got, want) < tol, ("output", _rel(got, want))
    for name, g, w in zip("qkv", got_vjp(cot.astype(q.dtype)), want_vjp(cot), strict=True):
        assert g.dtype == q.dtype
        assert _rel(g, w) < tol, (f"d{name}", _rel(g, w))


@pytest.mark.parametrize("t,heads,kv,window,layout", [
    (128, 4, 4, None, "one"),      # whole blocks, MHA
    (200, 8, 2, None, "two"),      # ragged length, GQA 4
    (77, 8, 1, 20, "many"),        # ragged, MQA (GQA 8), window smaller than a block
    (160, 4, 1, 100, "padded"),    # window larger than a block, trailing padding
    (96, 8, 8, 40, "many"),
])
@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_fp32_matches_reference(t, heads, kv, window, layout, platform):
    rng = np.random.default_rng(t + heads + kv)
    q, k, v = _inputs(rng, 2, t, t, heads, kv, 32, jnp.float32)
    seg = jnp.asarray(_segments(layout, rng, 2, t))
    _check(q, k, v, seg, seg, window, SMALL, platform, tol=1e-5)


@pytest.mark.parametrize("window", [None, 48])
def test_bf16_matches_reference(window):
    rng = np.random.default_rng(3)
    q, k, v = _inputs(rng, 2, 150, 150, 8, 2, 64, jnp.bfloat16)
    seg = jnp.asarray(_segments("many", rng, 2, 150))
    _check(q, k, v, seg, seg, window, SMALL, "gpu", tol=1e-2)


def test_fewer_queries_than_keys_and_odd_head_dim():
    """Queries are the last T of S keys (chunked prefill); head_dim 24 is padded to 32 for Triton."""
    rng = np.random.default_rng(4)
    q, k, v = _inputs(rng, 1, 50, 130, 4, 2, 24, jnp.float32)
    kv_seg = jnp.asarray(_segments("two", rng, 1, 130))
    _check(q, k, v, kv_seg[:, -50:], kv_seg, 70, SMALL, "gpu", tol=1e-5)


def test_default_blocks_and_blocks_of_any_size_in_interpret_mode():
    rng = np.random.default_rng(5)
    q, k, v = _inputs(rng, 1, 300, 300, 4, 2, 16, jnp.float32)
    seg = jnp.asarray(_segments("many", rng, 1, 300))
    _check(q, k, v, seg, seg, None, None, "gpu", tol=1e-5)
    odd = BlockSizes(block_q=24, block_kv=40, block_q_dkv=8, block_kv_dkv=40, block_q_dq=24, block_kv_dq=8)
    _check(q, k, v, seg, seg, 33, odd, "gpu", tol=1e-5)


# A tile the mask fully hides must not be computed at all: NaN planted in such a tile's V would
# otherwise leak into the output through 0 * NaN in the P @ V product.
@pytest.mark.parametrize("case", ["causal", "window", "segments"])
def test_fully_masked_tiles_are_skipped(case):
    rng = np.random.default_rng(6)
    t = 128
    q, k, v = _inputs(rng, 1, t, t, 2, 2, 16, jnp.float32)
    seg = jnp.ones((1, t), jnp.int32)
    window = None
    if case == "causal":       # keys of the last block; queries of the first block never see them
        poisoned, clean_rows = slice(96, 128), slice(0, 96)
    elif case == "window":     # keys of the first block; queries from 64 on are out of a 16-window
        poisoned, clean_rows, window = slice(0, 32), slice(64, 128), 16
    else:                      # document 1 fills blocks 0-1; document 2 (blocks 2-3) never sees it
        seg = jnp.asarray(np.where(np.arange(t) < 64, 1, 2)[None], jnp.int32)
        poisoned, clean_rows = slice(0, 64), slice(64, 128)
    v = v.at[:, poisoned].set(jnp.nan)
    out = flash_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, sliding_window=window,
                          block_sizes=SMALL, interpret=True)
    assert np.isfinite(np.asarray(out[:, clean_rows])).all()
    assert np.isnan(np.asarray(out)).any()  # the poison is reachable where the mask allows it
    dq = jax.grad(lambda q: flash_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg,
                                            sliding_window=window, block_sizes=SMALL,
                                            interpret=True)[:, clean_rows].sum())(q)
    assert np.isfinite(np.asarray(dq[:, clean_rows])).all()


def test_block_shapes_the_hardware_cannot_run_are_refused():
    check_blocks(BlockSizes(), "gpu", head_dim=128, itemsize=2, kv_len=8192)
    with pytest.raises(BlockShapeError, match="BlockSizes.block_kv=48: Triton needs a power of two"):
        check_blocks(BlockSizes(block_kv=48), "gpu", head_dim=128, itemsize=2, kv_len=8192)
    with pytest.raises(BlockShapeError, match="shared memory"):
        check_blocks(BlockSizes(block_q=256, block_kv=256), "gpu", head_dim=256, itemsize=4, kv_len=8192)
    with pytest.raises(BlockShapeError, match="head_dim=8"):
        check_blocks(BlockSizes(), "gpu", head_dim=8, itemsize=2, kv_len=8192)
    with pytest.raises(BlockShapeError, match="BlockSizes.block_kv=64: TPU KV blocks must be multiples of 128"):
        check_blocks(BlockSizes(block_q=128, block_kv=64, block_q_dkv=128, block_kv_dkv=128,
                                block_q_dq=128, block_kv_dq=128), "tpu", head_dim=128, itemsize=2, kv_len=4096)
    with pytest.raises(BlockShapeError, match="BlockSizes.block_q_dq=12: TPU query blocks must be multiples of 8"):
        check_blocks(BlockSizes(128, 128, 128, 128, 12, 128), "tpu", head_dim=128, itemsize=2, kv_len=4096)
    # VMEM by generation (tests/test_tpu_compile.py checks these against the TPU compiler).
    check_blocks(BlockSizes(*[128] * 6), "tpu", head_dim=128, itemsize=2, kv_len=8192, q_len=8192,
                 group=4, device_kind="TPU v6 lite")
    with pytest.raises(BlockShapeError, match="dK/dV kernel .* more than the 64 MiB of TPU v5;"):
        check_blocks(BlockSizes(*[128] * 6), "tpu", head_dim=128, itemsize=2, kv_len=8192, q_len=8192,
                     group=4, device_kind="TPU v5")
    with pytest.raises(BlockShapeError, match="dQ kernel keeps whole rows of 8192 tokens .* 16 MiB of this TPU"):
        check_blocks(BlockSizes(*[128] * 6), "tpu", head_dim=256, itemsize=4, kv_len=8192, q_len=128)
    # Compiling for a GPU applies the check; interpret mode accepts any shape (tested above).
    x = jnp.zeros((1, 64, 2, 64), jnp.bfloat16)
    with pytest.raises(BlockShapeError, match="block_q=24"):
        flash_attention(x, x, x, block_sizes=BlockSizes(block_q=24), platform="gpu", interpret=False)


def test_bad_inputs_are_refused():
    x = jnp.zeros((1, 8, 4, 16))
    with pytest.raises(ValueError, match="not a multiple of key/value heads"):
        flash_attention(x, jnp.zeros((1, 8, 3, 16)), jnp.zeros((1, 8, 3, 16)))
    with pytest.raises(ValueError, match="share a dtype"):
        flash_attention(x, x.astype(jnp.bfloat16), x)
    with pytest.raises(ValueError, match="sliding_window=0"):
        flash_attention(x, x, x, sliding_window=0)


@pytest.mark.parametrize("platform,target", [("gpu", "cuda"), ("tpu", "tpu")])
def test_forward_and_backward_lower_for_the_hardware(platform, target):
    """Pallas -> Triton (GPU) and Pallas -> Mosaic (TPU) lowering of all three kernels, done on
    CPU by exporting for the other platform: shapes and ops the backend rejects fail here."""
    q = jnp.zeros((1, 1024, 8, 128), jnp.bfloat16)
    k = jnp.zeros((1, 1024, 2, 128), jnp.bfloat16)
    seg = jnp.ones((1, 1024), jnp.int32)

    def loss(q, k, v):
        out = flash_attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, sliding_window=300,
                              platform=platform, interpret=False)
        return out.astype(jnp.float32).sum()

    # Triton kernels lower to an XLA custom call that export cannot promise to keep stable.
    unchecked = [export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")]
    exported = export.export(jax.jit(jax.grad(loss, argnums=(0, 1, 2))), platforms=[target],
                             disabled_checks=unchecked)(q, k, k)
    text = exported.mlir_module()
    marker = "__gpu$xla.gpu.triton" if target == "cuda" else "tpu_custom_call"
    assert text.count(f"@{marker}") == 3  # forward, dK/dV, dQ
