"""Training metrics: model FLOPs utilisation, and where metrics are written (JSONL, TensorBoard,
Weights & Biases, MLflow)."""

from __future__ import annotations

import hashlib
import json
import time
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


WRITERS = ("tensorboard", "wandb", "mlflow")


class MetricWriter:
    """Appends records to `metrics.jsonl` (always) and to the trackers named in `train.writers`:
    TensorBoard event files (`<workdir>/tensorboard`), Weights & Biases, MLflow. Process 0 only.
    Every tracker gets the same scalars, named `train/<key>`; all attempts of a run go to one
    tracker run (its id is derived from, or kept in, the workdir)."""

    def __init__(self, workdir: Path, enabled: bool = True, writers: tuple[str, ...] = ("tensorboard",),
                 project: str = "jaxcoder", config: dict | None = None):
        self.enabled = enabled
        self.jsonl = (workdir / "metrics.jsonl").open("a") if enabled else None
        self.sinks = [_SINKS[w](workdir, project, config or {}) for w in writers] if enabled else []

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        self.jsonl.write(json.dumps(record) + "\n")
        self.jsonl.flush()
        scalars = {f"train/{k}": float(v) for k, v in record.items()
                   if k != "step" and isinstance(v, int | float) and not isinstance(v, bool)}
        for sink in self.sinks:
            sink.write(scalars, record["step"])

    def close(self) -> None:
        if self.enabled:
            self.jsonl.close()
            for sink in self.sinks:
                sink.close()


def _missing(writer: str, package: str) -> ValueError:
    return ValueError(f"train.writers includes {writer}, but {package} is not installed: "
                      f"pip install 'jaxcoder[tracking]' (or remove {writer} from train.writers)")


def run_id(workdir: Path) -> str:
    """A tracker run id that every attempt of this workdir shares."""
    return hashlib.sha256(str(Path(workdir).resolve()).encode()).hexdigest()[:16]


class _TensorBoard:
    def __init__(self, workdir: Path, project: str, config: dict):
        from tensorboardX import SummaryWriter

        self.tb = SummaryWriter(str(workdir / "tensorboard"))

    def write(self, scalars: dict, step: int) -> None:
        for k, v in scalars.items():
            self.tb.add_scalar(k, v, step)
        self.tb.flush()

    def close(self) -> None:
        self.tb.close()


class _WandB:
    """Online, or offline with WANDB_MODE=offline (`wandb sync` uploads it later)."""

    def __init__(self, workdir: Path, project: str, config: dict):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        self.run = wandb.init(project=project, name=Path(workdir).name, id=run_id(workdir), resume="allow",
                              dir=str(workdir), config=config)

    def write(self, scalars: dict, step: int) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    """To MLFLOW_TRACKING_URI (MLflow's own default when unset); the run id is kept in
    `<workdir>/mlflow_run.json`, so a resumed run logs into the same MLflow run."""

    def __init__(self, workdir: Path, project: str, config: dict):
        try:
            from mlflow.entities import Metric
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise _missing("mlflow", "mlflow (or mlflow-skinny)") from None
        self.metric, self.client = Metric, MlflowClient()
        kept = workdir / "mlflow_run.json"
        uri = self.client.tracking_uri
        known = json.loads(kept.read_text()) if kept.exists() else {}
        if known.get("tracking_uri") == uri:
            self.run = known["run_id"]
        else:
            exp = self.client.get_experiment_by_name(project)
            exp_id = exp.experiment_id if exp else self.client.create_experiment(project)
            self.run = self.client.create_run(exp_id, run_name=Path(workdir).name,
                                              tags={"jaxcoder.workdir": str(workdir)}).info.run_id
            kept.write_text(json.dumps({"tracking_uri": uri, "run_id": self.run}))

    def write(self, scalars: dict, step: int) -> None:
        now = int(time.time() * 1000)
        self.client.log_batch(self.run, metrics=[self.metric(k, v, now, step) for k, v in scalars.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run)


_SINKS = {"tensorboard": _TensorBoard, "wandb": _WandB, "mlflow": _MLflow}
