"""The Grain training pipeline: prepared shards -> mixture -> FIM -> packing -> batches.

Per language: ArrayRecord source, globally shuffled with its own seed, repeated, and sliced by
JAX process (each host reads its own share). Languages are mixed with the config's weights (token
fractions, turned into record probabilities with each language's mean record length); FIM is
applied per document *before* packing (DeepSeek-Coder, Bavarian et al.), with decisions drawn per
stream (`stream_seed`); documents (plus EOS) are
packed into rows of seq_len + 1 tokens with segment ids and restarting positions (long documents
continue on the next row as a new segment); the rows are shuffled within a window of
`shuffle_rows` (else a batch would be consecutive rows of one long document), batched and
prefetched by worker processes.

The global batch is made of `streams` independent loaders (each reads every streams-th record of
each language); processes split the streams between them. With a fixed stream count the data is the
same whatever the number of processes, so a 2-host run sees exactly the batches of a 1-host run.

The iterator state is checkpointable with Orbax (`grain.checkpoint.CheckpointSave`). Its layout
depends on the worker count and the mixture, so `signature()` records them and the trainer refuses
to resume with different ones instead of silently changing the data.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import grain
import numpy as np

from jaxcoder.data import shards
from jaxcoder.data.fim import FimConfig, FimTokens, permute
from jaxcoder.data.tokenizer import load_tokenizer


@dataclasses.dataclass(frozen=True)
class LoaderConfig:
    data_dir: str
    seq_len: int
    batch_size: int  # per process
    seed: int = 0
    mixture: tuple[tuple[str, float], ...] = ()  # (language, weight); empty = by token count
    fim: FimConfig = FimConfig()
    num_workers: int = 0
    worker_buffer: int = 2
    read_threads: int = 4
    shuffle_rows: int = 0  # window of packed rows shuffled before batching (0 = off)

    def signature(self, process_count: int, streams: int = 1) -> dict:
        """What a saved iterator state depends on; a resume must match it exactly."""
        return {"data_dir": str(Path(self.data_dir).absolute()), "seq_len": self.seq_len,
                "batch_size": self.batch_size, "seed": self.seed, "mixture": [list(m) for m in self.mixture],
                "fim": dataclasses.asdict(self.fim), "num_workers": self.num_workers,
                "process_count": process_count, "streams": streams,
                "shuffle_rows": self.shuffle_rows}


def resolve_mixture(manifest: dict, mixture) -> tuple[tuple[str, float], ...]:
    """Normalised (language, weight) pairs. Unset weights follow the token counts."""
    if not mixture:
        total = manifest["total_tokens"]
        return tuple((lang, n / total) for lang, n in sorted(manifest["tokens"].items()) if n)
    weights = dict(mixture)
    missing = sorted(set(weights) - set(manifest["shards"]))
    if missing:
        raise ValueError(f"data.mixture names language(s) without prepared shards: {', '.join(missing)}; "
                         f"prepared: {', '.join(sorted(manifest['shards']))}")
    if any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
        raise ValueError(f"data.mixture weights must be non-negative and not all zero: {weights}")
    total = sum(weights.values())
    return tuple((lang, w / total) for lang, w in sorted(weights.items()) if w > 0)


def record_weights(manifest: dict, mixture: tuple[tuple[str, float], ...]) -> list[float]:
    """The probability of drawing a record of each language so that the languages' share of
    *tokens* follows `mixture` (records of different languages differ in mean length by 10x)."""
    per_record = []
    for lang, w in mixture:
        records = sum(s["records"] for s in manifest["shards"][lang])
        per_record.append(w * records / max(1, manifest["tokens"][lang]))
    total = sum(per_record)
    return [w / total for w in per_record]


class _Fim(grain.transforms.RandomMap):
    """FIM per document, then EOS. Holds the tokenizer path, so it pickles into workers."""

    def __init__(self, tokenizer_path: str, fim: FimConfig):
        self.tokenizer_path, self.fim = tokenizer_path, fim
        self._tok = self._ids = None

    def _tokenizer(self):
        # Streams call this from several threads: the sentinel ids are set before the tokenizer
        # that marks them ready (a thread that saw the tokenizer read missing ids before).
        if self._tok is None:
            tok = load_tokenizer(self.tokenizer_path)
            self._ids = FimTokens.from_tokenizer(tok, self.fim.layout) if self.fim.rate > 0 else None
            self._tok = tok
        return self._tok

    def random_map(self, element, rng: np.random.Generator):
        tok = self._tokenizer()
        doc, last = element["tokens"], element["last"]
        if self.fim.rate > 0:
            # A document's BOS (tokenizers that add one) stays first, outside the FIM transform.
            head = doc[:1] if tok.add_bos and len(doc) and doc[0] == tok.bos_id else doc[:0]
            body = doc[len(head):]
            body = permute(body, rng, tok, self.fim, self._ids, end_id=tok.eos_id, last=last)
            doc = np.concatenate([head, body]) if len(head) else body
        # EOS ends a document; a stored piece of a longer one runs on (shards.CONTINUES).
        return {"tokens": np.concatenate([doc, np.asarray([tok.eos_id], np.int32)]) if last else doc}


def stream_seed(seed: int, stream: int) -> int:
    """The seed of one loader stream's FIM decisions and row shuffle: each stream draws its own
    (with the run seed, stream 0 draws what a one-stream run always drew)."""
    return seed if stream == 0 else int(np.random.SeedSequence([seed, stream]).generate_state(1)[0])


def to_model_batch(batch: dict) -> dict:
    """Packed rows [B, T+1] -> inputs/targets/segment_ids/positions/loss_mask [B, T]."""
    tokens, seg, pos = batch["tokens"], batch["tokens_segment_ids"], batch["tokens_positions"]
    same = (seg[:, 1:] == seg[:, :-1]) & (seg[:, 1:] != 0)
    return {"inputs": tokens[:, :-1], "targets": tokens[:, 1:], "segment_ids": seg[:, :-1],
            "positions": pos[:, :-1], "loss_mask": same.astype(np.int32)}


def documents(cfg: LoaderConfig, *, process_index: int = 0, process_count: int = 1) -> grain.MapDataset:
    """One stream's documents before packing: mixed by language, FIM-transformed, EOS appended."""
    manifest = shards.load_manifest(cfg.data_dir)
    tok_path = shards.tokenizer_path(cfg.data_dir, manifest)
    if cfg.fim.rate > 0:
        load_tokenizer(tok_path).check_layout(cfg.fim.layout, "data.fim.rate > 0")
    mixture = resolve_mixture(manifest, cfg.mixture)
    parts = []
    for i, (lang, _) in enumerate(mixture):
        source = grain.sources.ArrayRecordDataSource(shards.shard_paths(cfg.data_dir, manifest, lang))
        ds = grain.MapDataset.source(source).seed(cfg.seed * 1000 + i).shuffle().repeat()
        parts.append(ds[process_index::process_count].map(shards.decode_piece))
    ds = grain.MapDataset.mix(parts, record_weights(manifest, mixture)) if len(parts) > 1 else parts[0]
    return ds.random_map(_Fim(tok_path, cfg.fim), seed=stream_seed(cfg.seed, process_index))


def build(cfg: LoaderConfig, *, process_index: int = 0, process_count: int = 1) -> grain.IterDataset:
    """One stream's dataset (`process_index` of `process_count` streams; batch_size rows per batch);
    `iter()` it for a checkpointable iterator."""
    ds = documents(cfg, process_index=process_index, process_count=process_count)
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=cfg.read_threads, prefetch_buffer_size=64))
    it = grain.experimental.ConcatThenSplitIterDataset(it, length_struct={"tokens": cfg.seq_len + 1})
    if cfg.shuffle_rows > 1:
        it = grain.experimental.WindowShuffleIterDataset(it, window_size=cfg.shuffle_rows,
                                                         seed=stream_seed(cfg.seed, process_index) + 1)
    it = it.batch(cfg.batch_size, drop_remainder=True).map(to_model_batch)
    if cfg.num_workers > 0:
        it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.num_workers,
                                                         per_worker_buffer_size=cfg.worker_buffer))
    return it


def check_resume(saved: dict | None, current: dict) -> None:
    """Refuses a resume whose data settings differ from the ones the iterator state was saved with."""
    if saved is None:
        return
    diffs = {k: (saved.get(k), v) for k, v in current.items() if saved.get(k) != v}
    if diffs:
        detail = "; ".join(f"{k}: saved {json.dumps(a)} now {json.dumps(b)}" for k, (a, b) in diffs.items())
        raise ValueError("cannot resume: the data pipeline changed since the checkpoint was written, so the "
                         f"saved iterator state would not reproduce the data ({detail}). Restore the old "
                         "settings, or start a new workdir.")


def heldout(cfg: LoaderConfig, *, language: str | None = None) -> grain.IterDataset:
    """Deterministic left-to-right batches of the held-out shards (no shuffle, no FIM), one pass.
    Nothing is dropped: the last row and the last batch are padded with masked rows, so a language
    smaller than one batch is still measured."""
    manifest = shards.load_manifest(cfg.data_dir)
    table = manifest.get("heldout_shards", {})
    languages = [language] if language else sorted(table)
    paths = [p for lang in languages for p in shards.shard_paths(cfg.data_dir, manifest, lang, "heldout")]
    if not paths:
        raise ValueError(f"{cfg.data_dir} has no held-out shards (data.heldout_fraction was 0)")
    eos = load_tokenizer(shards.tokenizer_path(cfg.data_dir, manifest)).eos_id
    ds = grain.MapDataset.source(grain.sources.ArrayRecordDataSource(paths)).map(shards.decode_piece)
    ds = ds.map(lambda p: {"tokens": np.concatenate([p["tokens"], np.asarray([eos], np.int32)]) if p["last"]
                           else p["tokens"]})
    it = grain.experimental.ConcatThenSplitIterDataset(ds.to_iter_dataset(), length_struct={"tokens": cfg.seq_len + 1})
    return it.batch(cfg.batch_size, drop_remainder=False).map(lambda b: to_model_batch(_pad_rows(b, cfg.batch_size)))


def _pad_rows(batch: dict, rows: int) -> dict:
    """Pads a short batch with all-zero rows (segment 0: never attended, never in the loss)."""
    short = rows - len(batch["tokens"])
    if short <= 0:
        return batch
    return {k: np.concatenate([v, np.zeros((short, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}


def _restore_tuples(state):
    """Undoes what JSON does to Grain's packing state: ConcatThenSplit tests for "no remainder"
    with `slice != (-1, -1)`, which a JSON list [-1, -1] always passes, so a state saved with no
    remainder (every state inside the first shuffle window) would restore one row off."""
    if isinstance(state, dict):
        return {k: ({f: tuple(v) for f, v in val.items()} if k == "remainder_slices" else _restore_tuples(val))
                for k, val in state.items()}
    return state


class StreamSet:
    """The streams one process owns, concatenated along the batch: a checkpointable iterator.

    The state is JSON bytes {stream index: grain state}, which Grain's Orbax handler stores per
    process (`grain.checkpoint.CheckpointSave`).
    """

    def __init__(self, cfg: LoaderConfig, streams: int, process_index: int = 0, process_count: int = 1):
        if streams % process_count:
            raise ValueError(f"data.streams ({streams}) must be a multiple of the process count ({process_count})")
        per = streams // process_count
        self.indices = list(range(process_index * per, (process_index + 1) * per))
        self.iters = [iter(build(cfg, process_index=i, process_count=streams)) for i in self.indices]

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        parts = [next(it) for it in self.iters]
        return parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def get_state(self) -> bytes:
        return json.dumps({str(i): it.get_state() for i, it in zip(self.indices, self.iters, strict=True)}).encode()

    def set_state(self, state: str | bytes) -> None:
        saved = json.loads(state)
        missing = [i for i in self.indices if str(i) not in saved]
        if missing:
            raise ValueError(f"the saved data state lacks stream(s) {missing}; was data.streams changed?")
        for i, it in zip(self.indices, self.iters, strict=True):
            it.set_state(_restore_tuples(saved[str(i)]))

    def start_prefetch(self) -> None:
        """Called by Grain's checkpoint handler after a restore."""
        for it in self.iters:
            if hasattr(it, "start_prefetch"):
                it.start_prefetch()
