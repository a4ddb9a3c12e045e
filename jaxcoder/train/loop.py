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
from jaxcoder.data import stream
from jaxcoder.data.tokenizer import Tokenizer
from jaxcoder.model import functional as F
from jaxcoder.model.config import human_count
from jaxcoder.train.checkpoint import Checkpointer
from jaxcoder.train.optimizer import learning_rate, make_optimizer
from jaxcoder.train.step import make_eval_step, make_train_step

log = logging.getLogger("jaxcoder.train")


def tokenizer_for(cfg: ml_collections.ConfigDict) -> Tokenizer:
    if not cfg.tokenizer.path:
        raise ValueError("tokenizer.path is not set: pass --config.tokenizer.path=PATH/TO/code.model "
                         "(train one with `jaxcoder data tokenizer`)")
    tok = Tokenizer(cfg.tokenizer.path)
    if tok.vocab_size > cfg.model.vocab_size:
        raise ValueError(f"tokenizer {tok.path} has {tok.vocab_size} tokens but model.vocab_size is "
                         f"{cfg.model.vocab_size}")
    return tok


def train(cfg: ml_collections.ConfigDict) -> dict:
    """Trains (resuming from the latest checkpoint in workdir) and returns a summary."""
    mcfg = run_config.model_config(cfg)
    ocfg = run_config.optimizer_config(cfg)
    if cfg.train.seq_len > mcfg.max_seq_len:
        raise ValueError(f"train.seq_len ({cfg.train.seq_len}) exceeds model.max_seq_len ({mcfg.max_seq_len})")
    workdir = Path(cfg.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tok = tokenizer_for(cfg)

    files = stream.list_files(cfg.data.roots, cfg.data.extensions, cfg.data.max_files or None)
    train_files, held_files = stream.split_heldout(files, cfg.data.heldout_fraction)
    log.info("data: %d training files, %d held-out files", len(train_files), len(held_files))
    docs = stream.tokenize_files(train_files, tok)
    held_docs = stream.tokenize_files(held_files, tok) if held_files else []
    print(f"data: {len(docs)} documents, {human_count(sum(len(d) for d in docs))} tokens "
          f"({len(held_docs)} held-out documents)", flush=True)

    optimizer = make_optimizer(ocfg)
    ckpt = Checkpointer(workdir / "checkpoints", max_to_keep=cfg.train.keep_checkpoints)
    meta_base = {"model": mcfg.to_dict(), "config": json.loads(cfg.to_json_best_effort()),
                 "tokenizer_sha256": tok.sha256(), "tokenizer_path": str(Path(cfg.tokenizer.path).absolute())}

    start = ckpt.latest_step()
    if start is None:
        params = F.init_params(mcfg, cfg.seed)
        opt_state = optimizer.init(params)
        start = 0
    else:
        abstract = F.abstract_params(mcfg)
        _, params, opt_state, meta = ckpt.restore(
            start, params_target=abstract, opt_state_target=jax.eval_shape(optimizer.init, abstract))
        if meta.get("tokenizer_sha256") not in (None, tok.sha256()):
            raise ValueError(f"{workdir} was trained with a different tokenizer than {cfg.tokenizer.path}")
        print(f"resumed from step {start}", flush=True)
    n_params = F.count_params(params)
    print(f"model: {human_count(n_params)} parameters; {cfg.train.steps} steps of "
          f"{cfg.train.batch_size}x{cfg.train.seq_len} tokens", flush=True)

    # The data order depends only on (seed, step), so a resumed run sees the batches it would have.
    rng = np.random.default_rng(cfg.seed)
    batch_iter = stream.batches(stream.pack_rows(docs, cfg.train.seq_len, rng), cfg.train.batch_size)
    for _ in range(start):
        next(batch_iter)

    train_step = jax.jit(make_train_step(mcfg, optimizer, cfg.train.z_loss), donate_argnums=(0, 1))
    eval_step = jax.jit(make_eval_step(mcfg))
    lr_fn = learning_rate(ocfg)
    metrics_path = workdir / "metrics.jsonl"
    history = []
    t_last, tokens_since = time.perf_counter(), 0.0
    window = []  # per-step metrics since the last log line, averaged when logged
    bar = tqdm(range(start, cfg.train.steps), initial=start, total=cfg.train.steps, desc="train",
               dynamic_ncols=True, mininterval=1.0)
    with metrics_path.open("a") as metrics_file:
        for step in bar:
            batch = {k: jnp.asarray(v) for k, v in next(batch_iter).items()}
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
                if held_docs and (done % cfg.train.eval_every == 0 or done == cfg.train.steps):
                    record["heldout_loss"] = heldout_loss(eval_step, params, held_docs, cfg)
                history.append(record)
                metrics_file.write(json.dumps(record) + "\n")
                metrics_file.flush()
                bar.set_postfix(loss=f"{loss:.3f}", lr=f"{record['lr']:.2e}")
                tqdm.write(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in record.items()))
            if done % cfg.train.checkpoint_every == 0 or done == cfg.train.steps:
                ckpt.save(done, params, opt_state=opt_state, meta={**meta_base, "step": done})
    ckpt.close()
    return {"steps": cfg.train.steps, "params": n_params, "history": history,
            "checkpoint_dir": ckpt.directory}


def heldout_loss(eval_step, params, docs, cfg) -> float:
    """Mean token loss over a fixed set of held-out packed rows."""
    rng = np.random.default_rng(12345)
    it = stream.batches(stream.pack_rows(docs, cfg.train.seq_len, rng), cfg.train.batch_size)
    total, count = 0.0, 0.0
    for _ in range(cfg.train.eval_batches):
        s, n = eval_step(params, {k: jnp.asarray(v) for k, v in next(it).items()})
        total, count = total + float(s), count + float(n)
    return total / max(count, 1.0)
