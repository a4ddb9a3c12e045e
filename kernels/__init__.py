"""Pallas kernels: causal flash attention (forward and backward) for GPU (Triton) and TPU (Mosaic),
with GQA, packed-document segment ids and sliding windows.

    from jaxcoder_kernels import flash_attention, BlockSizes

The model reaches them through `model.attention_impl=pallas` (or `auto` on GPU); see
`jaxcoder/model/attention_ops.py`. Files: `flash_attention.py` (entry point, padding, custom VJP),
`flash_fwd.py` / `flash_bwd.py` (the kernels), `flash_common.py` (mask, tile skipping, layouts,
compiler parameters), `block_sizes.py` (tile sizes and the hardware check).
"""

from jaxcoder_kernels.block_sizes import BlockShapeError, BlockSizes
from jaxcoder_kernels.flash_attention import flash_attention

__all__ = ["BlockShapeError", "BlockSizes", "flash_attention"]
