"""Logical axis names and the one table that maps them onto mesh axes.

Every parameter carries logical names in its `axes` metadata and every large activation is
constrained with `constrain(x, names)`. Changing parallelism is an edit of the rules table
(a config field), never of model code.

Resolution follows t5x/MaxText semantics: for each logical name, the first rule whose mesh
axes are present in the mesh and not yet used by an earlier dimension wins; otherwise the
dimension is replicated. That lets parameters (`embed` -> `fsdp`) and activations
(`batch` -> (`data`, `fsdp`), `embed` -> replicated) share names without conflicts.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable, Sequence

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

LogicalAxes = tuple[str | None, ...]
Rules = tuple[tuple[str, str | tuple[str, ...] | None], ...]

# Logical names used by the model. Parameters and activations share them.
LOGICAL_NAMES = ("batch", "length", "embed", "heads", "kv_heads", "head_dim", "mlp", "vocab",
                 "layers", "norm", "position")

DEFAULT_RULES: Rules = (
    ("batch", ("data", "fsdp")),
    ("batch", "data"),
    ("layers", "stage"),
    # Parameters shard over the context axis too (as in MaxText): its devices hold different
    # tokens but the same weights, so they can split the weights' memory like FSDP devices do.
    ("embed", ("fsdp", "context")),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("mlp", "tensor"),
    ("vocab", "tensor"),
    ("length", "context"),
    ("head_dim", None),
    ("norm", None),
    ("position", None),
)

_ACTIVE: contextvars.ContextVar[tuple[Mesh, Rules] | None] = contextvars.ContextVar(
    "jaxcoder_sharding", default=None)


def _as_tuple(target) -> tuple[str, ...]:
    if target is None:
        return ()
    return (target,) if isinstance(target, str) else tuple(target)


def logical_to_spec(axes: Sequence[str | None], rules: Rules, mesh_axes: Iterable[str]) -> PartitionSpec:
    """Maps logical names to a PartitionSpec over the given mesh axes."""
    present = set(mesh_axes)
    used: set[str] = set()
    out = []
    for name in axes:
        chosen = None
        if name is not None:
            for rule_name, target in rules:
                if rule_name != name:
                    continue
                mesh_targets = _as_tuple(target)
                if not mesh_targets:
                    break
                if all(t in present for t in mesh_targets) and not used.intersection(mesh_targets):
                    chosen = mesh_targets
                    break
        if chosen:
            used.update(chosen)
            out.append(chosen[0] if len(chosen) == 1 else chosen)
        else:
            out.append(None)
    return PartitionSpec(*out)


def named_sharding(axes: Sequence[str | None], mesh: Mesh, rules: Rules = DEFAULT_RULES) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(axes, rules, mesh.axis_names))


@contextlib.contextmanager
def sharding_rules(mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """Activates `constrain` for model code traced inside this context."""
    token = _ACTIVE.set((mesh, tuple(tuple(r) for r in rules)))
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def constrain(x: jax.Array, axes: LogicalAxes) -> jax.Array:
    """Sharding constraint by logical names; a no-op outside `sharding_rules`."""
    active = _ACTIVE.get()
    if active is None:
        return x
    mesh, rules = active
    if len(axes) != x.ndim:
        raise ValueError(f"logical axes {axes} do not match an array of rank {x.ndim}")
    return jax.lax.with_sharding_constraint(x, named_sharding(axes, mesh, rules))


def tree_shardings(logical_tree, mesh: Mesh, rules: Rules = DEFAULT_RULES):
    """A pytree of NamedShardings from a pytree of logical-axes tuples."""
    return jax.tree.map(lambda axes: named_sharding(axes, mesh, rules), logical_tree,
                        is_leaf=lambda x: isinstance(x, tuple))


def active_mesh() -> Mesh | None:
    """The mesh of the enclosing `sharding_rules`, if any."""
    active = _ACTIVE.get()
    return active[0] if active else None


def target_device() -> jax.Device:
    """The device kind code is being traced for: the active mesh's (a TPU topology's devices when
    compiling ahead of time on CPU), else this process's first device."""
    mesh = active_mesh()
    return mesh.devices.flat[0] if mesh is not None else jax.devices()[0]


def target_platform() -> str:
    """'cpu', 'gpu' or 'tpu' for `target_device()` (CUDA and ROCm both count as 'gpu')."""
    platform = target_device().platform
    return "gpu" if platform in ("gpu", "cuda", "rocm") else platform


def active_spec(axes: LogicalAxes) -> PartitionSpec:
    """The PartitionSpec the active rules give these logical axes (all replicated outside
    `sharding_rules`)."""
    active = _ACTIVE.get()
    if active is None:
        return PartitionSpec(*([None] * len(axes)))
    mesh, rules = active
    return logical_to_spec(axes, rules, mesh.axis_names)
