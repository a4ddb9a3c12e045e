"""Block sizes for the flash-attention kernels, their per-backend defaults, and the check that
refuses shapes the target hardware cannot run.

Interpret mode runs any block shape, so without this check a kernel tested on CPU could fail
only when it first meets a GPU or TPU. The rules here are the hardware's, stated once:

* GPU (Triton): every tensor a kernel touches has power-of-two dimensions, and `tl.dot` needs
  at least 16 in each; the forward's Q tile plus the pipelined K/V tiles must fit in shared
  memory (227 KiB per block on H100, 163 KiB on A100).
* TPU (Mosaic): score tiles put the KV block on the 128-wide lane axis and the Q block on the
  8-row sublane axis, so blocks are multiples of 128; the whole K/V row of one head stays in
  VMEM (double-buffered), which bounds the sequence length per call.
"""

from __future__ import annotations

import dataclasses
import math

PLATFORMS = ("gpu", "tpu")

# Shared memory per thread block (bytes) by device kind; the fallback is Hopper's.
_GPU_SMEM = {"a100": 163 * 1024, "h100": 227 * 1024, "h200": 227 * 1024}
_GPU_SMEM_DEFAULT = 227 * 1024
_TPU_VMEM_BUDGET = 64 * 1024 * 1024


class BlockShapeError(ValueError):
    """A block configuration the target hardware cannot run."""


@dataclasses.dataclass(frozen=True)
class BlockSizes:
    """Tile sizes along the sequence. `*_dkv` tile the dK/dV kernel (one KV block, looping over
    query blocks), `*_dq` the dQ kernel (one query block, looping over KV blocks)."""

    block_q: int = 128
    block_kv: int = 64
    block_q_dkv: int = 32
    block_kv_dkv: int = 128
    block_q_dq: int = 128
    block_kv_dq: int = 32

    @property
    def q_multiple(self) -> int:
        """Query lengths are padded to a multiple of this (all query blocks divide it)."""
        return math.lcm(self.block_q, self.block_q_dkv, self.block_q_dq)

    @property
    def kv_multiple(self) -> int:
        return math.lcm(self.block_kv, self.block_kv_dkv, self.block_kv_dq)


# GPU: the tile shapes of Triton's fused-attention tutorial, which was tuned on A100/H100
# (forward 128x64; backward 32x128 for dK/dV and 128x32 for dQ). TPU: 128-multiples as the
# lane width requires, larger tiles to amortise the per-grid-step overhead.
DEFAULT_BLOCKS = {
    "gpu": BlockSizes(),
    "tpu": BlockSizes(block_q=256, block_kv=512, block_q_dkv=256, block_kv_dkv=256,
                      block_q_dq=256, block_kv_dq=256),
}


def default_blocks(platform: str) -> BlockSizes:
    return DEFAULT_BLOCKS.get(platform, DEFAULT_BLOCKS["gpu"])


def num_warps(head_dim: int) -> int:
    """Triton warps per program: 4 for small heads, 8 from 128 up (as the tutorial)."""
    return 4 if head_dim <= 64 else 8


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _gpu_smem_limit(device_kind: str | None) -> int:
    kind = (device_kind or "").lower()
    for key, limit in _GPU_SMEM.items():
        if key in kind:
            return limit
    return _GPU_SMEM_DEFAULT


def check_blocks(blocks: BlockSizes, platform: str, *, head_dim: int, itemsize: int,
                 kv_len: int, q_len: int = 0, group: int = 1, num_stages: int = 2,
                 device_kind: str | None = None) -> None:
    """Raises BlockShapeError naming the field when `platform` cannot run these blocks.

    `head_dim` is the (possibly padded) head dimension the kernel sees; `kv_len`/`q_len` the
    padded lengths and `group` the query heads per KV head (on TPU the forward keeps a whole K/V
    row in VMEM, the dK/dV kernel the whole Q and dO rows of a group).
    """
    if platform not in PLATFORMS:
        raise BlockShapeError(f"unknown kernel platform {platform!r}; expected one of {PLATFORMS}")
    fields = dataclasses.asdict(blocks)
    for name, size in fields.items():
        if size <= 0:
            raise BlockShapeError(f"BlockSizes.{name}={size} must be positive")
    if platform == "gpu":
        for name, size in fields.items():
            if not _is_pow2(size) or size < 16:
                raise BlockShapeError(
                    f"BlockSizes.{name}={size}: Triton needs a power of two >= 16")
        if not _is_pow2(head_dim) or head_dim < 16:
            raise BlockShapeError(f"head_dim={head_dim}: Triton needs a power of two >= 16")
        smem = (blocks.block_q + 2 * num_stages * blocks.block_kv) * head_dim * itemsize
        limit = _gpu_smem_limit(device_kind)
        if smem > limit:
            raise BlockShapeError(
                f"BlockSizes.block_q={blocks.block_q}, block_kv={blocks.block_kv} at head_dim="
                f"{head_dim} need {smem // 1024} KiB of shared memory; the GPU has {limit // 1024} KiB")
    else:
        for name, size in fields.items():
            if size % 128:
                raise BlockShapeError(
                    f"BlockSizes.{name}={size}: TPU tiles must be multiples of 128 (lane width)")
        # Double-buffered whole rows: K and V (forward, dQ), or Q and dO of a group (dK/dV).
        for what, length, heads in (("K/V", kv_len, 1), ("the dK/dV kernel's Q/dO", q_len, group)):
            vmem = 2 * 2 * heads * length * head_dim * itemsize
            if vmem > _TPU_VMEM_BUDGET:
                raise BlockShapeError(
                    f"length {length} x {heads} head(s) x head_dim {head_dim} needs {vmem >> 20} MiB "
                    f"of VMEM for {what}; the kernel budget is {_TPU_VMEM_BUDGET >> 20} MiB")
