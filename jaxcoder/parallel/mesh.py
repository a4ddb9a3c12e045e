"""Where the device mesh is built: named axes from the config, one of them may be -1."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import jax
from jax.sharding import AxisType, Mesh

from jaxcoder.fields import ConfigError, check, field
from jaxcoder.parallel.rules import DEFAULT_RULES
from jaxcoder.parallel.topology import slice_count

MESH_AXES = ("data", "stage", "fsdp", "tensor")


class MeshError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """The `mesh` section: axis sizes (one may be -1: the remaining devices) and the rules table."""

    data: int = -1
    stage: int = 1
    fsdp: int = 1
    tensor: int = 1
    num_devices: int = field(0, ge=0)  # use only the first N devices (0 = all)
    # Logical axis name -> mesh axes; first applicable rule wins (jaxcoder/parallel/rules.py).
    rules: tuple = DEFAULT_RULES

    def __post_init__(self):
        check(self, "mesh")
        bad = [f"mesh.{a}={getattr(self, a)}" for a in MESH_AXES if getattr(self, a) == 0 or getattr(self, a) < -1]
        free = [f"mesh.{a}=-1" for a in MESH_AXES if getattr(self, a) == -1]
        if bad or len(free) > 1:
            raise ConfigError(f"mesh sizes must be positive with at most one -1; got {', '.join(bad or free)}")

    def sizes(self) -> dict[str, int]:
        return {a: getattr(self, a) for a in MESH_AXES}

    def rules_table(self) -> tuple:
        """The rules as (name, target) pairs with tuple targets (lists come back from JSON and CLI)."""
        return tuple((str(name), target if target is None or isinstance(target, str) else tuple(target))
                     for name, target in self.rules)


def resolve_axis_sizes(sizes: Mapping[str, int], n_devices: int) -> dict[str, int]:
    """Fills the single -1 axis so the product equals the device count; names the problem otherwise."""
    unknown = sorted(set(sizes) - set(MESH_AXES))
    if unknown:
        raise MeshError(f"unknown mesh axis {', '.join('mesh.' + u for u in unknown)}; axes are {MESH_AXES}")
    sizes = {a: int(sizes.get(a, 1)) for a in MESH_AXES}
    free = [a for a, s in sizes.items() if s == -1]
    bad = [f"mesh.{a}={s}" for a, s in sizes.items() if s == 0 or s < -1]
    if bad or len(free) > 1:
        raise MeshError(f"mesh sizes must be positive with at most one -1; got {', '.join(bad or free)}")
    fixed = math.prod(s for s in sizes.values() if s != -1)
    if free:
        if n_devices % fixed:
            raise MeshError(f"cannot fill mesh.{free[0]}=-1: {n_devices} devices are not divisible by the other "
                            f"axes' product {fixed}")
        sizes[free[0]] = n_devices // fixed
    elif fixed != n_devices:
        raise MeshError(f"mesh axes multiply to {fixed} ({sizes}) but there are {n_devices} devices")
    return sizes


def make_mesh(sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A mesh over all (or the given) devices with axes in MESH_AXES order, in auto-sharding mode.

    Devices of several TPU slices (`slice_index`) get a hybrid mesh: the `data` axis spans the
    slices (only its gradient all-reduce crosses the slower data-centre network), every other axis
    stays within a slice's ICI."""
    devices = list(devices if devices is not None else jax.devices())
    resolved = resolve_axis_sizes(sizes, len(devices))
    shape = tuple(resolved[a] for a in MESH_AXES)
    types = (AxisType.Auto,) * len(MESH_AXES)
    slices = slice_count(devices)
    if slices == 1:
        return jax.make_mesh(shape, MESH_AXES, axis_types=types, devices=devices)
    if resolved["data"] % slices:
        raise MeshError(f"mesh.data ({resolved['data']}) must be a multiple of the {slices} slices: data "
                        "parallelism is what crosses slices")
    from jax.experimental import mesh_utils

    dcn = tuple(slices if a == "data" else 1 for a in MESH_AXES)
    ici = tuple(n // d for n, d in zip(shape, dcn, strict=True))
    return Mesh(mesh_utils.create_hybrid_device_mesh(ici, dcn, devices), MESH_AXES, axis_types=types)


def check_model_fits(model_cfg, sizes: Mapping[str, int], global_batch: int, seq_len: int) -> None:
    """Errors that name the problem before anything compiles."""
    tp = sizes.get("tensor", 1)
    for name, value in (("n_heads", model_cfg.n_heads), ("n_kv_heads", model_cfg.n_kv_heads),
                        ("d_ff", model_cfg.d_ff), ("vocab_size", model_cfg.vocab_size)):
        if value % tp:
            raise MeshError(f"model.{name} ({value}) is not divisible by mesh.tensor ({tp})")
    fsdp = sizes.get("fsdp", 1)
    if model_cfg.d_model % fsdp:
        raise MeshError(f"model.d_model ({model_cfg.d_model}) is not divisible by mesh.fsdp ({fsdp})")
    dp = sizes.get("data", 1) * fsdp
    if global_batch % dp:
        raise MeshError(f"train.batch_size ({global_batch}) is not divisible by the data-parallel degree "
                        f"mesh.data x mesh.fsdp = {dp}")
    stage = sizes.get("stage", 1)
    if stage > 1 and model_cfg.n_layers % stage:
        raise MeshError(f"model.n_layers ({model_cfg.n_layers}) is not divisible by mesh.stage ({stage})")
    del seq_len
