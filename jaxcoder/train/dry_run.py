"""Ahead-of-time check: lower and compile the train step for a config on a mesh of any size
without allocating anything, and report per-device memory.

`--dry_run_topology=v5p:4x4x4` compiles for a TPU slice's devices (`parallel/topology.py`) with
the TPU compiler: its memory analysis is what the TPU will allocate. `--dry_run_devices=64` uses
64 fake CPU devices (the CLI sets XLA's host device count before JAX starts): argument and output
sizes are exact (they follow from shapes and shardings), temporaries come from XLA's CPU compiler
and only estimate what a GPU's compiler allocates (BENCHMARKS.md compares the two on TPU).
"""

from __future__ import annotations

import dataclasses
import time
from typing import TYPE_CHECKING

import jax

from jaxcoder.model.attention_ops import resolve_impl, ring_blocks
from jaxcoder.parallel.context import context_size
from jaxcoder.parallel.topology import hbm_bytes
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
    device_kind: str = "cpu"
    code_bytes: int = 0
    exact: bool = False  # the target's own compiler (TPU) rather than XLA's CPU compiler
    budget_bytes: int = 80 * GiB  # HBM per device: the TPU generation's, else an 80 GiB GPU's
    attention: str = "xla"  # what model.attention_impl resolved to for the target

    @property
    def peak_bytes(self) -> int:
        # Donated state aliases the outputs, so arguments + temporaries (+ code) bound the peak.
        return self.argument_bytes + self.temp_bytes + self.code_bytes

    @property
    def fits(self) -> bool:
        return self.peak_bytes <= self.budget_bytes

    def table(self) -> str:
        compiler = (f"{self.device_kind} (TPU compiler: exact)" if self.exact
                    else f"{self.device_kind} (XLA CPU compiler: temporaries are an estimate)")
        rows = [("compiled for", compiler), ("devices", f"{self.devices} {self.mesh}"),
                ("parameters", f"{self.params:,}"), ("attention", self.attention),
                ("params + optimizer / device", f"{self.state_bytes_per_device / GiB:.2f} GiB"),
                ("arguments / device", f"{self.argument_bytes / GiB:.2f} GiB"),
                ("outputs / device", f"{self.output_bytes / GiB:.2f} GiB"),
                ("temporaries / device", f"{self.temp_bytes / GiB:.2f} GiB"),
                ("generated code / device", f"{self.code_bytes / GiB:.2f} GiB"),
                ("peak / device", f"{self.peak_bytes / GiB:.2f} GiB"),
                ("pipeline bubble fraction", f"{self.bubble_fraction:.3f}"),
                ("compile time", f"{self.compile_seconds:.1f} s"),
                (f"fits in {self.budget_bytes / GiB:.0f} GiB per device", "yes" if self.fits else "NO")]
        return "\n".join(f"  {k:30s} {v}" for k, v in rows)


def dry_run(run: RunConfig, devices: list[jax.Device] | None = None) -> DryRunReport:
    """Compiles one train step of `run` for `devices` (default: this process's; a TPU topology's
    from `parallel.topology.tpu_devices`) and reports its memory per device."""
    st = setup(run, devices)
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
        attention = resolve_impl(mcfg.attention_impl)  # for the mesh's devices
        if context_size(mesh) > 1:
            attention = f"ring over {context_size(mesh)} context devices ({ring_blocks(attention)} blocks)"
    seconds = time.perf_counter() - start
    mem = compiled.memory_analysis()
    device = mesh.devices.flat[0]
    kind, tpu = device.device_kind, device.platform == "tpu"
    target = {"code_bytes": int(mem.generated_code_size_in_bytes)} if tpu else {}
    hbm = hbm_bytes(device) if tpu else None
    if hbm:
        target["budget_bytes"] = hbm
    return DryRunReport(
        **target, device_kind=kind, exact=tpu, attention=attention,
        devices=mesh.size, mesh=dict(mesh.shape), params=mcfg.param_count(),
        state_bytes_per_device=shard_lib.bytes_per_device(params) + shard_lib.bytes_per_device(opt_state),
        argument_bytes=int(mem.argument_size_in_bytes), output_bytes=int(mem.output_size_in_bytes),
        temp_bytes=int(mem.temp_size_in_bytes), compile_seconds=seconds,
        bubble_fraction=st.stages.bubble_fraction())
