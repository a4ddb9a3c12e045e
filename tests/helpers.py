"""Test helpers shared across modules."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np


def random_params(params, seed: int = 0, scale: float = 0.05):
    """Perturbs every parameter (biases and norm scales too) so no mapping hides behind zeros/ones."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: np.asarray(x) + scale * rng.standard_normal(x.shape).astype(np.float32), params)


def tiny_train_config(data_dir: str, workdir: str, **train):
    """A tiny DeepSeek-line run on a prepared dataset (vocab 1024), for training tests."""
    from jaxcoder.config import base_config

    cfg = base_config("deepseek-coder-tiny")
    cfg.workdir = str(workdir)
    cfg.data.prepared_dir = str(data_dir)
    cfg.model.update(vocab_size=1024, dtype="float32")
    cfg.train.update(steps=5, batch_size=8, seq_len=64, lr=3e-3, warmup_steps=2, log_every=1, eval_every=1000,
                     checkpoint_every=1000, eval_batches=1)
    cfg.train.update(**train)
    return cfg


def free_port() -> int:
    """A local TCP port no one listens on now, for a test's jax.distributed coordinator."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_overrides(data_dir: str, workdir: str, steps: int, **extra) -> list[str]:
    """The same tiny run as command-line flags for `jaxcoder train` subprocesses."""
    flags = {"model.vocab_size": 1024, "data.prepared_dir": data_dir, "workdir": workdir, "train.steps": steps,
             "train.batch_size": 8, "train.seq_len": 64, "train.lr": 3e-3, "train.warmup_steps": 2,
             "train.log_every": 1, "train.eval_every": 1000, "train.checkpoint_every": 1000,
             "model.dtype": "float32", "tokenizer.layout": "starcoder", "data.fim.spm_rate": 0.5, **extra}
    return ["--config=configs/deepseek_coder.py:tiny", *(f"--config.{k}={v}" for k, v in flags.items())]


DEEPSEEK_SPECIALS = ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>",
                     "<｜fim▁end｜>")


def deepseek_like_tokenizer(texts, out_dir, vocab_size: int = 1200):
    """A stand-in for DeepSeek-Coder's tokenizer (no download): byte-level BPE behind a sequence of
    regex splits whose first isolates each newline, its special tokens, BOS added to every
    sequence by the post-processor and `add_bos_token`, and `LlamaTokenizerFast` named as its
    class, as the published tokenizer_config.json does."""
    import json
    from pathlib import Path

    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"[\r\n]"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"\s?[A-Za-z\u00c0-\u024f]+"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"\s?[!-/:-~！-／：-～‘-‟　-。]+"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"\s+$"), behavior="isolated"),
        pre_tokenizers.Split(Regex(r"[一-龥ࠀ-一가-퟿]+"), behavior="isolated"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(DEEPSEEK_SPECIALS),
                                  show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer)
    bos = DEEPSEEK_SPECIALS[0]
    tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                                       special_tokens=[(bos, tok.token_to_id(bos))])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))

    def added(content):
        return {"__type": "AddedToken", "content": content, "lstrip": False, "normalized": True, "rstrip": False,
                "single_word": False}

    config = {"add_bos_token": True, "add_eos_token": False, "bos_token": added(bos),
              "eos_token": added(DEEPSEEK_SPECIALS[1]), "pad_token": added(DEEPSEEK_SPECIALS[1]), "legacy": True,
              "model_max_length": 16384, "tokenizer_class": "LlamaTokenizerFast", "unk_token": None,
              "clean_up_tokenization_spaces": False}
    (out / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False, indent=2))
    return out


def starcoder2_like_tokenizer(texts, out_dir, vocab_size: int = 1200):
    """A stand-in for StarCoder2's tokenizer: jaxcoder's byte-level BPE trainer (GPT-2 regex, single
    digits, StarCoder2's special tokens first) with the published tokenizer_config.json's fields."""
    import json
    from pathlib import Path

    from jaxcoder.data.tokenizer import train_tokenizer

    out = train_tokenizer(texts, out_dir, kind="hf", vocab_size=vocab_size, layout="starcoder")
    config = {"tokenizer_class": "GPT2Tokenizer", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
              "unk_token": "<|endoftext|>", "add_prefix_space": False, "model_max_length": 1_000_000_000,
              "clean_up_tokenization_spaces": False}
    (Path(out) / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return out


def prepare_configs(out_dir, *, vocab_size: int = 1024, kind: str = "sentencepiece", tokenizer_path=None,
                    workers: int = 2, **fields):
    """The (data, tokenizer) sections of a `data prepare` run into `out_dir`: `fields` are data
    fields or data.sources fields (sources not named are empty)."""
    from jaxcoder.data.config import DataConfig, SourcesConfig
    from jaxcoder.data.tokenizer import TokenizerConfig

    names = {f.name for f in dataclasses.fields(SourcesConfig)}
    sources = {k: fields.pop(k) for k in list(fields) if k in names}
    sources.setdefault("repo_roots", ())
    data = DataConfig(prepared_dir=str(out_dir), sources=SourcesConfig(**sources), prepare_workers=workers, **fields)
    return data, TokenizerConfig(path=tokenizer_path, kind=kind, vocab_size=vocab_size)


@dataclasses.dataclass(frozen=True)
class Prepared:
    """A `data prepare` run's sections, with the fields tests read most."""

    data: object  # DataConfig
    tokenizer: object  # TokenizerConfig

    @property
    def out_dir(self) -> str:
        return self.data.prepared_dir

    @property
    def max_sample_tokens(self) -> int:
        return self.data.max_sample_tokens

    @property
    def tokenizer_path(self) -> str:
        """The tokenizer `data prepare` wrote (or copied) beside the shards."""
        from jaxcoder.data import shards

        return shards.tokenizer_path(self.out_dir, shards.load_manifest(self.out_dir))


def scripted_context(run, store, answer, tokenizer=None, layout: str = "deepseek"):
    """An EvalContext whose generate() stores `answer(key, stop)` for every pending key instead of
    sampling a model: the tasks' prompts, execution and scoring run as they do for real."""
    import dataclasses

    from jaxcoder.eval.tasks import EvalContext

    @dataclasses.dataclass
    class Scripted(EvalContext):
        def generate(self, jobs, sampling, stop, desc):
            for key, _ in jobs:
                if key not in self.store:
                    self.store.put(key, answer(key, stop))

    return Scripted(run=run, checkpoint="", mcfg=None, params=None, tokenizer=tokenizer, layout=layout, store=store)


def write_jsonl(path, rows) -> str:
    """Rows as a JSONL file (benchmark records the tests write); returns its path."""
    import json
    from pathlib import Path

    Path(path).write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def run_scripted(task: str, run, directory, answer, tokenizer=None, store_name: str = "samples.jsonl") -> dict:
    """Runs eval task `task` with `scripted_context` answers; its samples (and harness files) in `directory`."""
    from pathlib import Path

    from jaxcoder.eval.store import SampleStore
    from jaxcoder.eval.tasks import TASKS

    store = SampleStore(Path(directory) / store_name)
    try:
        return TASKS[task](scripted_context(run, store, answer, tokenizer=tokenizer))
    finally:
        store.close()
