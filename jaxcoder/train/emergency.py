"""Emergency checkpoints: a frequent, cheap tier on each host's own disk or RAM.

Persistent checkpoints (`<workdir>/checkpoints`, shared storage) are written every
`train.checkpoint_every` steps; a preempted or crashed run loses everything since the last one.
The local tier narrows that gap: every `train.local_checkpoint_every` steps each process writes the
shards of the state it holds, its data iterator's position and the run's metadata to
`train.local_checkpoint_dir/process_<i>` (a local NVMe disk or `/dev/shm`), which costs no
network or shared-storage bandwidth. A restart on the same hosts and mesh resumes from the newest
step that every process holds complete in either tier (the local one on a tie); a restart where a
host was replaced or the mesh changed finds the local tier unusable and falls back to the
persistent one, saying so.

Why not Orbax's emergency CheckpointManager (`orbax.checkpoint.experimental.emergency`): in Orbax
0.12 it keeps a local tier only for meshes replicated across several slices (with one slice it
writes the persistent tier alone), saves one state pytree (not our metadata and per-process data
iterator), and is marked experimental. This module keeps its idea for any mesh, single-host and
GPU runs included, with Orbax writing each host's part.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_utils


def layout(workdir: str | os.PathLike, mesh: jax.sharding.Mesh) -> dict:
    """What a local copy is only valid for: this run, this mesh, these devices, this process."""
    return {"workdir": str(Path(workdir).absolute()), "mesh": {k: int(v) for k, v in mesh.shape.items()},
            "devices": [int(d.id) for d in mesh.devices.flat], "process": jax.process_index(),
            "processes": jax.process_count()}


class _NoSizeLogNotice(logging.Filter):
    """Orbax warns on every save that it cannot log global sizes when each process is its own
    primary host, which is this tier's design."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "primary_host=None" not in record.getMessage()


_QUIET = _NoSizeLogNotice()


class LocalTier:
    """This process's part of the local tier: an Orbax manager of its own (no other process
    reads or waits for its directory)."""

    def __init__(self, root: str | os.PathLike, every: int, layout: dict, keep: int = 2):
        self.directory = Path(root).expanduser().absolute() / f"process_{jax.process_index()}"
        self.every, self.layout = every, layout
        self.directory.mkdir(parents=True, exist_ok=True)
        logging.getLogger("absl").addFilter(_QUIET)  # Orbax leaves this to us with active_processes
        # Every process is its own primary host and writes every shard it holds (Orbax's handlers
        # otherwise leave metadata to process 0 and each shard to one replica, possibly on another
        # host): the settings of Orbax's own emergency local tier.
        # (Their barrier and signal keys are named per process: the same keys from every host, with
        # one participant each, would let one host's "directory created" release another's write.)
        me = jax.process_index()
        alone = ocp.options.MultiprocessingOptions(primary_host=None, active_processes={me},
                                                   barrier_sync_key_prefix=f"local_tier_{me}")
        registry = ocp.type_handlers.create_type_handler_registry(
            (jax.Array, ocp.type_handlers.ArrayHandler(primary_host=None, replica_id=None, use_replica_parallel=False)))
        # Directories are created before the save returns, not in the background: Orbax's background
        # creation signals "created" through keys named by a per-process operation counter alone
        # (`awaitable_signals_contract_<n>/...`), so with every process its own primary host one
        # host's signal released another's writes into a directory not yet there (CI: "No such
        # file or directory: .../2.orbax-checkpoint-tmp/meta.orbax-checkpoint-tmp/metadata").
        sync_dirs = ocp.AsyncOptions(create_directories_asynchronously=False)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=False, enable_async_checkpointing=True,
                                               multiprocessing_options=alone, async_options=sync_dirs)
        handlers = {"state": ocp.handlers.PyTreeCheckpointHandler(multiprocessing_options=alone,
                                                                  type_handler_registry=registry),
                    "meta": ocp.JsonCheckpointHandler(multiprocessing_options=alone)}
        self.manager = ocp.CheckpointManager(str(self.directory), options=options, item_handlers=handlers)

    def due(self, step: int) -> bool:
        return step % self.every == 0

    def save(self, step: int, params: Any, opt_state: Any, meta: dict, data_iter: Any) -> None:
        """Saves asynchronously; the data iterator's position (this process's streams) is taken now
        and kept in the step's JSON (grain's own handler waited for the directories while Orbax
        created them in the background; they are now made before the save, see __init__)."""
        position = data_iter.get_state().decode()
        self.manager.save(step, force=True, args=ocp.args.Composite(
            state=ocp.args.PyTreeSave({"params": params, "opt_state": opt_state}),
            meta=ocp.args.JsonSave({**meta, "layout": self.layout, "data_position": position})))

    def meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def usable_steps(self) -> tuple[list[int], str | None]:
        """The complete steps written by this run on this layout, and why the others are not."""
        usable, why = [], None
        for step in sorted(self.manager.all_steps()):
            try:
                theirs = self.meta(step).get("layout") or {}
            except (KeyError, FileNotFoundError, ValueError):
                # A kill during a save or during the deletion of an old step (max_to_keep) leaves a
                # step directory without all its items: never a step to resume from.
                why = why or f"left incomplete by an interrupted save or deletion (step {step})"
                continue
            differ = [f"{k} ({theirs.get(k)})" for k in self.layout if theirs.get(k) != self.layout[k]]
            if differ:
                why = f"written with another {', '.join(differ)}"
            else:
                usable.append(step)
        return usable, why

    def restore(self, step: int, params_target: Any, opt_state_target: Any, data_iter: Any):
        """(params, opt_state, meta) of `step`; the data iterator is moved to its saved position."""
        target = {"params": params_target, "opt_state": opt_state_target}
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.PyTreeRestore(target, restore_args=checkpoint_utils.construct_restore_args(target)),
            meta=ocp.args.JsonRestore()))
        data_iter.set_state(out["meta"]["data_position"])
        return out["state"]["params"], out["state"]["opt_state"], out["meta"]

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def common_step(steps: list[int]) -> int | None:
    """The newest step every process holds (each passes its own list)."""
    if jax.process_count() == 1:
        return max(steps, default=None)
    from jax.experimental import multihost_utils

    width = 16  # more than any keep count
    mine = np.full(width, -1, np.int64)
    mine[:len(steps[-width:])] = steps[-width:]
    every = np.asarray(multihost_utils.process_allgather(mine))
    shared = set.intersection(*(set(row[row >= 0].tolist()) for row in every))
    return max(shared, default=None)
