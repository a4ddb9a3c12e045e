"""Compiled for real TPUs on this CPU: the TPU compiler (libtpu, the `tpu` extra) builds our flash
kernel's variants and splash attention for v4, v5e, v5p and v6e; `check_blocks` accepts exactly
what that compiler accepts; the train step compiles for a TPU slice (one and two slices) through
`jaxcoder train --dry_run_topology`, with splash attention as `auto`'s choice there."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from jaxcoder_kernels import BlockShapeError, BlockSizes, flash_attention
from jaxcoder_kernels.block_sizes import check_blocks, default_blocks
from jaxcoder_kernels.splash import splash_attention

from jaxcoder.model.attention_ops import attend
from jaxcoder.parallel.mesh import make_mesh
from jaxcoder.parallel.rules import sharding_rules
from jaxcoder.parallel.topology import TopologyError, tpu_devices

pytest.importorskip("libtpu", reason="the tpu extra (libtpu) compiles for TPUs; make test installs it")

ROOT = Path(__file__).parent.parent
GENERATIONS = {"v4": "v4:2x2x1", "v5e": "v5e:2x2", "v5p": "v5p:2x2x1", "v6e": "v6e:2x2"}
_FLASH = sys.modules["jaxcoder_kernels.flash_attention"]


def _device(generation: str) -> jax.Device:
    return tpu_devices(GENERATIONS[generation])[0]


def _specs(device, t, h, kv, d, dtype):
    sharding = NamedSharding(Mesh(np.array([device]), ("x",)), PartitionSpec())
    return [jax.ShapeDtypeStruct(s, dt, sharding=sharding)
            for s, dt in (((1, t, h, d), dtype), ((1, t, kv, d), dtype), ((1, t, kv, d), dtype), ((1, t), jnp.int32))]


def _grad_of(attention, **kwargs):
    def loss(q, k, v, seg):
        out = attention(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, **kwargs)
        return out.astype(jnp.float32).sum()

    return jax.grad(loss, argnums=(0, 1, 2))


def _compile(fn, specs):
    """Compiles for the TPU of `specs`; returns the number of Mosaic kernels in the program.

    At the default matmul precision, as training runs: the suite's "highest" (conftest) asks
    splash's bf16 matmuls for fp32 passes, which Mosaic refuses (our kernel pins its own)."""
    with jax.default_matmul_precision("default"):
        text = jax.jit(fn).lower(*specs).compile().as_text()
    return len(re.findall(r'custom_call_target="tpu_custom_call"', text))


def _tpu_flash(**kwargs):
    return _grad_of(flash_attention, platform="tpu", interpret=False, **kwargs)


# (t, heads, kv_heads, head_dim, dtype, window, blocks): every code path of the kernel once per
# generation: GQA, MQA and MHA; head dims 64/128/256; bf16 and fp32; causal and windowed;
# ragged lengths (padded); the default tiles and the smallest ones check_blocks allows.
FLASH_VARIANTS = [
    (1024, 8, 2, 128, jnp.bfloat16, None, None),
    (640, 4, 1, 64, jnp.float32, 300, None),
    (512, 2, 2, 256, jnp.bfloat16, 200, None),
    (512, 4, 2, 128, jnp.float32, None, BlockSizes(8, 128, 8, 128, 8, 128)),
]
SPLASH_VARIANTS = [(1000, 8, 2, 128, jnp.bfloat16, 256), (512, 4, 1, 64, jnp.float32, None),
                   (512, 2, 2, 256, jnp.bfloat16, None)]


@pytest.mark.parametrize("generation", list(GENERATIONS))
def test_kernel_variants_compile_for_each_tpu_generation(generation):
    device = _device(generation)
    kind = device.device_kind
    for t, h, kv, d, dtype, window, blocks in FLASH_VARIANTS:
        fn = _tpu_flash(sliding_window=window, block_sizes=blocks, device_kind=kind)
        assert _compile(fn, _specs(device, t, h, kv, d, dtype)) == 3, (generation, t, h, kv, d)  # fwd, dK/dV, dQ
    for t, h, kv, d, dtype, window in SPLASH_VARIANTS:
        fn = _grad_of(splash_attention, sliding_window=window)
        assert _compile(fn, _specs(device, t, h, kv, d, dtype)) >= 3, (generation, t, h, kv, d)


def _compiler_accepts(device, t, h, kv, d, dtype, blocks, monkeypatch) -> bool:
    monkeypatch.setattr(_FLASH, "check_blocks", lambda *a, **k: None)  # ask the compiler itself
    try:
        _compile(_tpu_flash(block_sizes=blocks), _specs(device, t, h, kv, d, dtype))
        return True
    except Exception as e:  # Mosaic / XLA:TPU refusals come as several exception types
        assert re.search(r"vmem|VMEM|divisible by 8 and 128|multiple of 128", str(e)), str(e)[:500]
        return False
    finally:
        monkeypatch.undo()


def _rules_accept(device, t, h, kv, d, dtype, blocks) -> bool:
    try:
        check_blocks(blocks, "tpu", head_dim=d, itemsize=jnp.dtype(dtype).itemsize, kv_len=t, q_len=t,
                     group=h // kv, device_kind=device.device_kind)
        return True
    except BlockShapeError:
        return False


# Per generation, the longest GQA-4 sequence our kernel takes and the next power of two, which
# its whole-row VMEM residency makes too long (v4 has 16 MiB of VMEM, v5p 64, v5e and v6e 128).
VMEM_EDGE = {"v4": 1024, "v5p": 4096, "v5e": 8192, "v6e": 8192}


@pytest.mark.parametrize("generation", list(GENERATIONS))
def test_check_blocks_accepts_what_the_tpu_compiler_accepts(generation, monkeypatch):
    device = _device(generation)
    blocks = default_blocks("tpu")
    for t, accepted in ((VMEM_EDGE[generation], True), (2 * VMEM_EDGE[generation], False)):
        case = (device, t, 8, 2, 128, jnp.bfloat16, blocks)
        assert _rules_accept(*case) is accepted, (generation, t)
        assert _compiler_accepts(*case, monkeypatch) is accepted, (generation, t)
    if generation == "v5e":  # tile rules: KV tiles on the lane axis (128), query tiles on sublanes (8)
        for blocks, accepted in ((BlockSizes(8, 128, 8, 128, 8, 128), True),
                                 (BlockSizes(128, 64, 128, 128, 128, 128), False),
                                 (BlockSizes(128, 128, 128, 64, 128, 128), False)):
            case = (device, 512, 4, 2, 128, jnp.bfloat16, blocks)
            assert _rules_accept(*case) is accepted, blocks
            assert _compiler_accepts(*case, monkeypatch) is accepted, blocks


def test_too_long_for_our_kernel_names_the_kernel_and_the_way_out():
    device = _device("v4")
    with pytest.raises(BlockShapeError, match=r"dK/dV kernel .* more than the 16 MiB of TPU v4.*attention_impl=splash"):
        jax.jit(_tpu_flash(device_kind=device.device_kind)).lower(*_specs(device, 4096, 8, 2, 128, jnp.bfloat16))


def test_auto_is_splash_on_a_tpu_mesh_and_xla_when_decoding():
    device = _device("v5e")
    mesh = make_mesh({"data": 1}, [device])

    def kernels(q_len):
        q, k, v, seg = _specs(device, 512, 4, 2, 128, jnp.bfloat16)
        q = jax.ShapeDtypeStruct((1, q_len, 4, 128), q.dtype, sharding=q.sharding)
        q_seg = jax.ShapeDtypeStruct((1, q_len), seg.dtype, sharding=seg.sharding)
        with sharding_rules(mesh):
            return _compile(lambda q, k, v, qs, ks: attend(q, k, v, q_segment_ids=qs, kv_segment_ids=ks,
                                                           sliding_window=None), (q, k, v, q_seg, seg))

    assert kernels(512) == 1  # splash's forward
    assert kernels(1) == 0  # one new token against a cache: XLA


@pytest.mark.parametrize(("generation", "length", "window", "piece"), [
    ("v5e", 2048, 300, 256),  # 4 devices x 2 zigzag chunks of 256 tokens
    ("v4", 16384, None, 1024),  # chunks of 2048: longer than v4's VMEM takes whole, so cut in two
])
def test_the_context_ring_compiles_with_our_kernel_for_tpu(generation, length, window, piece):
    """Context parallelism on a TPU slice: `auto` (splash) runs the ring's chunk pairs through our
    Mosaic kernel (forward, dK/dV and dQ), K/V travelling by collective-permute."""
    devices = tpu_devices(GENERATIONS[generation])
    mesh = make_mesh({"data": 1, "context": 4}, devices)
    spec = NamedSharding(mesh, PartitionSpec(None, "context"))
    specs = [jax.ShapeDtypeStruct(s, dt, sharding=spec) for s, dt in (
        ((1, length, 8, 128), jnp.bfloat16), ((1, length, 2, 128), jnp.bfloat16),
        ((1, length, 2, 128), jnp.bfloat16), ((1, length), jnp.int32), ((1, length), jnp.int32))]

    def loss(q, k, v, seg, pos):
        with sharding_rules(mesh):
            out = attend(q, k, v, q_segment_ids=seg, kv_segment_ids=seg, sliding_window=window, positions=pos)
        return out.astype(jnp.float32).sum()

    with jax.default_matmul_precision("default"):
        text = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*specs).compile().as_text()
    assert text.count('custom_call_target="tpu_custom_call"') >= 3
    kernels = set(re.findall(r"flash_attention_(?:fwd|dkv|dq)", text))
    assert kernels == {"flash_attention_fwd", "flash_attention_dkv", "flash_attention_dq"}, kernels
    assert f"bf16[1,8,{piece},128]" in text and f"bf16[1,8,{2 * piece},128]" not in text  # queries per kernel call
    assert "collective-permute" in text


def test_two_slices_put_the_data_axis_across_them():
    from jaxcoder.parallel.mesh import granule_spans

    devices = tpu_devices("v5e:2x2", slices=2)
    mesh = make_mesh({"data": 2, "fsdp": 4}, devices)
    for i in range(2):
        assert {d.slice_index for d in mesh.devices[i].flat} == {i}
    assert granule_spans(mesh) == ("slice", {"data": 2, "stage": 1, "fsdp": 1, "context": 1, "tensor": 1})
    # FSDP replicas across the slices instead (mesh.dcn_fsdp): each slice holds half the shards.
    mesh = make_mesh({"data": 1, "fsdp": 8}, devices, {"data": 1, "fsdp": 2})
    assert [d.slice_index for d in mesh.devices.flat] == [0] * 4 + [1] * 4
    assert granule_spans(mesh)[1]["fsdp"] == 2 and granule_spans(mesh)[1]["data"] == 1
    with pytest.raises(ValueError, match=r"mesh.data \(1\) must be a multiple of mesh.dcn_data \(2\): "
                                         r"the 2 slices split it"):
        make_mesh({"data": 1, "fsdp": -1}, devices)
    with pytest.raises(ValueError, match=r"mesh.dcn_data=2, mesh.dcn_fsdp=2 must multiply to the 2 slices"):
        make_mesh({"data": 2, "fsdp": -1}, devices, {"data": 2, "fsdp": 2})


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "jaxcoder", "train", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def test_one_multi_host_slice_is_one_granule():
    """The hosts of one TPU slice share its ICI: a v5p slice of 2 hosts takes any mesh, data=1 too
    (it was refused as if its hosts were joined by the data-centre network); axis sizes that
    split a physical axis are laid out, not refused."""
    from jaxcoder.parallel.mesh import granule_spans

    devices = tpu_devices("v5p:2x2x2")
    assert len({d.process_index for d in devices}) == 2
    mesh = make_mesh({"data": 1, "fsdp": -1}, devices)
    assert mesh.shape["fsdp"] == 8 and granule_spans(mesh)[1]["fsdp"] == 1


def test_dry_run_topology_compiles_the_train_step_for_a_tpu_slice():
    """Two v5e slices: data parallel across them, pipeline stages and tensor parallelism within."""
    proc = _cli("--config=configs/starcoder2.py:tiny", "--dry_run_topology=v5e:2x2", "--dry_run_slices=2",
                "--config.mesh.data=2", "--config.mesh.stage=2", "--config.mesh.tensor=2",
                "--config.pipeline.microbatches=2", "--config.train.batch_size=8", "--config.train.seq_len=256")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "TPU v5 lite (TPU compiler: exact)" in out
    assert "8 {'data': 2, 'stage': 2, 'fsdp': 1, 'context': 1, 'tensor': 2}" in out
    assert "bubble fraction       0.333" in out
    assert re.search(r"attention\s+splash", out) and re.search(r"fits in 16 GiB per device\s+yes", out)
    assert float(re.search(r"generated code / device\s+([\d.]+) GiB", out).group(1)) >= 0
    assert "libtpu" not in proc.stderr and "TPU_WORKER_HOSTNAMES" not in proc.stderr  # its probing stays quiet


def test_a_bad_topology_is_one_line():
    proc = _cli("--config=configs/demo.py:smoke=1", "--dry_run_topology=v5x:2x2")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "jaxcoder train: error: --dry_run_topology='v5x:2x2': expected <generation>:<chips per axis>, "
        "e.g. v5p:4x4x4, v5e:16x16, v6e:8x8 (generations: v4, v5e, v5p, v6e)"]
    with pytest.raises(TopologyError, match="--dry_run_slices=0 must be >= 1"):
        tpu_devices("v5e:2x2", slices=0)


def test_without_libtpu_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "libtpu", None)  # `import libtpu` now raises ImportError
    with pytest.raises(TopologyError, match=r'needs the TPU compiler \(libtpu\): pip install "jaxcoder\[tpu\]"'):
        tpu_devices("v5p:2x2x1")
