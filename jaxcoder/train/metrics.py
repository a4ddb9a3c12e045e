"""Training metrics: model FLOPs utilisation, and where metrics are written (JSONL, TensorBoard)."""

from __future__ import annotations

import json
from pathlib import Path

import jax

# Dense bf16 peak TFLOP/s per device (vendor datasheets; no sparsity).
PEAK_TFLOPS = {
    "H100": 989.0, "H200": 989.0, "H800": 989.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "A800": 312.0,
    "L40S": 362.0, "L4": 121.0, "TPU v4": 275.0, "TPU v5 lite": 197.0, "TPU v5e": 197.0, "TPU v5p": 459.0,
    "TPU v5": 459.0, "TPU v6 lite": 918.0, "TPU v6e": 918.0,
}


def device_peak_tflops(override: float = 0.0) -> float | None:
    """Per-device peak from the config override, else from the table by device kind (None if unknown)."""
    if override:
        return override
    kind = jax.devices()[0].device_kind
    for name in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if name.lower() in kind.lower():
            return PEAK_TFLOPS[name]
    return None


def mfu(tokens_per_s: float, flops_per_token: float, n_devices: int, peak_tflops: float | None) -> float | None:
    if not peak_tflops:
        return None
    return tokens_per_s * flops_per_token / (n_devices * peak_tflops * 1e12)


class MetricWriter:
    """Appends records to metrics.jsonl and TensorBoard event files (process 0 only)."""

    def __init__(self, workdir: Path, enabled: bool = True):
        self.enabled = enabled
        self.jsonl = (workdir / "metrics.jsonl").open("a") if enabled else None
        self.tb = None
        if enabled:
            try:
                from tensorboardX import SummaryWriter
                self.tb = SummaryWriter(str(workdir / "tensorboard"))
            except ImportError:  # pragma: no cover - tensorboardX is a dependency
                self.tb = None

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, int | float):
                    self.tb.add_scalar(f"train/{k}", v, record["step"])
            self.tb.flush()

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            if self.tb is not None:
                self.tb.close()
