"""What a long run does when a step goes wrong: non-finite steps are skipped (the train step keeps
the old state, see train/step.py) up to `train.max_skipped_steps` in a row, then the run stops
naming the step; loss spikes are reported with the batch's data position; a state that is not
finite is never checkpointed."""

from __future__ import annotations

import collections
import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np


class NonFiniteError(ValueError):
    """The run's numbers went wrong, not the code: the CLI shows the message as one line."""


@jax.jit
def all_finite(tree) -> jax.Array:
    """True when every floating-point leaf of `tree` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


@dataclasses.dataclass
class Guard:
    """Reads each step's metrics on the host one step late (so the device never waits for it)."""

    max_skipped: int  # non-finite steps in a row a run survives
    spike_factor: float  # a loss above factor x the running median is a spike (0: off)
    spike_window: int = 100
    skipped_total: int = 0
    skipped_in_a_row: int = 0
    losses: collections.deque = dataclasses.field(init=False)
    warnings: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        self.losses = collections.deque(maxlen=self.spike_window)

    def check(self, step: int, metrics: dict, data_position: bytes | None) -> str | None:
        """Accounts for step `step` (1-based: the step that produced `metrics`); returns a warning
        line for a skipped step or a loss spike, raises NonFiniteError past the limit."""
        loss, skipped = float(metrics["loss"]), bool(float(metrics["skipped"]))
        where = _position(data_position)
        if skipped:
            self.skipped_total += 1
            self.skipped_in_a_row += 1
            if self.skipped_in_a_row > self.max_skipped:
                raise NonFiniteError(
                    f"step {step}: loss {loss} / gradient norm {float(metrics['grad_norm'])} not finite for "
                    f"{self.skipped_in_a_row} steps in a row (train.max_skipped_steps={self.max_skipped}); "
                    f"nothing non-finite was applied or saved. The batch's data position: {where}. Lower "
                    f"train.lr, raise train.max_skipped_steps, or resume from the last checkpoint")
            return (f"step {step}: loss {loss} / gradient norm {float(metrics['grad_norm'])} not finite: "
                    f"update skipped ({self.skipped_in_a_row} in a row, {self.skipped_total} in this attempt); "
                    f"data position {where}")
        self.skipped_in_a_row = 0
        warning = None
        if self.spike_factor and len(self.losses) >= min(10, self.spike_window):
            median = float(np.median(self.losses))
            if loss > self.spike_factor * median:
                warning = (f"step {step}: loss spike {loss:.4g} > {self.spike_factor:g} x running median "
                           f"{median:.4g}; data position {where}")
                self.warnings.append({"step": step, "loss": loss, "median": median, "data_position": where})
        self.losses.append(loss)
        return warning


def _position(state: bytes | None) -> str:
    if state is None:
        return "unknown"
    try:
        return json.dumps(json.loads(state), separators=(",", ":"))
    except ValueError:
        return repr(state)
