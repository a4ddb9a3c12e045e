"""Where a run's wall clock goes, across all its attempts (process lifetimes).

Each attempt's clock is always in exactly one phase: `startup` (from the process's creation:
imports, mesh, data, until the first step is dispatched), `compile` (the first step's call, which
compiles), `data` (waiting for the next batch), `step` (training steps: dispatch and waiting for
the device), `checkpoint_save`, `checkpoint_restore`, `eval` (held-out evaluation). The phases
therefore add up to the attempt's wall time. A heartbeat thread rewrites
`<workdir>/goodput/attempt_<n>.json` twice a second, so even an attempt that was SIGKILLed leaves
its accounts up to half a second before its end, together with the phase totals at each
checkpoint it saved. When a later attempt restores step S, everything an earlier attempt spent
after it had saved step S was wasted: `summarize` moves those seconds into `lost` (steps
recomputed after a restore and the gap between the last checkpoint and the crash). Goodput is
`step / wall` over all attempts; time between attempts (a scheduler's queue) is not seen.

The phases are also profiler trace annotations, so a captured trace shows the same names.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path

import jax

_IMPORTED = time.time()
PHASES = ("startup", "compile", "data", "step", "checkpoint_save", "checkpoint_restore", "eval")
BADPUT = ("lost", *(p for p in PHASES if p != "step"))


def process_start_time() -> float:
    """The Unix time this process was created (start-up counts from there, imports included):
    its age on the boot-time clock, which /proc/self/stat's start time is counted on (psutil's
    create_time adds that to the boot's wall time, rounded to the second, and drifts with NTP)."""
    try:
        with open("/proc/self/stat") as f:
            after_name = f.read().rsplit(")", 1)[1].split()
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - int(after_name[19]) / os.sysconf("SC_CLK_TCK")
        return time.time() - age
    except (OSError, ValueError, IndexError, AttributeError):  # not Linux: from the first import instead
        return _IMPORTED


class Goodput:
    """The phase clock of one attempt (process 0 writes it; other processes keep it in memory)."""

    def __init__(self, workdir: str | os.PathLike, start_step: int, enabled: bool = True,
                 heartbeat_s: float = 0.5, started: float | None = None):
        self.dir = Path(workdir) / "goodput"
        self.enabled = enabled
        self.start_time = started if started is not None else process_start_time()
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.current, self._since = "startup", time.perf_counter() - (time.time() - self.start_time)
        self.start_step, self.step, self.saves = start_step, start_step, {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.attempt = 0
        if enabled:
            self.dir.mkdir(parents=True, exist_ok=True)
            self.attempt = len(list(self.dir.glob("attempt_*.json")))
            self._path = self.dir / f"attempt_{self.attempt}.json"
            self._write()
            self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True)
            self._thread.start()

    def switch(self, phase: str) -> str:
        """Starts `phase` now; returns the phase that was running."""
        with self._lock:
            now = time.perf_counter()
            self.seconds[self.current] += now - self._since
            previous, self.current, self._since = self.current, phase, now
        return previous

    @contextlib.contextmanager
    def phase(self, phase: str):
        previous = self.switch(phase)
        try:
            with jax.profiler.TraceAnnotation(phase):
                yield
        finally:
            self.switch(previous)

    def snapshot(self) -> dict:
        """Phase totals so far, the running phase included (they add up to the wall time)."""
        with self._lock:
            seconds = dict(self.seconds)
            seconds[self.current] += time.perf_counter() - self._since
        return seconds

    def begin(self, step: int) -> None:
        """The step this attempt restored (known once the tiers were compared)."""
        self.start_step = self.step = step

    def saved(self, step: int) -> None:
        """Called when a checkpoint of `step` is saved: a later attempt may restart from here."""
        self.saves[step] = self.snapshot()

    def record(self) -> dict:
        return {"attempt": self.attempt, "start_time": self.start_time, "start_step": self.start_step,
                "step": self.step, "seconds": self.snapshot(), "saves": {str(k): v for k, v in self.saves.items()}}

    def _write(self) -> None:
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.record()))
        tmp.replace(self._path)

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            with contextlib.suppress(OSError):
                self._write()

    def close(self) -> None:
        if self.enabled:
            self._stop.set()
            self._thread.join()
            self._write()


def read_attempts(workdir: str | os.PathLike) -> list[dict]:
    paths = sorted(Path(workdir, "goodput").glob("attempt_*.json"), key=lambda p: int(p.stem.split("_")[1]))
    return [json.loads(p.read_text()) for p in paths]


def summarize(attempts: list[dict]) -> dict:
    """Seconds by phase over all attempts, with what later restores discarded moved to `lost`;
    `wall`, `goodput` (step / wall) and each badput share."""
    accounts = [dict(a["seconds"], lost=0.0) for a in attempts]
    for j, later in enumerate(attempts[1:], start=1):
        restored = later["start_step"]
        for i, earlier in enumerate(attempts[:j]):
            # The part of `earlier` after it saved `restored` (or all of it, when it never got there
            # but went past it anyway) did not survive.
            if earlier["step"] <= restored:
                continue
            base = earlier["saves"].get(str(restored)) if restored > earlier["start_step"] else None
            base = base or dict.fromkeys(PHASES, 0.0)
            for p in ("data", "step", "checkpoint_save", "eval"):
                moved = max(0.0, earlier["seconds"][p] - base.get(p, 0.0) - _already_lost(earlier, p, accounts[i]))
                accounts[i][p] -= moved
                accounts[i]["lost"] += moved
    total = {p: sum(a[p] for a in accounts) for p in (*PHASES, "lost")}
    wall = sum(total.values())
    out = {"attempts": len(attempts), "wall": wall, "seconds": total,
           "goodput": total["step"] / wall if wall else 0.0}
    out.update({f"badput_{p}": total[p] / wall if wall else 0.0 for p in BADPUT})
    return out


def _already_lost(attempt: dict, phase: str, account: dict) -> float:
    """What an earlier restore already moved out of this attempt's phase (never count it twice)."""
    return attempt["seconds"][phase] - account[phase]
