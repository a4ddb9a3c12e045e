"""Ahead-of-time check: lower and compile the train step for a config on a mesh of any size
without allocating anything, and report per-device memory.

`jaxcoder train --config=... --dry_run --dry_run_devices=64` runs this on 64 fake CPU devices
(the CLI sets XLA's host device count before JAX starts). Argument and output sizes are exact
for the target (they follow from shapes and shardings); temporaries come from XLA's CPU compiler
and are indicative of, not identical to, what the GPU/TPU compiler will allocate.
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import jax

from jaxcoder.train import sharding as shard_lib
from jaxcoder.train.setup import setup
from jaxcoder.train.step import make_train_step

if TYPE_CHECKING:
    from jaxcoder.config import RunConfig

GiB = 1024**3


@dataclasses.dataclass
class DryRunReport:
    devices: int
    mesh: dict
    params: int
    state_bytes_per_device: int  # parameters + optimizer state, exact
    argument_bytes: int  # per device, as compiled (state + batch)
    output_bytes: int
    temp_bytes: int
    compile_seconds: float
    bubble_fraction: float = 0.0

    @property
    def peak_bytes(self) -> int:
        # Donated state aliases the outputs, so arguments + temporaries bound the peak.
        return self.argument_bytes + self.temp_bytes

    def table(self) -> str:
        rows = [("devices", f"{self.devices} {self.mesh}"), ("parameters", f"{self.params:,}"),
                ("params + optimizer / device", f"{self.state_bytes_per_device / GiB:.2f} GiB"),
                ("arguments / device", f"{self.argument_bytes / GiB:.2f} GiB"),
                ("outputs / device", f"{self.output_bytes / GiB:.2f} GiB"),
                ("temporaries / device", f"{self.temp_bytes / GiB:.2f} GiB"),
                ("peak estimate / device", f"{self.peak_bytes / GiB:.2f} GiB"),
                ("pipeline bubble fraction", f"{self.bubble_fraction:.3f}"),
                ("compile time", f"{self.compile_seconds:.1f} s")]
        return "\n".join(f"  {k:30s} {v}" for k, v in rows)


def dry_run(run: RunConfig) -> DryRunReport:
    st = setup(run)
    mcfg, optimizer, mesh, sh = st.mcfg, st.optimizer, st.mesh, st.sh
    params, opt_state = shard_lib.abstract_state(mcfg, optimizer, sh)
    b, t = run.train.batch_size, run.train.seq_len
    batch = {k: jax.ShapeDtypeStruct((b, t), jax.numpy.int32, sharding=sh.batch)
             for k in ("inputs", "targets", "segment_ids", "positions", "loss_mask")}
    step = jax.jit(make_train_step(mcfg, optimizer, run.train.z_loss, run.train.grad_accum),
                   in_shardings=(sh.params, sh.opt_state, sh.batch),
                   out_shardings=(sh.params, sh.opt_state, sh.replicated), donate_argnums=(0, 1))
    start = time.perf_counter()
    with st.tracing():
        compiled = step.lower(params, opt_state, batch).compile()
    seconds = time.perf_counter() - start
    mem = compiled.memory_analysis()
    return DryRunReport(
        devices=mesh.size, mesh=dict(mesh.shape), params=mcfg.param_count(),
        state_bytes_per_device=shard_lib.bytes_per_device(params) + shard_lib.bytes_per_device(opt_state),
        argument_bytes=int(mem.argument_size_in_bytes), output_bytes=int(mem.output_size_in_bytes),
        temp_bytes=int(mem.temp_size_in_bytes), compile_seconds=seconds,
        bubble_fraction=st.stages.bubble_fraction())
