"""The training run: data, model, optimizer, checkpoints and logging, from one run config."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxcoder import config as run_config
from jaxcoder.data import pipeline, shards
from jaxcoder.model import functional as F
from jaxcoder.model.config import human_count
from jaxcoder.train.checkpoint import Checkpointer
from jaxcoder.train.optimizer import learning_rate, make_optimizer
from jaxcoder.train.step import make_eval_step, make_train_step

log = logging.getLogger("jaxcoder.train")


def train(cfg: ml_collections.ConfigDict) -> dict:
    """Trains (resuming from the latest checkpoint in workdir) and returns a summary."""
    mcfg = run_config.model_config(cfg)
    ocfg = run_config.optimizer_config(cfg)
    if cfg.train.seq_len > mcfg.max_seq_len:
        raise ValueError(f"train.seq_len ({cfg.train.seq_len}) exceeds model.max_seq_len ({mcfg.max_seq_len})")
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    manifest = shards.load_manifest(cfg.data.prepared_dir)
    tok_info = manifest["tokenizer"]
    if tok_info["vocab_size"] > mcfg.vocab_size:
        raise ValueError(f"the tokenizer of {cfg.data.prepared_dir} has {tok_info['vocab_size']} tokens but "
                         f"model.vocab_size is {mcfg.vocab_size}")
    pcfg = run_config.pipeline_config(cfg)
    data_signature = pcfg.signature(jax.process_count())
    dataset = pipeline.build(pcfg, process_index=jax.process_index(), process_count=jax.process_count())
    data_iter = iter(dataset)
    print(f"data: {cfg.data.prepared_dir}: {human_count(manifest['total_tokens'])} tokens in "
          f"{sum(manifest['documents'].values())} documents; mixture "
          + ", ".join(f"{lang} {w:.2f}" for lang, w in pipeline.resolve_mixture(manifest, pcfg.mixture)[:6]),
          flush=True)

    optimizer = make_optimizer(ocfg)
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=cfg.train.keep_checkpoints)
    tokenizer_path = str((Path(cfg.data.prepared_dir) / tok_info["path"]).absolute())
    meta_base = {"model": mcfg.to_dict(), "config": json.loads(cfg.to_json_best_effort()),
                 "tokenizer_sha256": tok_info["sha256"], "tokenizer_path": tokenizer_path,
                 "data_signature": data_signature}

    start = ckpt.latest_step()
    if start is None:
        params = F.init_params(mcfg, cfg.seed)
        opt_state = optimizer.init(params)
        start = 0
    else:
        saved = ckpt.meta(start)
        if saved.get("tokenizer_sha256") not in (None, tok_info["sha256"]):
            raise ValueError(f"{workdir} was trained with a different tokenizer than {cfg.data.prepared_dir}'s")
        pipeline.check_resume(saved.get("data_signature"), data_signature)
        abstract = F.abstract_params(mcfg)
        _, params, opt_state, _ = ckpt.restore(
            start, params_target=abstract, opt_state_target=jax.eval_shape(optimizer.init, abstract),
            data_iter=data_iter)
        print(f"resumed from step {start}", flush=True)
    n_params = F.count_params(params)
    print(f"model: {human_count(n_params)} parameters; {cfg.train.steps} steps of "
          f"{cfg.train.batch_size}x{cfg.train.seq_len} tokens", flush=True)

    train_step = jax.jit(make_train_step(mcfg, optimizer, cfg.train.z_loss), donate_argnums=(0, 1))
    eval_step = jax.jit(make_eval_step(mcfg))
    has_heldout = bool(manifest.get("heldout_shards"))
    lr_fn = learning_rate(ocfg)
    metrics_path = workdir / "metrics.jsonl"
    history = []
    t_last, tokens_since = time.perf_counter(), 0.0
    window = []  # per-step metrics since the last log line, averaged when logged
    bar = tqdm(range(start, cfg.train.steps), initial=start, total=cfg.train.steps, desc="train",
               dynamic_ncols=True, mininterval=1.0)
    with metrics_path.open("a") as metrics_file:
        for step in bar:
            batch = {k: jnp.asarray(v) for k, v in next(data_iter).items()}
            params, opt_state, m = train_step(params, opt_state, batch)
            window.append(m)
            tokens_since += cfg.train.batch_size * cfg.train.seq_len
            done = step + 1
            if done % cfg.train.log_every == 0 or done == cfg.train.steps:
                loss = float(np.mean([float(w["loss"]) for w in window]))
                grad_norm = float(np.mean([float(w["grad_norm"]) for w in window]))
                window = []
                now = time.perf_counter()
                record = {"step": done, "loss": loss, "grad_norm": grad_norm,
                          "lr": float(lr_fn(step)), "tokens_per_s": tokens_since / (now - t_last)}
                t_last, tokens_since = now, 0.0
                if has_heldout and (done % cfg.train.eval_every == 0 or done == cfg.train.steps):
                    record["heldout_loss"] = heldout_loss(eval_step, params, pcfg, cfg.train.eval_batches)
                history.append(record)
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{record['lr']:.2e}")
                tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in record.items()))
            if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps:
                ckpt.save(done, params, opt_state=opt_state, meta={**meta_base, "step": done}, data_iter=data_iter)
    ckpt.close()
    return {"steps": cfg.train.steps, "params": n_params, "history": history,
            "checkpoint_dir": ckpt.directory}


def heldout_loss(eval_step, params, pcfg: pipeline.PipelineConfig, max_batches: int) -> float:
    """Mean token loss over the first `max_batches` held-out batches (always the same ones)."""
    total, count = 0.0, 0.0
    for i, batch in enumerate(pipeline.heldout(pcfg)):
        if i >= max_batches:
            break
        s, n = eval_step(params, {k: jnp.asarray(v) for k, v in batch.items()})
        total, count = total + float(s), count + float(n)
    return total / max(count, 1.0)
