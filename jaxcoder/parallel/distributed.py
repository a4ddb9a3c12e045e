"""Multi-host start-up: `jax.distributed.initialize` from the config or the environment.

Explicit settings (config `distributed.*` or JAXCODER_COORDINATOR / JAXCODER_NUM_PROCESSES /
JAXCODER_PROCESS_ID) win; otherwise, when `distributed.auto` is set, JAX detects the cluster itself
(TPU VMs, SLURM, Open MPI, GKE). Single-process runs skip initialisation entirely.
"""

from __future__ import annotations

import dataclasses
import os

import jax

from jaxcoder.fields import check, field


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    coordinator: str | None = None  # host:port of process 0
    num_processes: int | None = field(None, ge=1)
    process_id: int | None = field(None, ge=0)
    auto: bool = False  # let JAX detect TPU / SLURM / MPI / GKE clusters
    local_devices: int = field(0, ge=0)  # >0: fake CPU devices per process (local multi-process runs)

    def __post_init__(self):
        check(self, "distributed")


def initialize(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
               auto: bool = False, local_devices: int | None = None) -> None:
    coordinator = coordinator or os.environ.get("JAXCODER_COORDINATOR")
    num_processes = num_processes or _env_int("JAXCODER_NUM_PROCESSES")
    if process_id is None:
        process_id = _env_int("JAXCODER_PROCESS_ID")
    if local_devices:
        # CPU runs (tests, local launches): several fake devices per process, gloo collectives.
        jax.config.update("jax_num_cpu_devices", local_devices)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if coordinator:
        if num_processes is None or process_id is None:
            raise ValueError("distributed.coordinator is set but num_processes / process_id are not "
                             "(config distributed.* or JAXCODER_NUM_PROCESSES / JAXCODER_PROCESS_ID)")
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=num_processes,
                                   process_id=process_id, initialization_timeout=300)
    elif auto:
        jax.distributed.initialize()


def barrier(name: str, timeout_s: float = 600.0) -> None:
    """Waits until every process got here (the coordination service's barrier; no-op on one
    process). Before the first collective of a run: on CPU (gloo) the processes must meet within
    30 s there, and one process's own work before it (writers, tokenizer copy) can take longer on a
    loaded host."""
    from jax._src import distributed

    client = distributed.global_state.client
    if client is not None and jax.process_count() > 1:
        client.wait_at_barrier(f"jaxcoder:{name}", int(timeout_s * 1000))


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else None
