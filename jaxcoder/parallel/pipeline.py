"""Pipeline parallelism over the `stage` mesh axis: GPipe and circular (interleaved) schedules.

The layer stack keeps its canonical [layers, ...] layout (checkpoints do not depend on the
pipeline degree); inside the step it is viewed as [repeats, stages, layers_per_stage, ...] with
the stage dimension sharded over `stage`. One `lax.scan` runs R*M + S - 1 iterations (compile time
does not grow with the number of microbatches M). In each iteration every stage applies its
layers to the activation in its slot of a [S, microbatch, T, D] buffer (a vmap whose stage
dimension GSPMD partitions over `stage`), then the buffer rolls one stage forward (a collective
permute). Stage 0 takes a new microbatch, or at later repeats the last stage's earlier output from
a circular store. The backward is the autodiff of the scan (all-forward, then all-backward), and
each stage-iteration is rematerialised. Data, FSDP and tensor parallelism apply unchanged inside,
because everything stays in GSPMD's automatic mode.

Bubble fraction: (S - 1) / (R * M + S - 1).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding

from jaxcoder.fields import check, field
from jaxcoder.parallel.rules import active_mesh, constrain


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """The `pipeline` section (pipeline parallelism is active when mesh.stage > 1)."""

    microbatches: int = field(0, ge=0)  # 0 = 2 x mesh.stage
    repeats: int = field(1, ge=1)  # 1 = GPipe; > 1 = circular

    def __post_init__(self):
        check(self, "pipeline")


@dataclasses.dataclass(frozen=True)
class StageConfig:
    stages: int = 1
    microbatches: int = 1
    repeats: int = 1

    def bubble_fraction(self) -> float:
        return (self.stages - 1) / (self.repeats * self.microbatches + self.stages - 1)

    def check(self, n_layers: int, batch: int) -> None:
        """Errors that name the field before anything compiles."""
        s, m, r = self.stages, self.microbatches, self.repeats
        if s < 1 or m < 1 or r < 1:
            raise ValueError(f"pipeline: mesh.stage ({s}), pipeline.microbatches ({m}) and pipeline.repeats ({r}) "
                             "must be positive")
        if n_layers % (s * r):
            raise ValueError(f"model.n_layers ({n_layers}) is not divisible by mesh.stage x pipeline.repeats "
                             f"({s} x {r} = {s * r})")
        if s > 1 and m < s:
            raise ValueError(f"pipeline.microbatches ({m}) must be at least mesh.stage ({s}); use {2 * s} or "
                             "more to keep the bubble small")
        if batch % m:
            raise ValueError(f"the per-step batch ({batch}) is not divisible by pipeline.microbatches ({m})")


_ACTIVE: contextvars.ContextVar[StageConfig | None] = contextvars.ContextVar("jaxcoder_pipeline", default=None)


@contextlib.contextmanager
def pipelining(cfg: StageConfig):
    """Model code traced inside runs its layer stack through the pipeline."""
    token = _ACTIVE.set(cfg if cfg.stages > 1 else None)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def active() -> StageConfig | None:
    return _ACTIVE.get()


def split_microbatches(x: jax.Array, m: int) -> jax.Array:
    """[B, ...] -> [M, B/M, ...]; microbatch i takes rows i, i+M, ... (each spans every data shard).
    Shared by the pipeline and gradient accumulation."""
    return x.reshape(x.shape[0] // m, m, *x.shape[1:]).swapaxes(0, 1)


def _merge(x: jax.Array) -> jax.Array:
    """Inverse of split_microbatches."""
    return x.swapaxes(0, 1).reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def run(pcfg: StageConfig, stacked, x: jax.Array, segment_ids: jax.Array, positions: jax.Array,
        layer_fn) -> jax.Array:
    """Applies the stacked layers to x [B, T, D] through the pipeline.

    stacked: the layers' state, every leaf [n_layers, ...]; layer_fn(layer_state, h, segment_ids,
    positions) applies one layer.
    """
    s_, m_, r_ = pcfg.stages, pcfg.microbatches, pcfg.repeats
    n_layers = jax.tree.leaves(stacked)[0].shape[0]
    per = n_layers // (s_ * r_)
    # [L, ...] -> [R, S, per, ...]: stage s of repeat r holds layers ((r * S) + s) * per ... + per - 1.
    weights = jax.tree.map(lambda a: a.reshape(r_, s_, per, *a.shape[1:]), stacked)
    mesh = active_mesh()
    if mesh is not None and "stage" in mesh.axis_names:
        weights = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(
            a, NamedSharding(mesh, _stage_spec(a.ndim, 1))), weights)

    def stage_fn(w, h, seg, pos):
        def body(carry, layer_state):
            return layer_fn(layer_state, carry, seg, pos), None

        return jax.lax.scan(body, h, w)[0]

    stage_fn = jax.checkpoint(stage_fn, policy=jax.checkpoint_policies.nothing_saveable)
    xs, segs, poss = (split_microbatches(a, m_) for a in (x, segment_ids, positions))
    mb_shape = xs.shape[1:]
    stage_ids = jnp.arange(s_)

    def constrain_buf(b):
        return constrain(b, ("layers", "batch", "length", "embed"))

    def iteration(carry, t):
        buf, bseg, bpos, store, outs = carry
        # Stage 0's input: microbatch t in the first repeat, then the last stage's stored output.
        m_idx = t % m_
        first = t < m_
        fresh = jnp.where(first, xs[m_idx], store[m_idx])
        buf = buf.at[0].set(fresh.astype(buf.dtype))
        bseg, bpos = bseg.at[0].set(segs[m_idx]), bpos.at[0].set(poss[m_idx])
        buf = constrain_buf(buf)
        # Each stage runs the layers of the repeat its current microbatch is in.
        rep = jnp.clip((t - stage_ids) // m_, 0, r_ - 1)
        w_t = jax.tree.map(lambda a: jax.vmap(lambda w_s, r: w_s[r], in_axes=(1, 0))(a, rep), weights)
        out = jax.vmap(stage_fn, spmd_axis_name="stage")(w_t, buf, bseg, bpos)
        out = constrain_buf(out)
        # The last stage finished microbatch (t - S + 1) of some repeat: keep it for the next repeat,
        # and as the result after the final repeat.
        done = t - (s_ - 1)
        valid = (done >= 0) & (done < r_ * m_)
        slot = jnp.clip(done, 0, r_ * m_ - 1) % m_
        last = out[s_ - 1]
        store = jnp.where(valid, store.at[slot].set(last), store)
        outs = jnp.where(valid & (done >= (r_ - 1) * m_), outs.at[slot].set(last), outs)
        # Everything moves one stage forward (stage S-1 wraps to 0 and is overwritten there).
        buf = jnp.roll(out, 1, axis=0)
        bseg, bpos = jnp.roll(bseg, 1, axis=0), jnp.roll(bpos, 1, axis=0)
        return (buf, bseg, bpos, store, outs), None

    buf = jnp.zeros((s_, *mb_shape), x.dtype)
    bseg = jnp.zeros((s_, *segs.shape[1:]), segment_ids.dtype)
    bpos = jnp.zeros((s_, *poss.shape[1:]), positions.dtype)
    init = (buf, bseg, bpos, jnp.zeros_like(xs), jnp.zeros_like(xs))
    (_, _, _, _, outs), _ = jax.lax.scan(iteration, init, jnp.arange(r_ * m_ + s_ - 1))
    return _merge(outs)


def _stage_spec(ndim: int, stage_dim: int):
    """Only the stage dimension is pinned (to `stage`); GSPMD keeps choosing the rest."""
    from jax.sharding import PartitionSpec as P

    spec = [P.UNCONSTRAINED] * ndim
    spec[stage_dim] = "stage"
    return P(*spec)
