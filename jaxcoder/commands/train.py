"""jaxcoder train: train (or resume) a model from a run config on the configured mesh.

--dry_run lowers and compiles one train step without allocating and prints per-device memory;
with --dry_run_topology=v5p:4x4x4 it compiles for that TPU slice with the TPU compiler (exact
memory; needs the `tpu` extra, no TPU); with --dry_run_devices=N on N fake CPU devices (the XLA
CPU compiler: an estimate, for planning GPU runs).
Multi-host runs initialise from distributed.* or JAXCODER_COORDINATOR / JAXCODER_NUM_PROCESSES /
JAXCODER_PROCESS_ID (see launch/).
"""

from __future__ import annotations

from absl import flags

from jaxcoder.commands import common

DRY_RUN = flags.DEFINE_bool("dry_run", False, "Compile the train step and report memory; do not train.")
DRY_RUN_DEVICES = flags.DEFINE_integer("dry_run_devices", 0, "Fake CPU devices for --dry_run (0 = real ones).")
DRY_RUN_TOPOLOGY = flags.DEFINE_string(
    "dry_run_topology", "", "Compile the train step for this TPU slice (e.g. v5p:4x4x4, v5e:16x16, v6e:8x8) "
    "with the TPU compiler and report its memory; needs libtpu (the tpu extra), not a TPU.")
DRY_RUN_SLICES = flags.DEFINE_integer("dry_run_slices", 1, "Slices of --dry_run_topology (data parallel across them).")


def _exit_on_sigterm(signum, frame):
    print("SIGTERM before the first step: nothing to save; exiting", flush=True)
    raise SystemExit(0)


def main(argv):
    del argv
    import signal

    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # until the run's own handler takes over
    run = common.require_config()
    if DRY_RUN.value or DRY_RUN_DEVICES.value or DRY_RUN_TOPOLOGY.value:
        from jaxcoder.train.dry_run import dry_run

        devices = None
        if DRY_RUN_TOPOLOGY.value:
            from jaxcoder.parallel.topology import tpu_devices

            devices = tpu_devices(DRY_RUN_TOPOLOGY.value, DRY_RUN_SLICES.value)
        report = dry_run(run, devices)
        print(f"dry run of {run.preset or 'model'} at batch {run.train.batch_size} x seq_len "
              f"{run.train.seq_len} (grad_accum {run.train.grad_accum}, remat {run.model.remat}):")
        print(report.table())
        return
    from jaxcoder.parallel import distributed

    d = run.distributed
    distributed.initialize(d.coordinator, d.num_processes, d.process_id, d.auto, d.local_devices)
    from jaxcoder.train.loop import train

    summary = train(run)
    hist = summary["history"]
    if hist and not summary["preempted"]:
        g = summary["goodput"]  # process 0 keeps the accounts
        good = (f"; goodput {g['goodput']:.1%} of {g['wall']:.0f} s over {g['attempts']} attempt(s) "
                "(`jaxcoder report` shows where the rest went)") if g else ""
        print(f"done: step {summary['steps']}, loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}; "
              f"checkpoints in {summary['checkpoint_dir']}{good}")
