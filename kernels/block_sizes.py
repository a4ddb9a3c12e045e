"""Block sizes for the flash-attention kernels, their per-backend defaults, and the check that
refuses shapes the target hardware cannot run.

Interpret mode runs any block shape, so without this check a kernel tested on CPU could fail
only when it first meets a GPU or TPU. The rules here are the hardware's, stated once:

* GPU (Triton): every tensor a kernel touches has power-of-two dimensions, and `tl.dot` needs
  at least 16 in each; the forward's Q tile plus the pipelined K/V tiles must fit in shared
  memory (227 KiB per block on H100, 163 KiB on A100).
* TPU (Mosaic): KV blocks lie on the 128-wide lane axis (segment-id rows, score columns), so
  they are multiples of 128; query blocks lie on the sublane axis, multiples of 8. The forward
  and dQ kernels keep one head's whole K/V row in VMEM, the dK/dV kernel the whole Q, dO and
  per-row statistics of a KV head's query group, all double-buffered; `tpu_vmem_bytes` models
  that footprint the way Mosaic lays it out (the last dimension padded to 128 lanes, so a
  [T, 1] float32 statistic costs T x 512 bytes) and the generation's VMEM bounds it.

`tests/test_tpu_compile.py` compiles the kernels with the TPU compiler for v4, v5e, v5p and v6e
and checks these rules accept exactly what the compiler accepts.
"""

from __future__ import annotations

import dataclasses
import math

PLATFORMS = ("gpu", "tpu")

# Shared memory per thread block (bytes) by device kind; the fallback is Hopper's.
_GPU_SMEM = {"a100": 163 * 1024, "h100": 227 * 1024, "h200": 227 * 1024}
_GPU_SMEM_DEFAULT = 227 * 1024
MiB = 1024 * 1024
# VMEM per TensorCore by TPU generation (device_kind substrings, most specific first), as the TPU
# compiler reports it ("Used X of Y vmem"); an unknown kind gets the smallest.
TPU_VMEM = (("v6 lite", 128 * MiB), ("v6e", 128 * MiB), ("v5 lite", 128 * MiB), ("v5e", 128 * MiB),
            ("v5", 64 * MiB), ("v4", 16 * MiB))
_TPU_VMEM_DEFAULT = 16 * MiB


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


def tpu_vmem_capacity(device_kind: str | None) -> int:
    """VMEM bytes of one TensorCore of the TPU generation named by `device_kind` ("TPU v5 lite")."""
    kind = (device_kind or "").lower()
    return next((size for key, size in TPU_VMEM if key in kind), _TPU_VMEM_DEFAULT)


def _tile_bytes(*shape: int, itemsize: int) -> int:
    """VMEM bytes of a block as Mosaic lays it out: the last dimension padded to 128 lanes, the
    one before to whole sublane tiles (8 rows of 32 bits, so 16 for bf16)."""
    *lead, rows, cols = shape
    sub = 8 * max(1, 4 // itemsize)
    return math.prod(lead) * -(-rows // sub) * sub * -(-cols // 128) * 128 * itemsize


def tpu_vmem_bytes(blocks: BlockSizes, *, head_dim: int, itemsize: int, kv_len: int, q_len: int,
                   group: int) -> dict[str, int]:
    """Modelled VMEM per kernel (bytes): double-buffered blocks plus the float32 score tiles."""
    def rows(n):
        return _tile_bytes(n, head_dim, itemsize=itemsize)

    def stat(*shape):
        return _tile_bytes(*shape, 1, itemsize=4)

    def seg_row(n):
        return _tile_bytes(1, n, itemsize=4)

    def scores(bq, bk):
        return 4 * _tile_bytes(bq, bk, itemsize=4)  # scores, probabilities, dP, dS

    bq, bk = blocks.block_q, blocks.block_kv
    fwd = 2 * (2 * rows(bq) + 2 * rows(kv_len) + 2 * stat(bq) + seg_row(kv_len)) + scores(bq, bk)
    bq, bk = blocks.block_q_dq, blocks.block_kv_dq
    dq = 2 * (3 * rows(bq) + 2 * rows(kv_len) + 3 * stat(bq) + seg_row(kv_len)) + scores(bq, bk)
    bq, bk = blocks.block_q_dkv, blocks.block_kv_dkv
    dkv = (2 * (2 * group * rows(q_len) + 2 * stat(group, q_len) + stat(q_len) + 4 * rows(bk)
                + seg_row(bk)) + scores(bq, bk))
    return {"forward": fwd, "dQ": dq, "dK/dV": dkv}


def check_blocks(blocks: BlockSizes, platform: str, *, head_dim: int, itemsize: int,
                 kv_len: int, q_len: int = 0, group: int = 1, num_stages: int = 2,
                 device_kind: str | None = None) -> None:
    """Raises BlockShapeError naming the field when `platform` cannot run these blocks.

    `head_dim` is the (possibly padded) head dimension the kernel sees; `kv_len`/`q_len` the
    padded lengths, `group` the query heads per KV head and `device_kind` the target device's
    (GPU shared memory and TPU VMEM differ by generation).
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
            multiple = 128 if name.startswith("block_kv") else 8
            if size % multiple:
                axis = "lane" if multiple == 128 else "sublane"
                raise BlockShapeError(f"BlockSizes.{name}={size}: TPU {'KV' if multiple == 128 else 'query'} "
                                      f"blocks must be multiples of {multiple} (the {axis} axis)")
        capacity = tpu_vmem_capacity(device_kind)
        need = tpu_vmem_bytes(blocks, head_dim=head_dim, itemsize=itemsize, kv_len=kv_len,
                              q_len=q_len or kv_len, group=group)
        kernel, most = max(need.items(), key=lambda kv: kv[1])
        if most > capacity:
            raise BlockShapeError(
                f"the {kernel} kernel keeps whole rows of {max(kv_len, q_len)} tokens x head_dim {head_dim} "
                f"(query group {group}) in VMEM: {most / MiB:.0f} MiB, more than the {capacity // MiB} MiB of "
                f"{device_kind or 'this TPU'}; use model.attention_impl=splash (or xla) for this length")
