"""The training run: mesh, sharded state, data, checkpoints and metrics, from one run config.

Resuming is automatic: the latest checkpoint in `<workdir>/checkpoints` is restored onto the
current mesh (whatever mesh wrote it), the data iterator continues where it stopped, and the loss
sequence is bitwise that of an uninterrupted run on the same mesh. SIGTERM (preemption) saves a
checkpoint and exits cleanly; a SIGKILL loses at most the steps since the last committed one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import signal
import time
from pathlib import Path

import jax
import ml_collections
import numpy as np
import optax
from jax.sharding import Mesh
from tqdm import tqdm

from jaxcoder import config as run_config
from jaxcoder.data import pipeline, shards
from jaxcoder.data.tokenizer import load_tokenizer
from jaxcoder.eval import perplexity
from jaxcoder.model.config import ModelConfig, human_count
from jaxcoder.parallel.mesh import MeshError, check_model_fits, make_mesh, resolve_axis_sizes
from jaxcoder.parallel.pipeline import PipelineConfig, pipelining
from jaxcoder.parallel.rules import sharding_rules
from jaxcoder.train import sharding as shard_lib
from jaxcoder.train.checkpoint import TOKENIZER_DIR, Checkpointer, checkpoint_tokenizer, store_tokenizer
from jaxcoder.train.metrics import MetricWriter, device_peak_tflops, mfu
from jaxcoder.train.optimizer import OptimizerConfig, learning_rate, make_optimizer
from jaxcoder.train.step import make_train_step


class _Preemption:
    """SIGTERM handling for a whole run. Before the first step (set-up, restore, data) there is
    nothing new to save, so SIGTERM exits cleanly (status 0) at once; once `start()` was called it
    becomes a flag the loop checks after every step (then saves and exits 0)."""

    def __init__(self):
        self.requested = False
        self.started = False
        self._previous = None

    def start(self) -> None:
        self.started = True

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread (e.g. inside some test runners)
            self._previous = None
        return self

    def _handle(self, signum, frame):
        if not self.started:
            print("SIGTERM before the first step: nothing to save; exiting", flush=True)
            raise SystemExit(0)
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _init_from(directory: str, mcfg: ModelConfig, optimizer, sh, tokenizer_sha256: str, data_dir: str):
    """Parameters of another checkpoint (e.g. an imported Hugging Face model) as the starting point
    of this run, restored straight onto this run's shardings; the model configs must agree."""
    from jaxcoder.train.checkpoint import read_meta

    step, meta = read_meta(directory)
    theirs = ModelConfig.from_dict(meta["model"]).to_dict()
    ours = mcfg.to_dict()
    # Execution choices may differ; anything that changes the function or the shapes may not.
    free = {"dtype", "param_dtype", "remat", "scan_layers", "attention_impl", "max_seq_len"}
    differ = sorted(k for k in ours if k not in free and ours.get(k) != theirs.get(k))
    if differ:
        raise ValueError(f"train.init_from={directory}: model fields differ from the checkpoint's: " + ", ".join(
            f"model.{k}={ours.get(k)!r} (checkpoint: {theirs.get(k)!r})" for k in differ))
    theirs_tok = checkpoint_tokenizer(directory, meta)
    theirs_sha = theirs_tok.sha256() if theirs_tok else meta.get("tokenizer_sha256")
    if theirs_sha not in (None, tokenizer_sha256):
        raise ValueError(f"train.init_from={directory} was trained with its own tokenizer, but {data_dir} was "
                         f"tokenized with another; prepare the data with its tokenizer: jaxcoder data prepare "
                         f"--config.tokenizer.path={directory} --config.data.prepared_dir=...")
    params_t, _ = shard_lib.abstract_state(mcfg, optimizer, sh)
    _, params, _, _ = Checkpointer(directory, read_only=True).restore(step, params_target=params_t)
    opt_state = jax.jit(optimizer.init, out_shardings=sh.opt_state)(params)
    return params, opt_state


def setup(cfg: ml_collections.ConfigDict) -> Setup:
    """Mesh, model/optimizer configs and shardings (no allocation)."""
    mcfg = run_config.model_config(cfg)
    ocfg = run_config.optimizer_config(cfg)
    if cfg.train.seq_len > mcfg.max_seq_len:
        raise ValueError(f"train.seq_len ({cfg.train.seq_len}) exceeds model.max_seq_len ({mcfg.max_seq_len})")
    if cfg.train.batch_size % cfg.train.grad_accum:
        raise ValueError(f"train.batch_size ({cfg.train.batch_size}) is not divisible by train.grad_accum "
                         f"({cfg.train.grad_accum})")
    devices = jax.devices()[: cfg.mesh.num_devices] if cfg.mesh.num_devices else jax.devices()
    sizes = resolve_axis_sizes({k: v for k, v in cfg.mesh.items() if k not in ("rules", "num_devices")},
                               len(devices))
    check_model_fits(mcfg, sizes, cfg.train.batch_size // cfg.train.grad_accum, cfg.train.seq_len)
    pcfg = run_config.pipeline_parallel_config(cfg, sizes["stage"])
    if pcfg.stages > 1:
        pcfg.check(mcfg.n_layers, cfg.train.batch_size // cfg.train.grad_accum)
        micro = cfg.train.batch_size // cfg.train.grad_accum // pcfg.microbatches
        dp = sizes["data"] * sizes["fsdp"]
        if micro % dp:
            raise MeshError(f"a pipeline microbatch has {micro} rows, not divisible by mesh.data x mesh.fsdp ({dp}); "
                            "raise train.batch_size or lower pipeline.microbatches")
    mesh = make_mesh(sizes, devices)
    rules = run_config.mesh_rules(cfg)
    optimizer = make_optimizer(ocfg)
    return Setup(mcfg, ocfg, optimizer, mesh, rules, shard_lib.make_shardings(mcfg, optimizer, mesh, rules), pcfg)


@dataclasses.dataclass
class Setup:
    """Everything a run (or a dry run) derives from its config before touching data or devices."""

    mcfg: ModelConfig
    ocfg: OptimizerConfig
    optimizer: optax.GradientTransformation
    mesh: Mesh
    rules: tuple
    sh: shard_lib.TrainShardings
    pipeline: PipelineConfig

    @contextlib.contextmanager
    def tracing(self):
        """The contexts model code must be traced in: activation shardings and the pipeline."""
        with sharding_rules(self.mesh, self.rules), pipelining(self.pipeline):
            yield


def train(cfg: ml_collections.ConfigDict) -> dict:
    """Trains (resuming from the latest checkpoint in workdir) and returns a summary."""
    with _Preemption() as preempt:
        return _train(cfg, preempt)


def _train(cfg: ml_collections.ConfigDict, preempt: _Preemption) -> dict:
    st = setup(cfg)
    mcfg, ocfg, optimizer, mesh, sh = st.mcfg, st.ocfg, st.optimizer, st.mesh, st.sh
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    primary = jax.process_index() == 0

    manifest = shards.load_manifest(cfg.data.prepared_dir)
    tok_info = manifest["tokenizer"]
    if tok_info["vocab_size"] > mcfg.vocab_size:
        raise ValueError(f"the tokenizer of {cfg.data.prepared_dir} has {tok_info['vocab_size']} tokens but "
                         f"model.vocab_size is {mcfg.vocab_size}")
    streams = cfg.data.streams or jax.process_count()
    if cfg.train.batch_size % streams:
        raise ValueError(f"train.batch_size ({cfg.train.batch_size}) is not divisible by data.streams ({streams})")
    pcfg = run_config.pipeline_config(cfg, batch_size=cfg.train.batch_size // streams)
    data_signature = pcfg.signature(jax.process_count(), streams)
    data_iter = pipeline.StreamSet(pcfg, streams, jax.process_index(), jax.process_count())
    if primary and st.pipeline.stages > 1:
        p = st.pipeline
        print(f"pipeline: {p.stages} stages, {p.microbatches} microbatches, {p.repeats} repeat(s) "
              f"({'circular' if p.repeats > 1 else 'GPipe'}); bubble fraction (S-1)/(R*M+S-1) = "
              f"{p.bubble_fraction():.3f}", flush=True)
    if primary:
        print(f"mesh: {dict(mesh.shape)} over {mesh.size} devices ({jax.process_count()} processes); "
              f"data: {human_count(manifest['total_tokens'])} tokens, mixture "
              + ", ".join(f"{lang} {w:.2f}" for lang, w in pipeline.resolve_mixture(manifest, pcfg.mixture)[:6]),
              flush=True)

    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=cfg.train.keep_checkpoints,
                        keep_every=cfg.train.keep_every or None)
    tok = load_tokenizer(Path(cfg.data.prepared_dir) / tok_info["path"])
    tokenizer_path = str(Path(ckpt.directory) / TOKENIZER_DIR)  # the copy that travels with the weights
    meta_base = {"model": mcfg.to_dict(), "config": json.loads(cfg.to_json_best_effort()),
                 "tokenizer_sha256": tok_info["sha256"], "tokenizer_path": tokenizer_path,
                 "tokenizer": {"kind": tok.kind, "sha256": tok.sha256()},
                 "data_signature": data_signature, "mesh": dict(mesh.shape)}

    start = ckpt.latest_step()
    if start is None and cfg.train.init_from:
        params, opt_state = _init_from(cfg.train.init_from, mcfg, optimizer, sh, tok_info["sha256"],
                                       cfg.data.prepared_dir)
        start = 0
        if primary:
            print(f"initialised from {cfg.train.init_from} (fresh optimizer state, step 0)", flush=True)
    elif start is None:
        params, opt_state = shard_lib.init_state(mcfg, optimizer, sh, cfg.seed)
        start = 0
    else:
        saved = ckpt.meta(start)
        if saved.get("tokenizer_sha256") not in (None, tok_info["sha256"]):
            raise ValueError(f"{workdir} was trained with a different tokenizer than {cfg.data.prepared_dir}'s")
        pipeline.check_resume(saved.get("data_signature"), data_signature)
        params_t, opt_t = shard_lib.abstract_state(mcfg, optimizer, sh)
        _, params, opt_state, _ = ckpt.restore(start, params_target=params_t, opt_state_target=opt_t,
                                               data_iter=data_iter)
        if primary:
            print(f"resumed from step {start} (saved on mesh {saved.get('mesh')})", flush=True)
    if primary:
        store_tokenizer(ckpt.directory, tok)
    n_params = mcfg.param_count()
    flops_per_token = mcfg.flops_per_token(cfg.train.seq_len)
    peak = device_peak_tflops(cfg.train.peak_tflops)
    if primary:
        print(f"model: {human_count(n_params)} parameters; {cfg.train.steps} steps of {cfg.train.batch_size}x"
              f"{cfg.train.seq_len} tokens; {human_count(flops_per_token)} FLOPs/token"
              + ("" if peak else "; MFU n/a (unknown device peak: set train.peak_tflops)"), flush=True)

    step_fn = make_train_step(mcfg, optimizer, cfg.train.z_loss, cfg.train.grad_accum)
    train_step = jax.jit(step_fn, in_shardings=(sh.params, sh.opt_state, sh.batch),
                         out_shardings=(sh.params, sh.opt_state, sh.replicated), donate_argnums=(0, 1))
    eval_step = perplexity.heldout_step(mcfg, tok.byte_lengths(),
                                        in_shardings=(sh.params, sh.batch))
    lr_fn = learning_rate(ocfg)
    has_heldout = bool(manifest.get("heldout_shards"))
    writer = MetricWriter(workdir, enabled=primary)
    history = []
    window = []
    tokens_per_step = cfg.train.batch_size * cfg.train.seq_len
    t_last = last_save = time.perf_counter()
    stopped_early = False
    bar = tqdm(range(start, cfg.train.steps), initial=start, total=cfg.train.steps, desc="train",
               dynamic_ncols=True, mininterval=1.0, disable=not primary)
    preempt.start()
    with st.tracing():
        for step in bar:
            batch = shard_lib.global_batch(next(data_iter), sh.batch)
            params, opt_state, m = train_step(params, opt_state, batch)
            window.append(m)
            done = step + 1
            if done % cfg.train.log_every == 0 or done == cfg.train.steps:
                losses = np.asarray([float(w["loss"]) for w in window])
                now = time.perf_counter()
                tps = tokens_per_step * len(window) / (now - t_last)
                record = {"step": done, "loss": float(losses.mean()),
                          "grad_norm": float(np.mean([float(w["grad_norm"]) for w in window])),
                          "lr": float(lr_fn(step)), "tokens_per_s": tps,
                          "step_time_s": (now - t_last) / len(window)}
                if "z_loss" in window[0]:
                    record["z_loss"] = float(np.mean([float(w["z_loss"]) for w in window]))
                util = mfu(tps, flops_per_token, mesh.size, peak)
                if util is not None:
                    record["mfu"] = util
                t_last, window = now, []
                if has_heldout and (done % cfg.train.eval_every == 0 or done == cfg.train.steps):
                    record.update(heldout_metrics(eval_step, params, pcfg, cfg, sh))
                    t_last = time.perf_counter()
                history.append(record)
                writer.write(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
                if primary:
                    tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in record.items()))
            timed = cfg.train.checkpoint_minutes and time.perf_counter() - last_save > 60 * cfg.train.checkpoint_minutes
            if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps or timed or preempt.requested:
                ckpt.save(done, params, opt_state=opt_state, meta={**meta_base, "step": done}, data_iter=data_iter)
                last_save = time.perf_counter()
            if preempt.requested:
                stopped_early = True
                if primary:
                    tqdm.write(f"SIGTERM: saved step {done}; exiting (rerun the same command to resume)")
                break
    ckpt.close()
    writer.close()
    return {"steps": cfg.train.steps, "params": n_params, "history": history, "checkpoint_dir": ckpt.directory,
            "preempted": stopped_early}


def heldout_metrics(step, params, pcfg: pipeline.PipelineConfig, cfg, sh) -> dict:
    """Held-out loss and bits per byte over the first train.eval_batches batches of every language
    (always the same ones), through the same code as `jaxcoder eval`'s perplexity: with
    eval.seq_len = train.seq_len and the same rows per language (eval.batch_size x
    eval.perplexity_batches = train.batch_size x train.eval_batches) the two report the same number
    for a checkpoint. Each process feeds its own rows of each batch."""
    sums = perplexity.heldout_sums(step, params, dataclasses.replace(pcfg, batch_size=cfg.train.batch_size),
                                   cfg.train.eval_batches,
                                   place=lambda b: shard_lib.global_batch(b, sh.batch),
                                   process_index=jax.process_index(), process_count=jax.process_count())
    total = perplexity.overall(sums)
    return {"heldout_loss": total["loss"], "heldout_bits_per_byte": total["bits_per_byte"]} if total else {}
