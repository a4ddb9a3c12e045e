"""Beam pipeline runs for `data prepare`: the runner and its options from `data.beam` (Beam's
in-process DirectRunner with one worker process per core by default; Dataflow, Flink or Spark by
name), and the `jaxcoder` counters of every run, summed."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time

from jaxcoder.data.config import BeamConfig


class Runner:
    """Runs pipelines one after another on the configured runner and sums their counters."""

    def __init__(self, beam_cfg: BeamConfig | None = None, workers: int = 0, progress: bool = False):
        import logging

        from apache_beam.options.pipeline_options import PipelineOptions

        # Beam narrates every bundle, in the runner and in each worker process; failures still
        # surface as the pipeline's exception.
        logging.getLogger("apache_beam").setLevel(logging.ERROR)
        beam_cfg = beam_cfg or BeamConfig()
        self.name, self.progress = beam_cfg.runner, progress
        self.local = beam_cfg.runner in ("DirectRunner", "PrismRunner")
        flags = [f"--runner={beam_cfg.runner}", "--default_sdk_harness_log_level=ERROR", *beam_cfg.options]
        direct = beam_cfg.runner == "DirectRunner"
        if direct and not any(f.startswith("--direct_num_workers") for f in beam_cfg.options):
            workers = workers or os.cpu_count() or 1
            flags += [f"--direct_num_workers={workers}", "--direct_running_mode=multi_processing"]
            self.name = f"DirectRunner ({workers} worker processes)"
        self.options = PipelineOptions(flags)
        self.counters: dict[str, int] = {}

    def pipeline(self, what: str, build) -> None:
        """Builds (`build(pipeline)`) and runs one pipeline to the end."""
        import apache_beam as beam
        from apache_beam.metrics.metric import MetricsFilter

        start = time.perf_counter()
        if self.progress:
            print(f"  {what} ...", flush=True)
        with (_private_tempdir() as scratch, _worker_stderr(scratch, self.local),
              beam.Pipeline(options=self.options) as p):
            build(p)
        for c in p.result.metrics().query(MetricsFilter().with_namespace("jaxcoder"))["counters"]:
            value = c.committed if c.committed is not None else c.attempted
            self.counters[c.key.metric.name] = self.counters.get(c.key.metric.name, 0) + int(value or 0)
        if self.progress:
            print(f"  {what}: done in {time.perf_counter() - start:.1f} s", flush=True)

    def counter(self, name: str) -> int:
        return self.counters.get(name, 0)


@contextlib.contextmanager
def _private_tempdir():
    """Points `tempfile` and TMPDIR (which worker processes inherit) at a directory removed after
    the run: Beam's local job service and stager make a temporary directory per job and never
    remove it, leaving empty directories in /tmp for every pipeline of every prepare."""
    saved_env, saved_dir = os.environ.get("TMPDIR"), tempfile.tempdir
    with tempfile.TemporaryDirectory(prefix="jaxcoder-beam-") as scratch:
        os.environ["TMPDIR"], tempfile.tempdir = scratch, scratch
        try:
            yield scratch
        finally:
            tempfile.tempdir = saved_dir
            if saved_env is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = saved_env


@contextlib.contextmanager
def _worker_stderr(scratch: str, local: bool):
    """Sends what local worker processes write to the stderr they inherit into a file, shown only
    when the pipeline fails: each worker logs its start-up (Beam's own lines, before the worker
    reads the log level option), four lines per pipeline that say nothing to a user."""
    if not local:
        yield
        return
    path = os.path.join(scratch, "workers.log")
    sys.stderr.flush()
    saved = os.dup(2)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    try:
        yield
    except BaseException:
        _restore(saved)
        with open(path, errors="replace") as f:
            tail = f.read()[-4000:]
        if tail.strip():
            print(f"Beam worker output (last lines):\n{tail}", file=sys.stderr, flush=True)
        raise
    else:
        _restore(saved)


def _restore(saved: int) -> None:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
