"""jaxcoder train: train (or resume) a model from a run config on the configured mesh.

--dry_run lowers and compiles one train step without allocating and prints per-device memory;
with --dry_run_devices=N it does so on N fake CPU devices (a 64-host mesh from a laptop).
Multi-host runs initialise from distributed.* or JAXCODER_COORDINATOR / JAXCODER_NUM_PROCESSES /
JAXCODER_PROCESS_ID (see launch/).
"""

from __future__ import annotations

from absl import flags

from jaxcoder.commands import common

DRY_RUN = flags.DEFINE_bool("dry_run", False, "Compile the train step and report memory; do not train.")
DRY_RUN_DEVICES = flags.DEFINE_integer("dry_run_devices", 0, "Fake CPU devices for --dry_run (0 = real ones).")


def _exit_on_sigterm(signum, frame):
    print("SIGTERM before the first step: nothing to save; exiting", flush=True)
    raise SystemExit(0)


def main(argv):
    del argv
    import signal

    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # until the run's own handler takes over
    run = common.require_config()
    if DRY_RUN.value or DRY_RUN_DEVICES.value:
        from jaxcoder.train.dry_run import GiB, dry_run

        report = dry_run(run)
        print(f"dry run of {run.preset or 'model'} at batch {run.train.batch_size} x seq_len "
              f"{run.train.seq_len} (grad_accum {run.train.grad_accum}, remat {run.model.remat}):")
        print(report.table())
        budget = 80 * GiB
        print(f"  fits in 80 GiB per device:      {'yes' if report.peak_bytes < budget else 'NO'}")
        return
    from jaxcoder.parallel import distributed

    d = run.distributed
    distributed.initialize(d.coordinator, d.num_processes, d.process_id, d.auto, d.local_devices)
    from jaxcoder.train.loop import train

    summary = train(run)
    hist = summary["history"]
    if hist and not summary["preempted"]:
        print(f"done: step {summary['steps']}, loss {hist[0]['loss']:.3f} -> {hist[-1]['loss']:.3f}; "
              f"checkpoints in {summary['checkpoint_dir']}")
