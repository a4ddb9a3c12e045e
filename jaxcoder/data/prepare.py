"""`jaxcoder data prepare`: raw code -> filtered, deduplicated, redacted, dependency-ordered,
tokenized ArrayRecord shards and a manifest, as Apache Beam pipelines.

The same command runs in process on this machine (Beam's DirectRunner, one worker per core: the
default) and unchanged on Dataflow, Flink or Spark (`data.beam.runner`, `data.beam.options`). In
order, every step a transform over the pure functions of jaxcoder/data (`prepare_steps.py`):

1. read the input units (directory repositories, record files, The Stack's Parquet shards);
   language, binary / encoding / size checks, StarCoder's filters, decontamination, PII;
2. exact dedup by content hash (the first copy by repository and path survives);
3. repository samples (DeepSeek-Coder's Algorithm 1 or StarCoder2's format) with MinHash
   signatures, then exact dedup of samples;
4. LSH band keys -> candidate edges -> connected components by alternating large-star /
   small-star rounds (`components.py`), repeated until a round changes nothing: no process holds
   all documents or buckets;
5. one keeper per cluster (its smallest id) -> a tokenizer trained on a deterministic sample
   (unless `tokenizer.path` names one) -> tokens -> ArrayRecord shards per language and split,
   sharded by size -> `manifest.json` from Beam's counters and the shards written.

Texts stay in work files; only hashes, ids and references cross the shuffles, so the local
runner's memory does not grow with the corpus. The output is identical for any number of
workers and across reruns; re-running with unchanged inputs and config is a no-op; a changed input
builds into a temporary directory that replaces the old one atomically; a failed bundle retried
by the runner rewrites its own work files, so nothing half-written survives.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import time

from jaxcoder.data import shards, storage
from jaxcoder.data.components import ROUNDS_PER_PIPELINE, converge, star_rounds, write_edges
from jaxcoder.data.config import DataConfig
from jaxcoder.data.prepare_steps import local_tokenizer
from jaxcoder.data.runner import Runner
from jaxcoder.data.sources import Unit, split_unit, units, walk
from jaxcoder.data.tokenizer import Tokenizer, TokenizerConfig, load_tokenizer
from jaxcoder.fields import ConfigError


def prepare(data: DataConfig, tokenizer: TokenizerConfig | None = None, *, progress: bool = True) -> dict:
    """Runs the whole preparation into data.prepared_dir (the `data` and `tokenizer` sections);
    returns the manifest."""
    tokenizer = tokenizer or TokenizerConfig()
    start = time.perf_counter()
    inputs = units(data.sources)
    given = _given_tokenizer(data, tokenizer)
    fingerprint = _fingerprint(data, tokenizer, inputs, given)
    out_dir = data.prepared_dir if not storage.is_local(data.prepared_dir) else os.path.abspath(data.prepared_dir)
    manifest_path = storage.join(out_dir, shards.MANIFEST)
    if storage.exists(manifest_path):
        existing = json.loads(storage.read_bytes(manifest_path))
        if existing.get("fingerprint") == fingerprint:
            _tidy(out_dir, existing["build"])
            _say(progress, f"data prepare: {out_dir} is up to date (same inputs and config)")
            return existing
    build_name = f"build-{fingerprint[:16]}"
    build = storage.join(out_dir, build_name)
    storage.remove(build)  # what a killed run of this same build left
    work = storage.join(build, "work")
    run = Runner(data.beam, data.prepare_workers, progress)
    _say(progress, f"data prepare: {len(inputs)} input units on Beam's {run.name}")
    run.pipeline("read, filter, deduplicate, build samples, first component rounds",
                 lambda p: _files_to_edges(p, data, inputs, work))
    components = converge(run, work, f"{work}/edges", done=ROUNDS_PER_PIPELINE)
    tok_name = "tokenizer" if (given.kind if given else tokenizer.kind) == "hf" else "tokenizer.model"
    if given is not None:
        with tempfile.TemporaryDirectory(prefix="jaxcoder-") as tmp:
            copied = given.copy_to(tmp)  # the defining files only: a model repository holds more
            storage.copy_out(tmp if given.kind == "hf" else copied, storage.join(build, tok_name))
    run.pipeline("keep one per cluster, tokenize, write shards",
                 lambda p: _samples_to_shards(p, data, tokenizer, work, build, components,
                                              storage.join(build, tok_name), train=given is None))
    with local_tokenizer(storage.join(build, tok_name)) as tok:
        manifest = _manifest(data, tokenizer, tok, fingerprint, run, work, time.perf_counter() - start)
    manifest["build"] = build_name
    manifest["tokenizer"]["path"] = f"{build_name}/{tok_name}"
    for table in (manifest["shards"], manifest["heldout_shards"]):
        for entries in table.values():
            for e in entries:
                e["path"] = f"{build_name}/{e['path']}"
    storage.remove(work)
    text = json.dumps(manifest, indent=2, default=str)
    # The manifest is the commit point: written whole or not at all, it names the build its
    # readers use; a crash before it leaves the previous manifest and build in place.
    storage.write_bytes(manifest_path, text.encode())
    _tidy(out_dir, build_name)
    return json.loads(text)


def _tidy(out_dir: str, build_name: str) -> None:
    """Removes everything in the output directory but the manifest and the build it names: older
    builds, and what an interrupted run left."""
    for name in storage.entries(out_dir):
        if name not in (shards.MANIFEST, build_name):
            storage.remove(storage.join(out_dir, name))
    storage.remove(storage.join(out_dir, build_name, "work"))


def _say(progress: bool, text: str) -> None:
    if progress:
        print(text, flush=True)


def _files_to_edges(p, data: DataConfig, inputs: list[Unit], work: str) -> None:
    """Pipeline 1: input units -> kept, deduplicated samples (work/samples*.json) and the
    near-duplicate graph's edges (work/edges-*.json)."""
    import apache_beam as beam

    from jaxcoder.data import prepare_steps as steps

    files = (p | "units" >> beam.Create(inputs) | "parts" >> beam.FlatMap(split_unit, data.sources)
             | "spread parts" >> beam.Reshuffle()
             | "read + filter" >> beam.ParDo(steps.ReadAndFilter(data, work)).with_outputs("skipped", main="files"))
    _ = files.skipped | "skipped records" >> beam.Map(json.dumps) | "write skipped" >> beam.io.WriteToText(
        f"{work}/skipped", file_name_suffix=".json")
    samples = (files.files | "by content" >> beam.Map(lambda r: (r["sha"], r)) | "copies" >> beam.GroupByKey()
               | "first copy" >> beam.Map(steps.keep_first_copy, "files")
               | "by repository" >> beam.Map(lambda r: (r["repo"], r)) | "repository" >> beam.GroupByKey()
               | "samples" >> beam.ParDo(steps.BuildSamples(data, work))
               | "by sample content" >> beam.Map(lambda s: (s["sha"], s)) | "sample copies" >> beam.GroupByKey()
               | "first sample" >> beam.Map(steps.keep_first_copy, "samples"))
    _ = (samples | "drop signatures" >> beam.Map(lambda s: json.dumps({k: v for k, v in s.items() if k != "sig"}))
         | "write samples" >> beam.io.WriteToText(f"{work}/samples", file_name_suffix=".json"))
    edges = (samples | "band keys" >> beam.ParDo(steps.BandEdges(data)) | "buckets" >> beam.GroupByKey()
             | "bucket edges" >> beam.FlatMap(steps.bucket_edges))
    write_edges(star_rounds(edges), f"{work}/edges")


def _read_json(p, pattern: str, label: str):
    import apache_beam as beam

    return p | f"read {label}" >> beam.io.ReadFromText(pattern) | f"parse {label}" >> beam.Map(json.loads)


def _samples_to_shards(p, data: DataConfig, tokenizer: TokenizerConfig, work: str, out_dir: str, components: str,
                       tokenizer_path: str, train: bool) -> None:
    """Pipeline 3: one keeper per near-duplicate cluster, the tokenizer (trained at
    `tokenizer_path`, or already there), tokens, shards."""
    import apache_beam as beam

    from jaxcoder.data import prepare_steps as steps

    samples = _read_json(p, f"{work}/samples*.json", "samples") | "by id" >> beam.Map(lambda s: (s["id"], s))
    # In a converged star every edge joins a document to its cluster's smallest id: the larger one goes.
    dropped = (_read_json(p, components, "components")
               | "dropped ids" >> beam.Map(lambda e: (e[0], True)))
    kept = ({"sample": samples, "dropped": dropped} | "join" >> beam.CoGroupByKey()
            | "keepers" >> beam.FlatMap(_keeper))
    if train:
        tokenizer_path = (kept | "training sample" >> beam.combiners.Top.Smallest(
            tokenizer.train_docs, key=lambda s: (s["sha"], s["id"]))
            | "train tokenizer" >> beam.ParDo(steps.TrainTokenizer(tokenizer, tokenizer_path)))
    else:
        tokenizer_path = p | "given tokenizer" >> beam.Create([tokenizer_path])
    totals = (kept | "chars by shard set" >> beam.Map(
        lambda s: ((s["language"], steps.split_of(s, data.heldout_fraction)), (s["chars"], 1)))
        | "sum chars" >> beam.CombinePerKey(lambda vs: tuple(map(sum, zip(*vs, strict=True))))
        | "all totals" >> beam.combiners.ToDict()
        | "shard counts" >> beam.Map(steps.shard_counts, data.tokens_per_shard))
    shard_infos = (kept | "by work file part" >> beam.Map(steps.tokenize_key) | "work file part" >> beam.GroupByKey()
                   | "tokenize" >> beam.ParDo(steps.Tokenize(data, work), beam.pvalue.AsSingleton(tokenizer_path),
                                              beam.pvalue.AsSingleton(totals))
                   | "fragments by shard" >> beam.GroupByKey()
                   | "write shards" >> beam.ParDo(steps.WriteShard(out_dir)))
    _ = shard_infos | "shards to text" >> beam.Map(json.dumps) | "write shard list" >> beam.io.WriteToText(
        f"{work}/shards", file_name_suffix=".json")


def _keeper(item):
    from jaxcoder.data.prepare_steps import count

    _, joined = item
    if joined["sample"]:
        if joined["dropped"]:
            count("duplicates/near")
        else:
            yield joined["sample"][0]


def _given_tokenizer(data: DataConfig, tokenizer: TokenizerConfig) -> Tokenizer | None:
    """tokenizer.path's tokenizer, checked against what the samples will need."""
    tok = load_tokenizer(tokenizer.path) if tokenizer.path else None
    needs_markers = data.repo_level and data.repo_format == "starcoder2"
    if needs_markers and tok is not None:
        missing = [t for t in ("<repo_name>", "<file_sep>") if not tok.has_token(t)]
        if missing:
            raise ConfigError(f"data.repo_format=starcoder2 writes {', '.join(missing)}, which the tokenizer at "
                              f"{tok.path} lacks; use data.repo_format=path_comment")
    elif needs_markers and tokenizer.layout != "starcoder":
        raise ConfigError("data.repo_format=starcoder2 needs the starcoder tokenizer layout's <repo_name> and "
                          "<file_sep> tokens; set tokenizer.layout=starcoder or data.repo_format=path_comment")
    return tok


def _fingerprint(data: DataConfig, tokenizer: TokenizerConfig, inputs: list[Unit], given: Tokenizer | None) -> str:
    """Hash of everything the output depends on: the config, the code's format, each input file's
    name, size and modification time, and a given tokenizer's files."""
    config = {"data": dataclasses.asdict(data), "tokenizer": dataclasses.asdict(tokenizer)}
    config["data"].pop("beam")  # where it runs does not change what it writes
    config["data"].pop("prepare_workers")
    config["data"].pop("prepared_dir")  # nor where it writes
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    h.update(f"format {shards.FORMAT}".encode())  # shards written by older code are rebuilt
    for u in inputs:
        h.update(u.key.encode())
        if u.kind != "dir":  # a record file, local or remote
            from apache_beam.io.filesystems import FileSystems

            m = FileSystems.match([u.path])[0].metadata_list[0]
            h.update(f"{m.size_in_bytes}:{m.last_updated_in_seconds}".encode())
            continue
        for full, rel, reason in walk(u.path, tuple(data.sources.exclude), u.top_level_only):
            try:
                st = os.lstat(full)
                h.update(f"{rel}:{reason}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"{rel}:?".encode())
    if given is not None:
        h.update(given.sha256().encode())
    return h.hexdigest()


def _read_lines(pattern: str) -> list[dict]:
    from apache_beam.io.filesystems import FileSystems

    out = []
    for m in (m for r in FileSystems.match([pattern]) for m in r.metadata_list):
        with FileSystems.open(m.path) as f:
            out += [json.loads(line) for line in f.read().decode("utf-8").splitlines() if line.strip()]
    return out


def _manifest(data: DataConfig, tokenizer: TokenizerConfig, tok: Tokenizer, fingerprint: str, run: Runner,
              work: str, seconds: float) -> dict:
    infos = sorted(_read_lines(f"{work}/shards*.json"), key=lambda s: s["path"])
    if not infos:
        raise RuntimeError(f"data prepare: every file was dropped ({run.counters}); check data.sources")
    table: dict[str, dict[str, list]] = {"train": {}, "heldout": {}}
    for info in infos:
        table[info["split"]].setdefault(info["language"], []).append(
            {"path": info["path"], "records": info["records"], "tokens": info["tokens"]})
    train, held = table["train"], table["heldout"]
    tokens = {lang: sum(x["tokens"] for x in v) for lang, v in sorted(train.items())}
    skipped = sorted(_read_lines(f"{work}/skipped*.json"), key=lambda s: (s["file"], s["line"]))
    counts = {**dict.fromkeys(("files_seen", "files_kept", "samples", "duplicates/exact", "duplicates/near",
                                "samples_split"), 0),
              **{k: v for k, v in run.counters.items() if not k.startswith("components/")}}
    counts = dict(sorted(counts.items()))
    return {
        "fingerprint": fingerprint,
        "config": {"data": dataclasses.asdict(data), "tokenizer": dataclasses.asdict(tokenizer)},
        "counts": counts,
        "documents": {lang: sum(x["records"] for x in v) for lang, v in sorted(train.items())},
        "tokens": tokens,
        "total_tokens": sum(tokens.values()),
        "shards": dict(sorted(train.items())),
        "heldout_shards": dict(sorted(held.items())),
        "heldout_tokens": {lang: sum(x["tokens"] for x in v) for lang, v in sorted(held.items())},
        "tokenizer": {"path": tok.path.name, "kind": tok.kind, "sha256": tok.sha256(),
                      "vocab_size": tok.vocab_size, "layout": tokenizer.layout, "bos_id": tok.bos_id,
                      "eos_id": tok.eos_id, "add_bos": tok.add_bos},
        "repositories": counts.get("repositories", 0),
        "skipped_records": skipped[:20],  # the first malformed records: file, line, reason
        "runner": run.name,
        "seconds": round(seconds, 1),
    }
