"""Operating long runs: non-finite steps skipped and never checkpointed, loss spikes reported with
their data position, profiler traces of the configured steps, goodput accounts."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import tiny_train_config

from jaxcoder.config import resolve
from jaxcoder.train import step as step_lib
from jaxcoder.train.guard import Guard, NonFiniteError


def _poison(monkeypatch, steps: set[int]) -> None:
    """The batches of these steps (1-based) make the loss NaN: their loss_mask is marked negative on
    the host, and the traced loss turns NaN when it sees the mark (the data stays integers)."""
    from jaxcoder.data import pipeline

    real_next, real_sums, calls = pipeline.StreamSet.__next__, step_lib.loss_sums, [0]

    def marked_next(self):
        batch = real_next(self)
        calls[0] += 1
        if calls[0] in steps:
            batch = {**batch, "loss_mask": -np.abs(batch["loss_mask"]) - 1}
        return batch

    def nan_sums(cfg, params, batch, z_loss):
        mark = jnp.any(batch["loss_mask"] < 0)
        sums = real_sums(cfg, params, {**batch, "loss_mask": jnp.maximum(batch["loss_mask"], 0)}, z_loss)
        return {**sums, "nll": jnp.where(mark, jnp.nan, sums["nll"])}

    monkeypatch.setattr(pipeline.StreamSet, "__next__", marked_next)
    monkeypatch.setattr(step_lib, "loss_sums", nan_sums)


@pytest.fixture(scope="module")
def poisoned_run(prepared_data, tmp_path_factory):
    """Six steps, the third with a NaN loss, steps 2-3 traced by the profiler, checkpoints at steps 3
    and 6 and local-tier ones at 2 and 4."""
    from jaxcoder.train.loop import train

    work = tmp_path_factory.mktemp("poisoned")
    with pytest.MonkeyPatch.context() as mp:
        _poison(mp, {3})
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("MLFLOW_TRACKING_URI", f"file:{work}/mlruns")
        mp.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for a database otherwise
        cfg = tiny_train_config(prepared_data[0].out_dir, work, steps=6, checkpoint_every=3,
                                profile_start=2, profile_steps=2, writers="tensorboard,wandb,mlflow",
                                local_checkpoint_dir=str(work / "local"), local_checkpoint_every=2)
        return cfg, train(resolve(cfg))


def test_a_nan_step_is_skipped_and_the_next_checkpoint_is_finite(poisoned_run):
    from jaxcoder.train.checkpoint import load_params

    cfg, summary = poisoned_run
    history = summary["history"]
    assert summary["skipped_steps"] == 1 and [h["skipped_steps"] for h in history] == [0, 0, 1, 1, 1, 1]
    assert np.isnan(history[2]["loss"]) and all(np.isfinite(h["loss"]) for i, h in enumerate(history) if i != 2)
    at = {s: load_params(f"{cfg.workdir}/checkpoints", s)[1] for s in (3, 6)}
    for s, params in at.items():
        assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(params)), s
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(at[3]), jax.tree.leaves(at[6]), strict=True))


def test_the_local_tier_serves_only_the_run_and_mesh_that_wrote_it(poisoned_run, tmp_path):
    from jaxcoder.fields import ConfigError
    from jaxcoder.train.config import TrainConfig
    from jaxcoder.train.emergency import LocalTier
    from jaxcoder.train.loop import train

    cfg, _ = poisoned_run
    local = Path(cfg.train.local_checkpoint_dir)
    mine = json.loads((local / "process_0" / "4" / "meta" / "metadata").read_text())["layout"]
    assert sorted(p.name for p in (local / "process_0").iterdir()) == ["2", "4"]
    assert LocalTier(local, 2, mine).usable_steps() == ([2, 4], None)
    other_mesh = {**mine, "mesh": {**mine["mesh"], "data": 4, "fsdp": 2}}
    assert LocalTier(local, 2, other_mesh).usable_steps() == (
        [], "written with another mesh ({'data': 8, 'stage': 1, 'fsdp': 1, 'context': 1, 'tensor': 1})")
    # Another run pointed at the same local directory, with nothing of its own to resume: refused.
    other = tiny_train_config(cfg.data.prepared_dir, tmp_path / "other", local_checkpoint_dir=str(local),
                              local_checkpoint_every=2)
    with pytest.raises(ValueError, match=r"holds checkpoints written with another workdir \(.*poisoned.*\), and this "
                                         r"run has no persistent one to start from"):
        train(resolve(other))
    with pytest.raises(ConfigError, match="train.local_checkpoint_dir='/x' and train.local_checkpoint_every=0 go "
                                          "together"):
        TrainConfig(local_checkpoint_dir="/x")


def test_a_step_whose_deletion_was_killed_is_not_resumed_from(poisoned_run, tmp_path):
    """A kill while Orbax deletes an old local step (max_to_keep) leaves its directory without its
    metadata: the tier skips it (it made resuming fail with 'Item "meta" was not found')."""
    import shutil

    from jaxcoder.train.emergency import LocalTier

    cfg, _ = poisoned_run
    local = tmp_path / "local"
    shutil.copytree(cfg.train.local_checkpoint_dir, local)
    half_deleted = local / "process_0" / "2"
    mine = json.loads((local / "process_0" / "4" / "meta" / "metadata").read_text())["layout"]
    for item in half_deleted.iterdir():
        if item.name != "state":  # what rmtree had removed when the kill came
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    assert LocalTier(local, 2, mine).usable_steps() == (
        [4], "left incomplete by an interrupted save or deletion (step 2)")


_TWO_TIERS = """
import asyncio, sys
import jax
import numpy as np
me, port, root = int(sys.argv[1]), sys.argv[2], sys.argv[3]
jax.distributed.initialize(f"127.0.0.1:{port}", 2, me)
from orbax.checkpoint._src.path import atomicity
create = atomicity._create_paths

async def late(*args, **kwargs):  # process 0's directories come last, as under load
    if me == 0:
        await asyncio.sleep(3)
    return await create(*args, **kwargs)

atomicity._create_paths = late
from jaxcoder.train.emergency import LocalTier

class Position:
    def get_state(self):
        return b"{}"

mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
x = jax.make_array_from_callback((4,), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data")),
                                 lambda i: np.arange(4.0)[i])
tier = LocalTier(root, 1, {"process": me})
for step in (1, 2):
    tier.save(step, {"w": x}, {"m": x}, {"step": step}, Position())
tier.close()
print("steps", sorted(tier.manager.all_steps()))
"""


def test_each_process_writes_its_local_tier_after_its_own_directories_exist(tmp_path):
    """Two processes save their local tiers while process 0's directories are created late: each
    waits for its own (Orbax's background creation signals through keys shared by every process,
    and one host's signal released another's writes: 'No such file or directory' in CI)."""
    import os
    import subprocess
    import sys

    from helpers import free_port

    port = free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "--xla_force_host_platform_device_count=1"}
    procs = [subprocess.Popen([sys.executable, "-c", _TWO_TIERS, str(i), str(port), str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    for i, (p, out) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == 0 and "steps [1, 2]" in out, f"process {i}:\n{out[-3000:]}"
        assert (tmp_path / f"process_{i}" / "2" / "meta" / "metadata").exists()


def test_the_skipped_step_leaves_params_and_optimizer_state_unchanged(prepared_data):
    from jaxcoder.model import functional as F
    from jaxcoder.model.presets import preset
    from jaxcoder.train.optimizer import OptimizerConfig, make_optimizer

    cfg = preset("deepseek-coder-tiny", dtype="float32")
    params = F.init_params(cfg, 0)
    optimizer = make_optimizer(OptimizerConfig(lr=1e-3, warmup_steps=1, total_steps=10))
    opt_state = optimizer.init(params)
    toks = np.random.default_rng(0).integers(0, cfg.vocab_size, (2, 9))
    batch = {"inputs": jnp.asarray(toks[:, :-1]), "targets": jnp.asarray(toks[:, 1:]),
             "segment_ids": jnp.ones((2, 8), jnp.int32), "positions": jnp.broadcast_to(jnp.arange(8), (2, 8)),
             "loss_mask": jnp.ones((2, 8), jnp.int32)}
    with pytest.MonkeyPatch.context() as mp:
        _poison(mp, set())
        step = jax.jit(step_lib.make_train_step(cfg, optimizer))
        bad = {**batch, "loss_mask": -batch["loss_mask"] - 1}
        params, opt_state, _ = step(params, opt_state, batch)  # past warm-up's zero learning rate
        p1, o1, m1 = step(params, opt_state, bad)
        p2, o2, m2 = step(params, opt_state, batch)
    assert float(m1["skipped"]) == 1.0 and float(m2["skipped"]) == 0.0
    for a, b in zip(jax.tree.leaves((params, opt_state)), jax.tree.leaves((p1, o1)), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(p2), strict=True))


def test_too_many_nan_steps_in_a_row_stop_the_run_naming_the_step(prepared_data, tmp_path, monkeypatch):
    from jaxcoder.train.loop import train

    _poison(monkeypatch, {2, 3, 4})
    cfg = tiny_train_config(prepared_data[0].out_dir, tmp_path, steps=6, max_skipped_steps=2, checkpoint_every=1)
    with pytest.raises(NonFiniteError, match=r"step 4: .* not finite for 3 steps in a row "
                                             r"\(train.max_skipped_steps=2\)"):
        train(resolve(cfg))
    # Steps 1 (finite) and 2, 3 (skipped: the state of step 1) were saved; nothing after.
    saved = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert max(saved) <= 3


def test_a_loss_spike_is_reported_with_its_data_position():
    guard = Guard(max_skipped=2, spike_factor=2.0, spike_window=20)
    for i in range(12):
        assert guard.check(i + 1, {"loss": 3.0 - 0.01 * i, "skipped": 0.0, "grad_norm": 1.0}, b'{"0": 1}') is None
    warning = guard.check(13, {"loss": 9.0, "skipped": 0.0, "grad_norm": 1.0}, b'{"0": {"next_index": 96}}')
    assert warning.startswith("step 13: loss spike 9 > 2 x running median")
    assert '{"0":{"next_index":96}}' in warning and guard.warnings[0]["step"] == 13
    assert guard.check(14, {"loss": 2.9, "skipped": 0.0, "grad_norm": 1.0}, None) is None


def test_the_profile_holds_a_trace_of_the_configured_steps(poisoned_run):
    cfg, _ = poisoned_run
    traces = list((Path(cfg.workdir) / "profile").glob("plugins/profile/*/*.xplane.pb"))
    assert len(traces) == 1, traces
    raw = traces[0].read_bytes()
    # Step markers for the two traced steps (loop indices 1 and 2), the loop's phases and the
    # train step's named scopes are all in the trace.
    for name in (b"train", b"data", b"forward_backward", b"optimizer"):
        assert name in raw, name


def test_goodput_phases_add_up_to_the_wall_time(poisoned_run):
    from jaxcoder.train.goodput import PHASES, read_attempts, summarize

    cfg, summary = poisoned_run
    attempts = read_attempts(cfg.workdir)
    assert len(attempts) == 1 and attempts[0]["step"] == 6
    assert set(attempts[0]["saves"]) == {"2", "3", "4", "6"}  # both tiers
    g = summarize(attempts)
    assert g["seconds"]["lost"] == 0 and g["seconds"]["step"] > 0 and g["seconds"]["compile"] > 0
    assert sum(g["seconds"][p] for p in PHASES) == pytest.approx(g["wall"])
    assert g["goodput"] + sum(v for k, v in g.items() if k.startswith("badput_")) == pytest.approx(1.0)
    last = json.loads(Path(cfg.workdir, "metrics.jsonl").read_text().splitlines()[-1])
    assert 0 < last["goodput"] < 1 and "badput_compile" in last


def _tensorboard_scalars(directory: Path) -> dict[str, dict[int, float]]:
    """Scalars of tensorboardX event files (TFRecord framing: length, its CRC, data, its CRC)."""
    from tensorboardX.proto.event_pb2 import Event

    out: dict[str, dict[int, float]] = {}
    for path in directory.glob("events.out.tfevents.*"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 16 + length
            for v in event.summary.value:
                out.setdefault(v.tag, {})[event.step] = v.simple_value
    return out


def _wandb_offline_scalars(workdir: Path) -> dict[str, dict[int, float]]:
    """History of a W&B offline run: its .wandb file is a LevelDB-style log (7-byte headers:
    CRC, length, type; 32 KiB blocks) of protobuf Records."""
    from wandb.proto import wandb_internal_pb2 as pb

    (path,) = workdir.glob("wandb/offline-run-*/run-*.wandb")
    data, pos, block, pending, out = path.read_bytes(), 7, 32768, b"", {}
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = pb.Record.FromString(pending)
            if record.WhichOneof("record_type") == "history":
                items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
                for k, v in items.items():
                    if k.startswith("train/"):
                        out.setdefault(k, {})[items["_step"]] = v
    return out


def _mlflow_scalars(workdir: Path) -> dict[str, dict[int, float]]:
    from mlflow.tracking import MlflowClient

    run = json.loads((workdir / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=run["tracking_uri"])
    keys = client.get_run(run["run_id"]).data.metrics
    return {k: {m.step: m.value for m in client.get_metric_history(run["run_id"], k)} for k in keys}


def test_wandb_offline_and_mlflow_receive_the_same_scalars_as_tensorboard(poisoned_run, monkeypatch):
    cfg, _ = poisoned_run
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    work = Path(cfg.workdir)
    tb = _tensorboard_scalars(work / "tensorboard")
    assert {"train/loss", "train/grad_norm", "train/lr", "train/goodput", "train/skipped_steps"} <= set(tb)
    assert sorted(tb["train/loss"]) == [1, 2, 3, 4, 5, 6] and np.isnan(tb["train/loss"][3])
    for name, got in (("wandb", _wandb_offline_scalars(work)), ("mlflow", _mlflow_scalars(work))):
        assert set(got) == set(tb), (name, set(got) ^ set(tb))
        for key, series in tb.items():
            assert sorted(got[key]) == sorted(series), (name, key)
            # TensorBoard keeps float32; the others the float64 the loop logged.
            np.testing.assert_allclose([got[key][s] for s in sorted(series)], [series[s] for s in sorted(series)],
                                       rtol=1e-6, err_msg=f"{name} {key}")
