"""Profiler traces of chosen training steps (`train.profile_*`), for TensorBoard's profile plugin
or XProf: `<workdir>/profile/plugins/profile/<run>/*.xplane.pb`.

Steps are marked with `StepTraceAnnotation` (the viewers' step boundaries), the loop's phases
(data, checkpoint_save, eval, ...) are trace annotations (train/goodput.py), and the train step's
forward/backward and optimizer update are named scopes in the compiled program (train/step.py).
"""

from __future__ import annotations

from pathlib import Path

import jax


class Profiler:
    """Traces steps start .. start+steps-1 (1-based step numbers, as logged), and again every
    `every` steps after that when `every` > 0; `start` = 0 turns profiling off."""

    def __init__(self, directory: Path, start: int, steps: int, every: int = 0):
        self.directory, self.start, self.steps, self.every = directory, start, steps, every
        self.active = False

    def _window_start(self, done: int) -> bool:
        if not self.start or done < self.start:
            return False
        offset = done - self.start
        return offset == 0 or bool(self.every and offset % self.every == 0)

    def before(self, step: int) -> None:
        """Before loop index `step` (the step numbered step + 1)."""
        if not self.active and self._window_start(step + 1):
            self.directory.mkdir(parents=True, exist_ok=True)
            jax.profiler.start_trace(str(self.directory))
            self.active, self.until = True, step + self.steps

    def after(self, step: int, outputs) -> None:
        if self.active and step + 1 >= self.until:
            jax.block_until_ready(outputs)  # the trace holds the device's work, not only its dispatch
            self.stop()

    def stop(self) -> None:
        if self.active:
            jax.profiler.stop_trace()
            self.active = False
