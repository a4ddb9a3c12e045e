"""TPU slices without TPUs: the devices of a named topology ("v5p:4x4x4", "v6e:8x8"), for compiling
ahead of time with the real TPU compiler on a CPU host (`jaxcoder train --dry_run_topology`).

libtpu (`pip install "jaxcoder[tpu]"`) provides the compiler; `jax.experimental.topologies` gives
devices with the slice's physical layout, which a mesh and `jit(...).lower(...).compile()` take
like real ones. Nothing runs and nothing is allocated.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile

import jax

GiB = 1024**3

# HBM per chip (bytes) by generation, keyed by the topology name's prefix and matched against
# device_kind (most specific first). v4 and v5p devices are megacore chips (both TensorCores).
TPU_GENERATIONS = {
    "v4": {"kind": "TPU v4", "hbm": 32 * GiB, "megacore": True},
    "v5e": {"kind": "TPU v5 lite", "hbm": 16 * GiB, "megacore": False},
    "v5p": {"kind": "TPU v5", "hbm": 95 * GiB, "megacore": True},
    "v6e": {"kind": "TPU v6 lite", "hbm": 32 * GiB, "megacore": False},
}
_NAME = re.compile(rf"^({'|'.join(TPU_GENERATIONS)}):(\d+(?:x\d+){{1,2}})$")
INSTALL = 'pip install "jaxcoder[tpu]" (jax[tpu] at the installed jax version brings libtpu)'


class TopologyError(ValueError):
    """A topology name or slice count that cannot be compiled for."""


def hbm_bytes(device: jax.Device) -> int | None:
    """HBM of one TPU device (a chip: megacore chips count as one device): what a real device
    reports, else the generation's nominal size; None for a kind we have no figure for."""
    try:
        stats = device.memory_stats()
    except Exception:  # a topology's devices (AOT) have none: "only supported for addressable devices"
        stats = None
    if stats and stats.get("bytes_limit"):
        return int(stats["bytes_limit"])
    for gen in sorted(TPU_GENERATIONS.values(), key=lambda g: -len(g["kind"])):
        if device.device_kind.lower().startswith(gen["kind"].lower()):
            return gen["hbm"]
    return None


@contextlib.contextmanager
def _quiet_stderr():
    """libtpu logs to fd 2 that it found no TPU (expected here); keep it for errors only."""
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            yield log
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def tpu_devices(name: str, slices: int = 1) -> list[jax.Device]:
    """The devices of `slices` TPU slices of topology `name` ("<generation>:<AxB[xC]>")."""
    match = _NAME.match(name)
    if not match:
        raise TopologyError(f"--dry_run_topology={name!r}: expected <generation>:<chips per axis>, e.g. "
                            f"v5p:4x4x4, v5e:16x16, v6e:8x8 (generations: {', '.join(TPU_GENERATIONS)})")
    if slices < 1:
        raise TopologyError(f"--dry_run_slices={slices} must be >= 1")
    try:
        import libtpu  # noqa: F401
    except ImportError as e:
        raise TopologyError(f"--dry_run_topology needs the TPU compiler (libtpu): {INSTALL}") from e
    from jax.experimental import topologies

    # libtpu takes a host-wide lock when it loads, for the TPU it would drive; compiling ahead of
    # time drives none, so several compiling processes (or one beside a training run) may share it.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    gen = TPU_GENERATIONS[match.group(1)]
    kwargs = {"chip_config_name": "megacore"} if gen["megacore"] else {}
    if slices > 1:
        kwargs["num_slices"] = slices
    with _quiet_stderr() as log:
        try:
            topology = topologies.get_topology_desc(platform="tpu", topology_name=name, **kwargs)
        except Exception as e:
            log.seek(0)
            detail = log.read().decode(errors="replace").strip().splitlines()[-1:]
            raise TopologyError(f"--dry_run_topology={name!r}: libtpu refused it: {e} {' '.join(detail)}") from e
    return list(topology.devices)


def slice_count(devices) -> int:
    """How many slices the devices span (1 for real or fake devices of one host group)."""
    return len({getattr(d, "slice_index", 0) or 0 for d in devices})
