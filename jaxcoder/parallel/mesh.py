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

MESH_AXES = ("data", "stage", "fsdp", "context", "tensor")
GRANULES = ("auto", "slice", "process")
PLURAL = {"slice": "slices", "process": "processes"}


class MeshError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """The `mesh` section: axis sizes (one may be -1: the remaining devices) and the rules table."""

    data: int = -1
    stage: int = 1
    fsdp: int = 1
    # Context parallelism: every row's tokens split over this many devices (ring attention,
    # jaxcoder/parallel/context.py), for sequences whose activations one device cannot hold.
    context: int = 1
    tensor: int = 1
    num_devices: int = field(0, ge=0)  # use only the first N devices (0 = all)
    # Several TPU slices or GPU nodes ("granules": ICI / NVLink inside, the slower data-centre
    # network between): how many granules each axis spans; its size within a granule is
    # mesh.<axis> / mesh.dcn_<axis>. One may be -1 (the remaining granules). By default data
    # parallelism crosses granules: its gradient all-reduce is the one collective per step that
    # tolerates the slower network. Ignored on one granule.
    dcn_data: int = -1
    dcn_stage: int = 1
    dcn_fsdp: int = 1
    dcn_context: int = 1
    dcn_tensor: int = 1
    granule: str = field("auto", choices=GRANULES)  # auto: TPU slices when there are several, else processes
    # Logical axis name -> mesh axes; first applicable rule wins (jaxcoder/parallel/rules.py).
    rules: tuple = DEFAULT_RULES

    def __post_init__(self):
        check(self, "mesh")
        bad = [f"mesh.{a}={getattr(self, a)}" for a in MESH_AXES if getattr(self, a) == 0 or getattr(self, a) < -1]
        free = [f"mesh.{a}=-1" for a in MESH_AXES if getattr(self, a) == -1]
        if bad or len(free) > 1:
            raise ConfigError(f"mesh sizes must be positive with at most one -1; got {', '.join(bad or free)}")
        dcn = {f"mesh.dcn_{a}": n for a, n in self.dcn_sizes().items()}
        if any(n == 0 or n < -1 for n in dcn.values()) or list(dcn.values()).count(-1) > 1:
            raise ConfigError("mesh.dcn_* must be positive with at most one -1; got "
                              + ", ".join(f"{k}={n}" for k, n in dcn.items() if n != 1))

    def sizes(self) -> dict[str, int]:
        return {a: getattr(self, a) for a in MESH_AXES}

    def without_context(self) -> MeshConfig:
        """The same devices with the context axis folded into data parallelism: for evaluation and
        generation, whose rows are not in the ring's load-balanced order and whose decode steps
        attend one token to a cache."""
        if self.context == 1 and self.dcn_context == 1:
            return self
        fold = lambda n, c: -1 if n == -1 else n * c
        return dataclasses.replace(self, data=fold(self.data, self.context), context=1,
                                   dcn_data=fold(self.dcn_data, self.dcn_context), dcn_context=1)

    def dcn_sizes(self) -> dict[str, int]:
        return {a: getattr(self, f"dcn_{a}") for a in MESH_AXES}

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


def make_mesh(sizes: Mapping[str, int], devices: Sequence[jax.Device] | None = None,
              dcn: Mapping[str, int] | None = None, granule: str = "auto") -> Mesh:
    """A mesh over all (or the given) devices with axes in MESH_AXES order, in auto-sharding mode.

    Devices of several granules (TPU slices, or processes: GPU nodes) get a hybrid mesh
    (`mesh_utils.create_hybrid_device_mesh`): axis a spans `dcn[a]` granules (default: data across
    all of them) and mesh[a] / dcn[a] devices within each."""
    devices = list(devices if devices is not None else jax.devices())
    resolved = resolve_axis_sizes(sizes, len(devices))
    shape = tuple(resolved[a] for a in MESH_AXES)
    types = (AxisType.Auto,) * len(MESH_AXES)
    kind, count = _granules(devices, granule)
    if count == 1:
        try:
            return jax.make_mesh(shape, MESH_AXES, axis_types=types, devices=devices)
        except NotImplementedError:
            # An axis that no product of the slice's physical axes equals (8 on a v5p 4x4x4):
            # split a physical axis for it rather than refuse the mesh.
            from jax.experimental import mesh_utils

            return Mesh(mesh_utils.create_device_mesh(shape, devices, allow_split_physical_axes=True), MESH_AXES,
                        axis_types=types)
    across = _dcn_sizes(dcn or {"data": -1}, count, kind)
    for a in MESH_AXES:
        if resolved[a] % across[a]:
            raise MeshError(f"mesh.{a} ({resolved[a]}) must be a multiple of mesh.dcn_{a} ({across[a]}): the "
                            f"{count} {PLURAL[kind]} split it")
    from jax.experimental import mesh_utils

    dcn_shape = tuple(across[a] for a in MESH_AXES)
    ici = tuple(n // d for n, d in zip(shape, dcn_shape, strict=True))
    return Mesh(mesh_utils.create_hybrid_device_mesh(ici, dcn_shape, devices, process_is_granule=kind == "process"),
                MESH_AXES, axis_types=types)


def granule_spans(mesh: Mesh, granule: str = "auto") -> tuple[str, dict[str, int]]:
    """(granule kind, {axis: how many granules it crosses}) of a mesh; all 1 on one granule."""
    import numpy as np

    kind, _ = _granules(list(mesh.devices.flat), granule)
    ids = np.vectorize(lambda d: getattr(d, "slice_index", 0) or 0 if kind == "slice" else d.process_index,
                       otypes=[int])(mesh.devices)
    return kind, {a: len(np.unique(np.moveaxis(ids, i, 0).reshape(ids.shape[i], -1)[:, 0]))
                  for i, a in enumerate(mesh.axis_names)}


def _granules(devices: Sequence[jax.Device], granule: str) -> tuple[str, int]:
    slices = slice_count(devices)
    processes = len({d.process_index for d in devices})
    # TPU hosts of one slice share its ICI: a TPU slice is a granule however many processes it has.
    if granule == "slice" or (granule == "auto" and (slices > 1 or devices[0].platform == "tpu")):
        return "slice", slices
    return "process", processes


def _dcn_sizes(dcn: Mapping[str, int], count: int, kind: str) -> dict[str, int]:
    """mesh.dcn_* with the -1 filled so that they multiply to the number of granules."""
    sizes = {a: int(dcn.get(a, 1)) for a in MESH_AXES}
    free = [a for a in MESH_AXES if sizes[a] == -1]
    fixed = math.prod(n for n in sizes.values() if n != -1)
    if len(free) > 1 or any(n == 0 or n < -1 for n in sizes.values()):
        raise MeshError(f"mesh.dcn_* must be positive with at most one -1; got {sizes}")
    if free and count % fixed == 0:
        sizes[free[0]] = count // fixed
    if math.prod(sizes.values()) != count:
        given = ", ".join(f"mesh.dcn_{a}={dcn.get(a, 1)}" for a in MESH_AXES if dcn.get(a, 1) != 1)
        raise MeshError(f"{given or 'mesh.dcn_*'} must multiply to the {count} {PLURAL[kind]} the devices span")
    return sizes


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
    context = sizes.get("context", 1)
    if context > 1 and seq_len % (2 * context):
        raise MeshError(f"train.seq_len ({seq_len}) must be a multiple of 2 x mesh.context = {2 * context} (each "
                        f"device holds an early and a late chunk of every row)")
