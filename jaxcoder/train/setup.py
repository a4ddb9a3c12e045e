"""What a run (or a dry run) derives from its resolved config before touching data: the device
mesh, the optimizer, the parameter / optimizer-state / batch shardings and the pipeline stages,
with every size checked against the model and the batch first."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING

import jax
import optax
from jax.sharding import Mesh

from jaxcoder.model.config import ModelConfig
from jaxcoder.parallel.mesh import MeshError, check_model_fits, make_mesh, resolve_axis_sizes
from jaxcoder.parallel.pipeline import StageConfig, pipelining
from jaxcoder.parallel.rules import sharding_rules
from jaxcoder.train import sharding as shard_lib
from jaxcoder.train.optimizer import OptimizerConfig, make_optimizer

if TYPE_CHECKING:
    from jaxcoder.config import RunConfig


@dataclasses.dataclass
class Setup:
    """Everything a run (or a dry run) derives from its config before touching data or devices."""

    mcfg: ModelConfig
    ocfg: OptimizerConfig
    optimizer: optax.GradientTransformation
    mesh: Mesh
    rules: tuple
    sh: shard_lib.TrainShardings
    stages: StageConfig

    @contextlib.contextmanager
    def tracing(self):
        """The contexts model code must be traced in: activation shardings and the pipeline."""
        with sharding_rules(self.mesh, self.rules), pipelining(self.stages):
            yield


def setup(run: RunConfig, devices: list[jax.Device] | None = None) -> Setup:
    """Mesh, model/optimizer configs and shardings (no allocation); sizes that cannot work are
    refused, naming the fields. `devices` (default: this process's) may be a TPU topology's."""
    mcfg, t = run.model, run.train
    if t.seq_len > mcfg.max_seq_len:
        raise ValueError(f"train.seq_len ({t.seq_len}) exceeds model.max_seq_len ({mcfg.max_seq_len})")
    if t.batch_size % t.grad_accum:
        raise ValueError(f"train.batch_size ({t.batch_size}) is not divisible by train.grad_accum ({t.grad_accum})")
    devices = devices or jax.devices()
    devices = devices[: run.mesh.num_devices] if run.mesh.num_devices else devices
    sizes = resolve_axis_sizes(run.mesh.sizes(), len(devices))
    per_step = t.batch_size // t.grad_accum
    check_model_fits(mcfg, sizes, per_step, t.seq_len)
    stages = run.stages(sizes["stage"])
    if stages.stages > 1:
        stages.check(mcfg.n_layers, per_step)
        micro, dp = per_step // stages.microbatches, sizes["data"] * sizes["fsdp"]
        if micro % dp:
            raise MeshError(f"a pipeline microbatch has {micro} rows, not divisible by mesh.data x mesh.fsdp ({dp}); "
                            "raise train.batch_size or lower pipeline.microbatches")
    mesh = make_mesh(sizes, devices, run.mesh.dcn_sizes(), run.mesh.granule)
    rules = run.mesh.rules_table()
    ocfg = run.optimizer()
    optimizer = make_optimizer(ocfg)
    return Setup(mcfg, ocfg, optimizer, mesh, rules, shard_lib.make_shardings(mcfg, optimizer, mesh, rules), stages)
