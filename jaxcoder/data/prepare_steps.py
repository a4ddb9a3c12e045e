"""The steps of `data prepare`, as Beam DoFns over the pure functions of jaxcoder/data.

Each step reads or writes texts only through work files (`spill.py`); what crosses a shuffle is
small: hashes, ids, references, MinHash signatures. Counts go to Beam counters in the `jaxcoder`
namespace (`files_seen`, `dropped/<reason>`, `redacted/<kind>`, `duplicates/...`), which the
manifest reports.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections import defaultdict

import apache_beam as beam
import numpy as np

from jaxcoder.data import shards, spill, storage
from jaxcoder.data.config import DataConfig
from jaxcoder.data.decontam import Decontaminator
from jaxcoder.data.dedup import MinHasher, bucket_edges, content_hash
from jaxcoder.data.filters import content_filter, decode_bytes
from jaxcoder.data.languages import REPO_LEVEL, detect_language, language_slug
from jaxcoder.data.pii import redact
from jaxcoder.data.repo_order import RepoFile, repo_samples
from jaxcoder.data.sources import Unit, read_unit

__all__ = ["BandEdges", "BuildSamples", "ReadAndFilter", "Tokenize", "TrainTokenizer", "WriteShard", "bucket_edges",
           "tokenize_key"]


def count(name: str, n: int = 1) -> None:
    if n:
        beam.metrics.Metrics.counter("jaxcoder", name).inc(n)


def _key(text: str) -> str:
    """A short stable file name for a unit, repository or work file."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]


# ------------------------------------------------------------------ files
class ReadAndFilter(beam.DoFn):
    """An input unit -> its files that pass every per-file rule (language, size, encoding,
    StarCoder's filters, decontamination), PII-redacted, written to the unit's work file; yields
    one small record per kept file and, tagged `skipped`, the malformed records."""

    def __init__(self, data: DataConfig, work: str):
        self.data, self.work = data, work

    def setup(self):
        self.decontam = Decontaminator(self.data.decontamination)

    def process(self, unit: Unit):
        d = self.data
        with spill.Writer(f"{self.work}/files/{_key(unit.key)}.array_record") as out:
            for repo, path, raw, reason in read_unit(unit, d.sources, d.filters.max_file_bytes):
                if not repo:  # a malformed record of a record file
                    count(f"dropped/{reason}")
                    file, line = path.rsplit(":", 1)
                    yield beam.pvalue.TaggedOutput("skipped", {"file": file, "line": int(line), "reason": reason})
                    continue
                count("files_seen")
                text, language, reason = self._check(path, raw, reason)
                if reason is not None:
                    count(f"dropped/{reason}")
                    continue
                if d.pii:
                    text, found = redact(text)
                    for kind, n in found.items():
                        count(f"redacted/{kind}", n)
                index = out.add(spill.pack(text))
                yield {"repo": repo, "path": path, "language": language, "sha": content_hash(text),
                       "ref": (out.path, index)}

    def _check(self, path, raw, reason):
        """(text, language, drop reason or None) of one file."""
        d = self.data
        language = detect_language(path)
        if reason is None:
            if len(raw) < d.filters.min_file_bytes:
                reason = "too_small"
            elif language is None:
                reason = "unknown_language"
            elif d.languages and language not in d.languages:
                reason = "language_not_selected"
        text = None
        if reason is None:
            text, reason = decode_bytes(raw)
        if reason is None:
            reason = content_filter(text, language, d.filters)
        if reason is None and self.decontam.check(text):
            reason = "contaminated"
        return text, language, reason


def keep_first_copy(item, what: str):
    """Exact dedup: of the records sharing a content hash, the first by `what`'s order survives."""
    _, records = item
    records = sorted(records, key=lambda r: (r["repo"], r["path"]) if what == "files" else r["id"])
    count("duplicates/exact", len(records) - 1)
    return records[0]


# ---------------------------------------------------------------- samples
class BuildSamples(beam.DoFn):
    """A repository's surviving files -> its samples: repository-level languages in dependency
    order (DeepSeek-Coder's Algorithm 1, or StarCoder2's format), every other file on its own;
    each with its content hash and MinHash signature, its text written to the repository's work
    file. Sample ids (`<repo>\\0<index>`) order the corpus: repository by name, then sample."""

    def __init__(self, data: DataConfig, work: str):
        self.data, self.work = data, work

    def setup(self):
        self.hasher = MinHasher(self.data.dedup)

    def process(self, item):
        repo, records = item
        d = self.data
        records = sorted(records, key=lambda r: r["path"])
        texts = read_texts([r["ref"] for r in records])
        files = [RepoFile(path=r["path"], language=r["language"], text=texts[tuple(r["ref"])]) for r in records]
        count("files_kept", len(files))
        count("repositories")
        grouped = [f for f in files if d.repo_level and f.language in REPO_LEVEL]
        samples = repo_samples(repo, grouped, style=d.repo_format) if grouped else []
        samples += [(f.language, f.text) for f in files if not (d.repo_level and f.language in REPO_LEVEL)]
        count("samples", len(samples))
        with spill.Writer(f"{self.work}/samples/{_key(repo)}.array_record") as out:
            for k, (language, text) in enumerate(samples):
                sig = self.hasher.signature(text) if d.near_dedup else None
                yield {"id": f"{repo}\0{k:07d}", "language": language, "sha": content_hash(text),
                       "chars": len(text), "ref": (out.path, out.add(spill.pack(text))),
                       "sig": None if sig is None else sig.tolist()}


def read_texts(refs) -> dict[tuple[str, int], str]:
    """(work file, index) -> text, each file opened once."""
    out = {}
    for path, indices in spill.by_file(tuple(r) for r in refs).items():
        for i, data in spill.read_records(path, indices):
            out[(path, i)] = spill.unpack(data)
    return out


class BandEdges(beam.DoFn):
    """A sample's LSH band keys (StarCoder's 25 x 10 bands of its signature)."""

    def __init__(self, data: DataConfig):
        self.data = data

    def setup(self):
        self.hasher = MinHasher(self.data.dedup)

    def process(self, sample):
        if sample["sig"] is not None:
            for key in self.hasher.band_keys(np.asarray(sample["sig"], np.uint32)):
                yield key, sample["id"]


# --------------------------------------------------------------- sharding
def split_of(sample: dict, heldout_fraction: float) -> str:
    return "heldout" if int(sample["sha"][:8], 16) / 0xFFFFFFFF < heldout_fraction else "train"


def shard_counts(totals: dict, tokens_per_shard: int) -> dict:
    """(language, split) -> how many shards: ~tokens_per_shard tokens each (3.2 bytes a token),
    never more than documents."""
    return {key: max(1, min(n, math.ceil(chars / (tokens_per_shard * 3.2)))) for key, (chars, n) in totals.items()}


def shard_of(sample: dict, counts: dict, heldout_fraction: float) -> tuple[str, str, int, int]:
    """(language, split, shard index, shard count): shards of one language and split by hash."""
    split = split_of(sample, heldout_fraction)
    n = counts[(sample["language"], split)]
    return sample["language"], split, int(sample["sha"][8:16], 16) % n, n


# Samples tokenized together: a repository's samples share a work file, and the largest
# repositories would otherwise leave one worker tokenizing while the others wait.
TOKENIZE_BATCH = 64


def tokenize_key(sample: dict) -> tuple[tuple[str, int], dict]:
    """(work file, batch of its indices): what one `Tokenize` call handles."""
    path, index = sample["ref"]
    return (path, index // TOKENIZE_BATCH), sample


class Tokenize(beam.DoFn):
    """A batch of one work file's kept samples -> tokenized, cut into pieces longer ones (max_sample_tokens),
    written to one fragment per destination shard. A fragment record is the sample's sort key
    (content hash, piece index) followed by the piece's int32 tokens."""

    def __init__(self, data: DataConfig, work: str):
        self.data, self.work = data, work
        self._tok = None

    def process(self, item, tokenizer_path: str, counts: dict):
        if self._tok is None or self._tok_path != tokenizer_path:
            with local_tokenizer(tokenizer_path) as tok:
                self._tok, self._tok_path = tok, tokenizer_path
        tok, d = self._tok, self.data
        (path, batch), samples = item
        samples = sorted(samples, key=lambda s: s["ref"][1])
        texts = read_texts([s["ref"] for s in samples])
        ids = tok.encode_batch([texts[tuple(s["ref"])] for s in samples])
        bos = [tok.bos_id] if tok.add_bos else []  # models whose sequences start with BOS
        by_shard: dict[tuple, list[bytes]] = defaultdict(list)
        info: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        for s, doc in zip(samples, ids, strict=True):
            doc = np.asarray(bos + doc, np.int32)
            dest = shard_of(s, counts, d.heldout_fraction)
            pieces = shards.to_records(doc, d.max_sample_tokens, tok.line_ends())
            count("samples_split", int(len(pieces) > 1))
            key = bytes.fromhex(s["sha"])
            for k, piece in enumerate(pieces):
                by_shard[dest].append(key + k.to_bytes(4, "big") + np.asarray(piece, "<i4").tobytes())
            info[dest][0] += len(pieces)
            info[dest][1] += len(doc)
        for dest, records in sorted(by_shard.items()):
            language, split, shard, n = dest
            name = _key(f"{path}:{batch}")
            fragment = f"{self.work}/fragments/{language_slug(language)}/{split}-{shard:05d}/{name}.array_record"
            spill.write_records(fragment, records)
            yield dest, {"path": fragment, "records": info[dest][0], "tokens": info[dest][1]}


_SORT_KEY = 32 + 4  # sha256 bytes + piece index


def shard_path(dest: tuple) -> str:
    language, split, shard, n = dest
    slug = language_slug(language)
    return f"{slug}/{'' if split == 'train' else 'heldout-'}{slug}-{shard:05d}-of-{n:05d}.array_record"


class WriteShard(beam.DoFn):
    """A shard's fragments -> the shard: records sorted by (content hash, piece), so the output
    does not depend on how the work was split between workers."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def process(self, item):
        dest, fragments = item
        records = []
        for f in sorted(fragments, key=lambda f: f["path"]):
            records += [r for _, r in spill.read_records(f["path"])]
        records.sort(key=lambda r: r[:_SORT_KEY])
        rel = shard_path(dest)
        spill.write_records(f"{self.out_dir}/{rel}", (r[_SORT_KEY:] for r in records))
        yield {"language": dest[0], "split": dest[1], "path": rel, "records": len(records),
               "tokens": sum(f["tokens"] for f in fragments)}


class TrainTokenizer(beam.DoFn):
    """The deterministic training sample (the samples with the smallest content hashes) -> a
    tokenizer trained here and written to `dest`; yields `dest`."""

    def __init__(self, tokenizer, dest: str):
        self.tokenizer, self.dest = tokenizer, dest

    def process(self, sample_list):
        import tempfile

        from jaxcoder.data.tokenizer import train_tokenizer

        ordered = sorted(sample_list, key=lambda s: (s["sha"], s["id"]))
        texts = read_texts([s["ref"] for s in ordered])
        t = self.tokenizer
        with tempfile.TemporaryDirectory(prefix="jaxcoder-") as tmp:
            trained = train_tokenizer([texts[tuple(s["ref"])] for s in ordered], os.path.join(tmp, "tokenizer"),
                                      kind=t.kind, vocab_size=t.vocab_size, layout=t.layout)
            storage.copy_out(trained, self.dest)
        yield self.dest


@contextlib.contextmanager
def local_tokenizer(path: str):
    """The tokenizer at `path` (a `.model` file or a tokenizer directory, local or remote), loaded."""
    from jaxcoder.data.tokenizer import load_tokenizer

    with storage.local_copy(path, is_dir=not path.endswith(".model")) as local:
        yield load_tokenizer(local)
