"""The training run: sharded state, data, checkpoints and metrics, from one resolved run config.

Resuming is automatic: the latest checkpoint in `<workdir>/checkpoints` is restored onto the
current mesh (whatever mesh wrote it), the data iterator continues where it stopped, and the loss
sequence is bitwise that of an uninterrupted run on the same mesh. SIGTERM (preemption) saves a
checkpoint and exits cleanly; a SIGKILL loses at most the steps since the last committed one.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jax
import numpy as np
from tqdm import tqdm

from jaxcoder.data import pipeline, shards
from jaxcoder.data.tokenizer import Tokenizer, load_tokenizer
from jaxcoder.model.config import ModelConfig, human_count
from jaxcoder.parallel import distributed
from jaxcoder.parallel.mesh import PLURAL, granule_spans
from jaxcoder.train import emergency, heldout
from jaxcoder.train import sharding as shard_lib
from jaxcoder.train.checkpoint import TOKENIZER_DIR, Checkpointer, checkpoint_tokenizer, store_tokenizer
from jaxcoder.train.emergency import LocalTier
from jaxcoder.train.goodput import Goodput, read_attempts, summarize
from jaxcoder.train.guard import Guard, NonFiniteError, all_finite
from jaxcoder.train.metrics import MetricWriter, device_peak_tflops, mfu
from jaxcoder.train.optimizer import learning_rate, restart_schedule
from jaxcoder.train.profile import Profiler
from jaxcoder.train.setup import Setup, setup
from jaxcoder.train.step import make_train_step

if TYPE_CHECKING:
    from jaxcoder.config import RunConfig

__all__ = ["setup", "train"]


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


# Fields a run started from another checkpoint may change: execution choices, and the positions'
# function (a long-context stage's RoPE). Anything else changes shapes or the network.
_STAGE_FREE = {"dtype", "param_dtype", "remat", "scan_layers", "attention_impl", "max_seq_len", "rope"}


def _init_from(run: RunConfig, st: Setup, tokenizer_sha256: str):
    """Parameters of another checkpoint (an imported Hugging Face model, an earlier training
    stage) as the starting point of this run, restored straight onto this run's shardings, with
    a fresh optimizer state or (train.init_optimizer=keep) the checkpoint's."""
    from jaxcoder.train.checkpoint import read_meta

    directory = run.train.init_from
    step, meta = read_meta(directory)
    theirs = ModelConfig.from_dict(meta["model"]).to_dict()
    ours = st.mcfg.to_dict()
    differ = sorted(k for k in ours if k not in _STAGE_FREE and ours.get(k) != theirs.get(k))
    if differ:
        raise ValueError(f"train.init_from={directory}: model fields differ from the checkpoint's: " + ", ".join(
            f"model.{k}={ours.get(k)!r} (checkpoint: {theirs.get(k)!r})" for k in differ)
            + "; only RoPE and execution fields may change between stages")
    theirs_tok = checkpoint_tokenizer(directory, meta)
    theirs_sha = theirs_tok.sha256() if theirs_tok else meta.get("tokenizer_sha256")
    if theirs_sha not in (None, tokenizer_sha256):
        raise ValueError(f"train.init_from={directory} was trained with its own tokenizer, but "
                         f"{run.data.prepared_dir} was tokenized with another; prepare the data with its tokenizer: "
                         f"jaxcoder data prepare --config.tokenizer.path={directory} --config.data.prepared_dir=...")
    params_t, opt_t = shard_lib.abstract_state(st.mcfg, st.optimizer, st.sh)
    ckpt = Checkpointer(directory, read_only=True)
    keep = run.train.init_optimizer == "keep"
    if keep and not ckpt.has_item(step, "opt_state"):
        raise ValueError(f"train.init_optimizer='keep', but {directory} step {step} has no optimizer state (an "
                         f"imported model?); use train.init_optimizer=reset")
    _, params, opt_state, _ = ckpt.restore(step, params_target=params_t, opt_state_target=opt_t if keep else None)
    if keep:
        opt_state = jax.jit(restart_schedule, out_shardings=st.sh.opt_state)(opt_state)
    else:
        opt_state = jax.jit(st.optimizer.init, out_shardings=st.sh.opt_state)(params)
    changed = [f"{k} {a} -> {b}" for k, (a, b) in _changes(theirs, ours).items()
               if k.split(".")[0] in _STAGE_FREE - {"dtype", "param_dtype", "remat", "scan_layers"}]
    _print(f"initialised from {directory} step {step} ({'its' if keep else 'fresh'} optimizer state, this run's "
           f"schedule from step 0)" + (f"; changed: {', '.join(changed)}" if changed else ""))
    return params, opt_state


def _changes(before: dict, after: dict, prefix: str = "") -> dict[str, tuple]:
    """Differing fields of two nested config dicts, by dotted name."""
    out = {}
    for k in sorted(set(before) | set(after)):
        a, b = before.get(k), after.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(_changes(a, b, f"{prefix}{k}."))
        elif a != b:
            out[f"{prefix}{k}"] = (a, b)
    return out


@dataclasses.dataclass
class _Data:
    """The prepared data a run reads: manifest, tokenizer, the loader streams this process owns."""

    manifest: dict
    tokenizer: Tokenizer
    loader: pipeline.LoaderConfig  # one stream's
    iterator: pipeline.StreamSet
    signature: dict  # what the saved iterator state depends on

    @classmethod
    def open(cls, run: RunConfig, mcfg: ModelConfig) -> _Data:
        manifest = shards.load_manifest(run.data.prepared_dir)
        info = manifest["tokenizer"]
        if info["vocab_size"] > mcfg.vocab_size:
            raise ValueError(f"the tokenizer of {run.data.prepared_dir} has {info['vocab_size']} tokens but "
                             f"model.vocab_size is {mcfg.vocab_size}")
        streams = run.data.streams or jax.process_count()
        if run.train.batch_size % streams:
            raise ValueError(f"train.batch_size ({run.train.batch_size}) is not divisible by data.streams ({streams})")
        loader = run.loader(batch_size=run.train.batch_size // streams)
        iterator = pipeline.StreamSet(loader, streams, jax.process_index(), jax.process_count())
        return cls(manifest, load_tokenizer(Path(run.data.prepared_dir) / info["path"]), loader, iterator,
                   loader.signature(jax.process_count(), streams))

    @property
    def sha256(self) -> str:
        return self.manifest["tokenizer"]["sha256"]


def _print(*parts) -> None:
    if jax.process_index() == 0:
        print(*parts, flush=True)


def _start(run: RunConfig, st: Setup, data: _Data, ckpt: Checkpointer, tier: LocalTier | None, clock: Goodput):
    """(params, opt_state, first step): the newest checkpoint of this run in either tier (strictly
    the same data), else train.init_from's parameters, else a fresh initialisation (start-up time,
    not a restore)."""
    start = ckpt.latest_step()
    local = _local_step(tier, start)
    if start is None and local is None and run.train.init_from:
        with clock.phase("checkpoint_restore"):
            params, opt_state = _init_from(run, st, data.sha256)
        return params, opt_state, 0
    if start is None and local is None:
        params, opt_state = shard_lib.init_state(st.mcfg, st.optimizer, st.sh, run.seed)
        return params, opt_state, 0
    saved = tier.meta(local) if local is not None else ckpt.meta(start)
    if saved.get("tokenizer_sha256") not in (None, data.sha256):
        raise ValueError(f"{run.workdir} was trained with a different tokenizer than {run.data.prepared_dir}'s")
    pipeline.check_resume(saved.get("data_signature"), data.signature)
    params_t, opt_t = shard_lib.abstract_state(st.mcfg, st.optimizer, st.sh)
    with clock.phase("checkpoint_restore"):
        if local is not None:
            params, opt_state, _ = tier.restore(local, params_t, opt_t, data.iterator)
            start, where = local, f"the local tier, {Path(tier.directory).parent}"
        else:
            _, params, opt_state, _ = ckpt.restore(start, params_target=params_t, opt_state_target=opt_t,
                                                   data_iter=data.iterator)
            where = "the persistent tier" if tier else "checkpoints"
    _print(f"resumed from step {start} ({where}; saved on mesh {saved.get('mesh')})")
    return params, opt_state, start


def _local_step(tier: LocalTier | None, persistent: int | None) -> int | None:
    """The local tier's newest step held by every process, when it is newer than the persistent
    tier's (or as new: it is the faster read). Every process takes part, usable copy or not."""
    if tier is None:
        return None
    steps, unusable = tier.usable_steps()
    if unusable and not steps and persistent is None:
        raise ValueError(f"train.local_checkpoint_dir={tier.directory.parent} holds checkpoints {unusable}, and "
                         f"this run has no persistent one to start from; rerun as the run that wrote them, or give "
                         f"this run its own train.local_checkpoint_dir (or remove {tier.directory})")
    if unusable and not steps:
        print(f"process {jax.process_index()}: local tier {tier.directory} was {unusable}; using the persistent "
              f"tier", flush=True)
    step = emergency.common_step(steps)
    return step if step is not None and (persistent is None or step >= persistent) else None


class _Log:
    """Averages the step metrics of a logging window into one record (loss, gradient norm,
    learning rate, tokens/s, step time, MFU, z-loss)."""

    def __init__(self, run: RunConfig, st: Setup):
        self.tokens_per_step = run.train.batch_size * run.train.seq_len
        self.flops_per_token = st.mcfg.flops_per_token(run.train.seq_len)
        self.peak = device_peak_tflops(run.train.peak_tflops)
        self.devices = st.mesh.size
        self.lr = learning_rate(st.ocfg)
        self.window: list[dict] = []
        self.since = time.perf_counter()

    def add(self, metrics: dict) -> None:
        self.window.append(metrics)

    def restart_clock(self) -> None:
        self.since = time.perf_counter()

    def record(self, done: int) -> dict:
        def mean(key):
            return float(np.mean([float(w[key]) for w in self.window]))

        elapsed = time.perf_counter() - self.since
        tps = self.tokens_per_step * len(self.window) / elapsed
        record = {"step": done, "loss": mean("loss"), "grad_norm": mean("grad_norm"), "lr": float(self.lr(done - 1)),
                  "tokens_per_s": tps, "step_time_s": elapsed / len(self.window)}
        if "z_loss" in self.window[0]:
            record["z_loss"] = mean("z_loss")
        util = mfu(tps, self.flops_per_token, self.devices, self.peak)
        if util is not None:
            record["mfu"] = util
        self.window = []
        self.restart_clock()
        return record


def train(run: RunConfig) -> dict:
    """Trains (resuming from the latest checkpoint in workdir) and returns a summary."""
    with _Preemption() as preempt:
        st = setup(run)
        workdir = Path(run.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=run.train.keep_checkpoints,
                            keep_every=run.train.keep_every or None)
        tier = LocalTier(run.train.local_checkpoint_dir, run.train.local_checkpoint_every,
                         emergency.layout(workdir, st.mesh)) if run.train.local_checkpoint_dir else None
        clock = Goodput(workdir, ckpt.latest_step() or 0, enabled=jax.process_index() == 0)
        try:
            data = _Data.open(run, st.mcfg)
            if st.stages.stages > 1:
                p = st.stages
                _print(f"pipeline: {p.stages} stages, {p.microbatches} microbatches, {p.repeats} repeat(s) "
                       f"({'circular' if p.repeats > 1 else 'GPipe'}); bubble fraction (S-1)/(R*M+S-1) = "
                       f"{p.bubble_fraction():.3f}")
            kind, spans = granule_spans(st.mesh, run.mesh.granule)
            if any(n > 1 for n in spans.values()):
                _print(f"hybrid mesh across {PLURAL[kind]}: "
                       + ", ".join(f"{a} spans {n}" for a, n in spans.items() if n > 1))
            mixture = pipeline.resolve_mixture(data.manifest, data.loader.mixture)[:6]
            _print(f"mesh: {dict(st.mesh.shape)} over {st.mesh.size} devices ({jax.process_count()} processes); "
                   f"data: {human_count(data.manifest['total_tokens'])} tokens, mixture "
                   + ", ".join(f"{lang} {w:.2f}" for lang, w in mixture))
            params, opt_state, start = _start(run, st, data, ckpt, tier, clock)
            clock.begin(start)
            if jax.process_index() == 0:
                store_tokenizer(ckpt.directory, data.tokenizer)
            return _Loop(run, st, data, ckpt, tier, clock).train(params, opt_state, start, preempt)
        finally:
            clock.close()


class _Loop:
    """The steps of one attempt: train, log, evaluate, checkpoint, profile; every second of it on
    the goodput clock, each step's metrics checked by the guard."""

    def __init__(self, run: RunConfig, st: Setup, data: _Data, ckpt: Checkpointer, tier: LocalTier | None,
                 clock: Goodput):
        self.run, self.st, self.data, self.ckpt, self.tier, self.clock = run, st, data, ckpt, tier, clock
        self.t = run.train
        t, sh = run.train, st.sh
        self.log = _Log(run, st)
        _print(f"model: {human_count(st.mcfg.param_count())} parameters; {t.steps} steps of {t.batch_size}x"
               f"{t.seq_len} tokens; {human_count(self.log.flops_per_token)} FLOPs/token"
               + ("" if self.log.peak else "; MFU n/a (unknown device peak: set train.peak_tflops)"))
        self.meta = {"model": st.mcfg.to_dict(), "config": run.to_json(), "tokenizer_sha256": data.sha256,
                     "tokenizer_path": str(Path(ckpt.directory) / TOKENIZER_DIR),  # travels with the weights
                     "tokenizer": {"kind": data.tokenizer.kind, "sha256": data.tokenizer.sha256()},
                     "data_signature": data.signature, "mesh": dict(st.mesh.shape)}
        self.train_step = jax.jit(make_train_step(st.mcfg, st.optimizer, t.z_loss, t.grad_accum),
                                  in_shardings=(sh.params, sh.opt_state, sh.batch),
                                  out_shardings=(sh.params, sh.opt_state, sh.replicated), donate_argnums=(0, 1))
        self.eval_step = heldout.heldout_step(st.mcfg, data.tokenizer.byte_lengths(),
                                              in_shardings=(sh.params, sh.batch))
        self.has_heldout = bool(data.manifest.get("heldout_shards"))
        self.writer = MetricWriter(Path(run.workdir), enabled=jax.process_index() == 0, writers=t.writer_names(),
                                   project=t.tracking_project, config=run.to_json())
        self.guard = Guard(t.max_skipped_steps, t.spike_factor, t.spike_window)
        self.profiler = Profiler(Path(run.workdir) / "profile", t.profile_start, t.profile_steps, t.profile_every)
        self.history: list[dict] = []
        self.pending = None  # (step, metrics, data position) whose metrics the guard has not read yet
        self.earlier = read_attempts(run.workdir)[:-1] if jax.process_index() == 0 else []

    def train(self, params, opt_state, start: int, preempt: _Preemption) -> dict:
        t, last_save, preempted = self.t, time.perf_counter(), False
        bar = tqdm(range(start, t.steps), initial=start, total=t.steps, desc="train", dynamic_ncols=True,
                   mininterval=1.0, disable=jax.process_index() != 0)
        preempt.start()
        try:
            with self.st.tracing():
                for step in bar:
                    params, opt_state = self.step(step, params, opt_state, first=step == start)
                    done = step + 1
                    if done % t.log_every == 0 or done == t.steps:
                        self.write_log(done, params, bar)
                    timed = t.checkpoint_minutes and time.perf_counter() - last_save > 60 * t.checkpoint_minutes
                    if done % t.checkpoint_every == 0 or done == t.steps or timed or preempt.requested:
                        self.save(done, params, opt_state)
                        last_save = time.perf_counter()
                    elif self.tier and self.tier.due(done):
                        self.save(done, params, opt_state, local=True)
                    if preempt.requested:
                        preempted = True
                        if jax.process_index() == 0:
                            tqdm.write(f"SIGTERM: saved step {done}; exiting (rerun the same command to resume)")
                        break
            self.check()
        finally:
            self.profiler.stop()
            with self.clock.phase("checkpoint_save"):
                self.ckpt.close()
                if self.tier:
                    self.tier.close()
            self.writer.close()
        return {"steps": t.steps, "params": self.st.mcfg.param_count(), "history": self.history,
                "checkpoint_dir": self.ckpt.directory, "preempted": preempted,
                "skipped_steps": self.guard.skipped_total, "loss_spikes": self.guard.warnings,
                "goodput": summarize([*self.earlier, self.clock.record()]) if jax.process_index() == 0 else None}

    def step(self, step: int, params, opt_state, first: bool):
        self.profiler.before(step)
        with jax.profiler.StepTraceAnnotation("train", step_num=step):
            with self.clock.phase("data"):
                position = self.data.iterator.get_state()
                batch = shard_lib.global_batch(next(self.data.iterator), self.st.sh.batch)
            self.clock.switch("compile" if first else "step")
            if first:
                distributed.barrier("first step")
            params, opt_state, m = self.train_step(params, opt_state, batch)
            self.clock.switch("step")
            self.check()  # the previous step's metrics: reading them now keeps the device busy
            self.pending = (step + 1, m, position)
        self.log.add(m)
        self.clock.step = step + 1
        self.profiler.after(step, m)
        return params, opt_state

    def check(self) -> None:
        if self.pending:
            warning = self.guard.check(*self.pending)
            self.pending = None
            if warning and jax.process_index() == 0:
                tqdm.write(warning)

    def write_log(self, done: int, params, bar) -> None:
        self.check()
        record = self.log.record(done)
        record["skipped_steps"] = self.guard.skipped_total
        if self.has_heldout and (done % self.t.eval_every == 0 or done == self.t.steps):
            with self.clock.phase("eval"):
                record.update(heldout_metrics(self.eval_step, params, self.data.loader, self.run, self.st.sh))
            self.log.restart_clock()
        if jax.process_index() == 0:
            good = summarize([*self.earlier, self.clock.record()])
            record.update(goodput=good["goodput"], **{k: v for k, v in good.items() if k.startswith("badput_")})
        self.history.append(record)
        self.writer.write(record)
        bar.set_postfix(loss=f"{record['loss']:.3f}", lr=f"{record['lr']:.2e}")
        if jax.process_index() == 0:
            tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                for k, v in record.items() if not k.startswith("badput_")))

    def save(self, done: int, params, opt_state, local: bool = False) -> None:
        """A checkpoint of step `done` in the persistent tier, or in the local tier."""
        self.check()
        with self.clock.phase("checkpoint_save"):
            if not bool(all_finite((params, opt_state))):
                raise NonFiniteError(f"step {done}: the parameters or optimizer state hold non-finite values "
                                     f"after a finite step (an overflowing update); not saved. Lower train.lr "
                                     f"and resume from the last checkpoint")
            meta = {**self.meta, "step": done}
            if local:
                self.tier.save(done, params, opt_state, meta, self.data.iterator)
            else:
                self.ckpt.save(done, params, opt_state=opt_state, meta=meta, data_iter=self.data.iterator)
        self.clock.saved(done)


def heldout_metrics(step, params, loader: pipeline.LoaderConfig, run: RunConfig, sh) -> dict:
    """Held-out loss and bits per byte over the first train.eval_batches batches of every language
    (always the same ones), through the same code as `jaxcoder eval`'s perplexity: with
    eval.seq_len = train.seq_len and the same rows per language (eval.batch_size x
    eval.perplexity_batches = train.batch_size x train.eval_batches) the two report the same number
    for a checkpoint. Each process feeds its own rows of each batch."""
    sums = heldout.heldout_sums(step, params, dataclasses.replace(loader, batch_size=run.train.batch_size),
                                run.train.eval_batches, place=lambda b: shard_lib.global_batch(b, sh.batch),
                                process_index=jax.process_index(), process_count=jax.process_count())
    total = heldout.overall(sums)
    return {"heldout_loss": total["loss"], "heldout_bits_per_byte": total["bits_per_byte"]} if total else {}
