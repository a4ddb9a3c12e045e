"""Where checkpoints are written and read (Orbax).

A jaxcoder checkpoint directory holds numbered steps; each step has the items
`params` (always), `opt_state` and `data_iter` (training runs only: the Grain iterator state,
one JSON file per process) and `meta` (JSON: the model config, the run config, tokenizer hash,
data-pipeline signature, step). Readers that only need weights (eval, export) restore
`params` alone, so an imported Hugging Face model is a checkpoint like any other.

The model's tokenizer travels with it: its defining files sit in `<checkpoint dir>/tokenizer/`
(written by `import` and by `train`), so evaluation, generation, export and continued training
use the tokenizer the weights were trained with, without a flag.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jaxcoder.model.config import ModelConfig


class CheckpointError(RuntimeError):
    pass


def _abs(path: str | os.PathLike) -> str:
    return str(Path(path).expanduser().absolute())


class Checkpointer:
    """A thin wrapper so the rest of jaxcoder never touches Orbax's API directly."""

    def __init__(self, directory: str | os.PathLike, *, max_to_keep: int | None = 3,
                 keep_every: int | None = None, read_only: bool = False, async_save: bool = True):
        self.directory = _abs(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, keep_period=keep_every,
                                               read_only=read_only, enable_async_checkpointing=async_save,
                                               create=not read_only)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, params: Any, *, opt_state: Any = None, meta: dict | None = None,
             data_iter: Any = None, force: bool = True) -> bool:
        """Saves asynchronously; the data iterator's position is captured now, at the call."""
        items = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta or {})}
        if opt_state is not None:
            items["opt_state"] = ocp.args.StandardSave(opt_state)
        if data_iter is not None:
            import grain

            items["data_iter"] = grain.checkpoint.CheckpointSave(data_iter)
        return self.manager.save(step, args=ocp.args.Composite(**items), force=force)

    def restore(self, step: int | None = None, *, params_target: Any = None, opt_state_target: Any = None,
                data_iter: Any = None):
        """Returns (step, params, opt_state or None, meta). Targets carry shapes/dtypes/shardings;
        a given `data_iter` is moved (in place) to the saved position."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint found in {self.directory}")
        items = {"params": ocp.args.StandardRestore(params_target), "meta": ocp.args.JsonRestore()}
        if opt_state_target is not None:
            items["opt_state"] = ocp.args.StandardRestore(opt_state_target)
        if data_iter is not None:
            import grain

            if not self.has_item(step, "data_iter"):
                raise CheckpointError(f"checkpoint {self.directory}/{step} has no data iterator state")
            items["data_iter"] = grain.checkpoint.CheckpointRestore(data_iter)
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        return step, out["params"], out.get("opt_state") if opt_state_target is not None else None, out["meta"]

    def meta(self, step: int) -> dict:
        """The JSON metadata of a step, read without touching arrays ({} when absent)."""
        meta_file = Path(self.directory) / str(step) / "meta" / "metadata"
        return json.loads(meta_file.read_text()) if meta_file.exists() else {}

    def has_item(self, step: int, item: str) -> bool:
        return (Path(self.directory) / str(step) / item).exists()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def read_meta(directory: str | os.PathLike, step: int | None = None) -> tuple[int, dict]:
    """The JSON metadata of a step (latest by default), without touching arrays."""
    ckpt = Checkpointer(directory, read_only=True)
    step = ckpt.latest_step() if step is None else step
    if step is None:
        raise CheckpointError(f"no checkpoint found in {_abs(directory)}")
    return step, ckpt.meta(step)


TOKENIZER_DIR = "tokenizer"


def store_tokenizer(directory: str | os.PathLike, tokenizer) -> Path:
    """Copies the tokenizer's files into the checkpoint directory (once; the same files again
    are a no-op, others are refused: one checkpoint directory, one tokenizer)."""
    target = Path(_abs(directory)) / TOKENIZER_DIR
    if target.exists():
        from jaxcoder.data.tokenizer import load_tokenizer

        if load_tokenizer(target).sha256() != tokenizer.sha256():
            raise ValueError(f"{target} holds another tokenizer than {tokenizer.path}; a checkpoint "
                                  "directory keeps the tokenizer its weights were trained with")
        return target
    tmp = target.with_name(f".{TOKENIZER_DIR}.tmp-{os.getpid()}")
    tokenizer.copy_to(tmp)
    tmp.rename(target)
    return target


def checkpoint_tokenizer(directory: str | os.PathLike, meta: dict | None = None):
    """The tokenizer stored with a checkpoint, else the one its metadata names (checkpoints
    written before tokenizers travelled with them), else None."""
    from jaxcoder.data.tokenizer import load_tokenizer

    stored = Path(_abs(directory)) / TOKENIZER_DIR
    if stored.exists():
        return load_tokenizer(stored)
    legacy = (meta or {}).get("tokenizer_path")
    return load_tokenizer(legacy) if legacy and Path(legacy).exists() else None


def recorded_layout(meta: dict) -> str | None:
    """The tokenizer layout (FIM token set) a checkpoint's run config recorded, if any."""
    return ((meta.get("config") or {}).get("tokenizer") or {}).get("layout")


def load_params(directory: str | os.PathLike, step: int | None = None) -> tuple[ModelConfig, dict, dict]:
    """(model config, params, meta) from a checkpoint, restored onto the default device."""
    from jaxcoder.model.functional import abstract_params

    step, meta = read_meta(directory, step)
    if "model" not in meta:
        raise CheckpointError(f"checkpoint {directory} step {step} has no model config in its metadata")
    cfg = ModelConfig.from_dict(meta["model"])
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device), abstract_params(cfg))
    _, params, _, meta = Checkpointer(directory, read_only=True).restore(step, params_target=target)
    return cfg, params, meta
