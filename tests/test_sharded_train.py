"""Sharded training on 8 fake CPU devices: mesh-independent losses (context parallelism included), FSDP
memory scaling, restores onto other meshes, gradient accumulation, exact resume after SIGKILL, clean
SIGTERM, and a 2-process run (gloo collectives) that equals the 1-process run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import cli_overrides, free_port, tiny_train_config

from jaxcoder.config import resolve
from jaxcoder.parallel.mesh import MeshError
from jaxcoder.train.loop import train

ROOT = Path(__file__).parent.parent
needs8 = pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices")
MESHES = {"single": dict(num_devices=1, data=1), "data8": dict(data=8),
          "data2_fsdp4": dict(data=2, fsdp=4), "data2_fsdp2_tensor2": dict(data=2, fsdp=2, tensor=2),
          "fsdp2_context4": dict(data=1, fsdp=2, context=4)}


def losses(history):
    return np.asarray([h["loss"] for h in history])


@pytest.fixture(scope="module")
def reference(prepared_data, tmp_path_factory):
    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path_factory.mktemp("ref"))
    cfg.mesh.update(**MESHES["single"])
    return losses(train(resolve(cfg))["history"])


@needs8
@pytest.mark.parametrize("mesh", ["data8", "data2_fsdp4", "data2_fsdp2_tensor2", "fsdp2_context4"])
def test_losses_do_not_depend_on_the_mesh(prepared_data, tmp_path, reference, mesh):
    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path)
    cfg.mesh.update(**MESHES[mesh])
    got = losses(train(resolve(cfg))["history"])
    assert len(got) == 5
    np.testing.assert_allclose(got, reference, rtol=1e-5, atol=1e-5)


@needs8
def test_gradient_accumulation_matches_the_full_batch(prepared_data, tmp_path, reference):
    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path, grad_accum=2)
    cfg.mesh.update(data=2, fsdp=2, tensor=2)
    np.testing.assert_allclose(losses(train(resolve(cfg))["history"]), reference, rtol=1e-5, atol=1e-5)


@needs8
def test_fsdp_divides_state_memory(prepared_data):
    from jaxcoder.train.dry_run import dry_run

    reports = {}
    for name, mesh in (("dp", dict(data=8)), ("fsdp", dict(data=1, fsdp=8))):
        cfg = tiny_train_config(prepared_data[0].out_dir, "unused")
        cfg.model.update(d_model=256, d_ff=512, n_heads=8, n_kv_heads=4, head_dim=32)
        cfg.mesh.update(**mesh)
        reports[name] = dry_run(resolve(cfg))
    ratio = reports["dp"].state_bytes_per_device / reports["fsdp"].state_bytes_per_device
    assert 6.5 < ratio <= 8.0, ratio  # norms and scalars stay replicated
    compiled = reports["dp"].argument_bytes / reports["fsdp"].argument_bytes
    assert 5.0 < compiled <= 8.0, compiled


@needs8
def test_checkpoint_restores_onto_a_different_mesh(prepared_data, tmp_path, reference):
    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path, steps=3, checkpoint_every=3)
    cfg.mesh.update(data=8)
    train(resolve(cfg))
    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path, steps=5)
    cfg.mesh.update(data=2, fsdp=2, tensor=2)
    resumed = train(resolve(cfg))["history"]
    assert [h["step"] for h in resumed] == [4, 5]
    np.testing.assert_allclose(losses(resumed), reference[3:], rtol=1e-5, atol=1e-5)


@needs8
@pytest.mark.parametrize("change,message", [
    (dict(data=3), "multiply to 3"),
    (dict(data=2, tensor=4), r"model.n_kv_heads \(2\) is not divisible by mesh.tensor \(4\)"),
    (dict(data=-1, fsdp=1), r"train.batch_size \(4\) is not divisible by the data-parallel degree"),
])
def test_bad_mesh_configs_name_the_field(prepared_data, tmp_path, change, message):
    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path, batch_size=4)
    cfg.mesh.update(**change)
    with pytest.raises(MeshError, match=message):
        train(resolve(cfg))


def test_grad_accum_must_divide_the_batch(prepared_data, tmp_path):
    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path, grad_accum=3)
    with pytest.raises(ValueError, match=r"train.batch_size \(8\) is not divisible by train.grad_accum \(3\)"):
        train(resolve(cfg))

# ------------------------------------------------------------- subprocesses


def _env(devices: int, **extra) -> dict:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **extra}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return env


def _metrics(workdir: Path) -> dict[int, float]:
    out = {}
    path = workdir / "metrics.jsonl"
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                out.setdefault(r["step"], []).append(r["loss"])
    return out


def _steps(directory: Path) -> list[int]:
    """The committed checkpoint steps in an Orbax directory (in-progress ones carry a suffix)."""
    return sorted(int(p.name) for p in directory.glob("*") if p.name.isdigit()) if directory.exists() else []


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_identical(prepared_data, tmp_path):
    """A run killed just after a local-tier (emergency) save resumes from that save, ahead of the
    persistent tier, and its losses are bitwise those of an uninterrupted run; the goodput
    accounts of the two attempts add up to their wall time, with the steps the killed attempt ran
    past its last checkpoint counted as lost."""
    from jaxcoder.train.goodput import read_attempts, summarize

    data = prepared_data[0].out_dir
    cmd = [sys.executable, "-m", "jaxcoder", "train"]
    full = tmp_path / "full"
    subprocess.run(cmd + cli_overrides(data, str(full), 16, **{"train.checkpoint_every": 8}), cwd=ROOT,
                   env=_env(2), check=True, capture_output=True, timeout=600)
    killed, local = tmp_path / "killed", tmp_path / "local"
    flags = cli_overrides(data, str(killed), 16, **{"train.checkpoint_every": 8, "train.local_checkpoint_every": 3,
                                                    "train.local_checkpoint_dir": str(local)})
    began = time.time()
    proc = subprocess.Popen(cmd + flags, cwd=ROOT, env=_env(2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300

    def tiers_and_heartbeat() -> tuple[list[int], list[int], int]:
        try:
            beat = json.loads((killed / "goodput" / "attempt_0.json").read_text())["step"]
        except (OSError, ValueError, KeyError):
            beat = 0
        return _steps(local / "process_0"), _steps(killed / "checkpoints"), beat

    # The kill must come after a local save newer than the persistent tier's newest, and after the
    # goodput heartbeat recorded a step past that save (the time to be counted as lost): the run is
    # frozen while that is read, so the kill finds it as it was read.
    while time.time() < deadline and proc.poll() is None:
        proc.send_signal(signal.SIGSTOP)
        mine, persistent, beat = tiers_and_heartbeat()
        if mine and max(mine) >= 9 and beat > max(mine) > max(persistent, default=0):
            break
        proc.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    walls = [time.time() - began]
    reached, tiers = max(_metrics(killed)), tiers_and_heartbeat()[:2]
    assert 9 <= reached < 16 and max(tiers[0]) > max(tiers[1], default=0), (reached, tiers)
    # The resumed attempt's accounts end when it reports them ("done: ..."), before the
    # interpreter's own teardown.
    began = time.time()
    proc = subprocess.Popen(cmd + flags, cwd=ROOT, env=_env(2), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("done: "):
            walls.append(time.time() - began)
    assert proc.wait(timeout=600) == 0 and len(walls) == 2
    assert f"resumed from step {max(tiers[0])} (the local tier, {local};" in "".join(lines)
    ref, got = _metrics(full), _metrics(killed)
    assert sorted(got) == list(range(1, 17))
    for step, values in got.items():  # steps logged twice (before the kill and after) agree too
        assert all(v == ref[step][0] for v in values), (step, values, ref[step])
    attempts = read_attempts(killed)
    g = summarize(attempts)
    assert attempts[0]["start_step"] == 0 and attempts[1]["start_step"] == max(tiers[0])
    assert g["wall"] == pytest.approx(sum(walls), abs=1.0), (g, walls)
    assert g["seconds"]["lost"] > 0 and g["seconds"]["checkpoint_restore"] > 0
    assert sum(g["seconds"].values()) == pytest.approx(g["wall"])


@pytest.mark.slow
def test_sigterm_saves_and_exits_cleanly(prepared_data, tmp_path):
    work = tmp_path / "term"
    proc = subprocess.Popen([sys.executable, "-m", "jaxcoder", "train",
                             *cli_overrides(prepared_data[0].out_dir, str(work), 400)],
                            cwd=ROOT, env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while max(_metrics(work), default=0) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    saved = int(out.split("SIGTERM: saved step ")[1].split(";")[0])
    assert 3 <= saved < 400 and (work / "checkpoints" / str(saved) / "params").exists()


def test_sigterm_before_the_first_step_exits_cleanly(prepared_data, tmp_path):
    from jaxcoder.train import loop

    with pytest.raises(SystemExit) as stopped, loop._Preemption():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert stopped.value.code == 0
    # The whole command: SIGTERM while it sets up (after it printed the mesh, before any step ends).
    work = tmp_path / "early"
    proc = subprocess.Popen([sys.executable, "-m", "jaxcoder", "train",
                             *cli_overrides(prepared_data[0].out_dir, str(work), 400)],
                            cwd=ROOT, env=_env(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("mesh:"):
            proc.send_signal(signal.SIGTERM)
            break
    out = "".join(lines) + proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out
    assert "SIGTERM before the first step" in out or "SIGTERM: saved step 1;" in out, out


@pytest.mark.slow
def test_two_process_run_equals_one_process_run(prepared_data, tmp_path):
    """...and each process keeps its own local tier, from which the two resume together."""
    import shutil

    data = prepared_data[0].out_dir
    common = {"data.streams": 2, "mesh.data": 4}
    one = tmp_path / "one"
    subprocess.run([sys.executable, "-m", "jaxcoder", "train",
                    *cli_overrides(data, str(one), 4, **common, **{"distributed.local_devices": 4})],
                   cwd=ROOT, env=_env(1), check=True, capture_output=True, timeout=600)
    two, local = tmp_path / "two", tmp_path / "local"

    def run_two() -> list[str]:
        port = free_port()
        flags = cli_overrides(data, str(two), 4, **common, **{"distributed.local_devices": 2,
                                                              "train.local_checkpoint_dir": str(local),
                                                              "train.local_checkpoint_every": 2})
        procs = [subprocess.Popen([sys.executable, "-m", "jaxcoder", "train", *flags], cwd=ROOT,
                                  env=_env(1, JAXCODER_COORDINATOR=f"127.0.0.1:{port}", JAXCODER_NUM_PROCESSES="2",
                                           JAXCODER_PROCESS_ID=str(i)),
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        # Each process's own last lines, untruncated: a failure here is read from them.
        tails = [f"--- process {i} (exit {p.returncode}) ---\n{o[-4000:]}" for i, (p, o) in
                 enumerate(zip(procs, outs, strict=True))]
        assert all(p.returncode == 0 for p in procs), "\n".join(tails)
        return outs

    outs = run_two()
    assert "over 4 devices (2 processes)" in outs[0]
    assert "hybrid mesh across processes: data spans 2" in outs[0]  # ICI within a node, DCN across
    ref, got = _metrics(one), _metrics(two)
    assert sorted(got) == [1, 2, 3, 4]
    np.testing.assert_allclose([got[s][0] for s in range(1, 5)], [ref[s][0] for s in range(1, 5)], rtol=1e-6)
    held = [[json.loads(line) for line in (w / "metrics.jsonl").read_text().splitlines()][-1] for w in (one, two)]
    assert held[0]["heldout_loss"] > 0  # every process reads the same held-out rows and feeds its own
    np.testing.assert_allclose(held[1]["heldout_loss"], held[0]["heldout_loss"], rtol=1e-6)
    np.testing.assert_allclose(held[1]["heldout_bits_per_byte"], held[0]["heldout_bits_per_byte"], rtol=1e-6)
    # Each process wrote the shards it holds to its own local directory (no shared storage).
    for i in range(2):
        assert _steps(local / f"process_{i}") == [2]
        assert list((local / f"process_{i}" / "2" / "state").glob(f"ocdbt.process_{i}/d/*"))
    shutil.rmtree(two / "checkpoints" / "4")  # as if killed before the persistent save
    outs = run_two()
    assert "resumed from step 2 (the local tier" in outs[0]
    again = _metrics(two)
    assert [len(again[s]) for s in range(1, 5)] == [1, 1, 2, 2]
    assert again[3][1] == got[3][0] and again[4][1] == got[4][0]  # bitwise


@pytest.mark.slow
def test_launch_local_script_runs_two_processes(prepared_data, tmp_path):
    work = tmp_path / "launched"
    args = cli_overrides(prepared_data[0].out_dir, str(work), 2, **{"data.streams": 2, "mesh.data": 2})
    env = _env(1, JAXCODER=str(Path(sys.executable).parent / "jaxcoder"), LOCAL_DEVICES="1")
    proc = subprocess.run(["bash", "launch/local.sh", "2", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "[p0]" in proc.stdout and "[p1]" in proc.stdout and sorted(_metrics(work)) == [1, 2]


def test_launch_local_script_stops_every_process_when_one_fails(tmp_path):
    """Process 1 fails at once; process 0, waiting for it at start-up, is stopped instead of
    waiting out the coordinator's timeout, and the script exits with process 1's status."""
    fails = tmp_path / "jaxcoder"
    fails.write_text(f'#!/usr/bin/env bash\n[[ $JAXCODER_PROCESS_ID == 1 ]] && exit 7\n'
                     f'exec {Path(sys.executable).parent / "jaxcoder"} "$@"\n')
    fails.chmod(0o755)
    began = time.time()
    proc = subprocess.run(["bash", "launch/local.sh", "2", "--config=configs/deepseek_coder.py:tiny",
                           f"--config.workdir={tmp_path / 'run'}"], cwd=ROOT, env=_env(1, JAXCODER=str(fails)),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 7, proc.stdout + proc.stderr
    assert "exited with status 7; stopping the others" in proc.stderr
    assert time.time() - began < 120  # jax.distributed's own wait for a missing peer is 5 minutes


@pytest.mark.slow
@pytest.mark.parametrize("config", ["deepseek_coder.py:6.7b", "starcoder2.py:7b"])
def test_dry_run_fits_published_context_on_64_device_fsdp(config):
    proc = subprocess.run([sys.executable, "-m", "jaxcoder", "train", f"--config=configs/{config}",
                           "--dry_run_devices=64", "--config.mesh.data=1", "--config.mesh.fsdp=-1",
                           "--config.train.batch_size=64", "--config.train.seq_len=16384"],
                          cwd=ROOT, env=_env(1), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "64 {'data': 1, 'stage': 1, 'fsdp': 64, 'context': 1, 'tensor': 1}" in out
    peak = float(out.split("peak / device")[1].split("GiB")[0])
    state = float(out.split("params + optimizer / device")[1].split("GiB")[0])
    assert peak < 80 and "fits in 80 GiB per device      yes" in out
    assert "XLA CPU compiler: temporaries are an estimate" in out
    assert 1.0 < state < 1.4  # ~7B params x 12 bytes / 64 devices
