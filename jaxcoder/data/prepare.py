"""`jaxcoder data prepare`: raw repositories -> filtered, deduplicated, redacted, ordered,
tokenized ArrayRecord shards and a manifest.

Three per-shard stages run in local worker processes (so they could run on a distributed engine
instead): `process_repo` (read, detect language, filter, decontaminate, redact, hash),
`build_samples` (dependency ordering, MinHash) and `encode_shard` (tokenize and write). Between
them the parent removes exact duplicates (file level, across the corpus), then near duplicates
(sample level), and trains the tokenizer when none is given. The run is deterministic, shows
progress, counts every drop by reason, never stops on a bad file, and is idempotent: with the same
inputs and config it returns the existing manifest; otherwise it builds into a temporary directory
and swaps it in atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from jaxcoder.data import shards
from jaxcoder.data.decontam import DecontamConfig, Decontaminator
from jaxcoder.data.dedup import DedupConfig, MinHasher, content_hash, dedup_keep_mask
from jaxcoder.data.filters import FilterConfig, content_filter, decode_bytes
from jaxcoder.data.languages import LANGUAGES, REPO_LEVEL, detect_language, language_slug
from jaxcoder.data.pii import redact
from jaxcoder.data.repo_order import RepoFile, repo_samples
from jaxcoder.data.sources import DEFAULT_EXCLUDE, Repo, discover
from jaxcoder.data.tokenizer import Tokenizer, load_tokenizer, train_tokenizer
from jaxcoder.fields import ConfigError


@dataclasses.dataclass(frozen=True)
class PrepareConfig:
    out_dir: str
    repo_dirs: tuple[str, ...] = ()
    repo_roots: tuple[str, ...] = ()
    records: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE  # file/directory name patterns to skip
    languages: tuple[str, ...] = ()  # allow-list; empty keeps every language in the table
    filters: FilterConfig = FilterConfig()
    dedup: DedupConfig = DedupConfig()
    near_dedup: bool = True
    pii: bool = True
    decontamination: DecontamConfig = DecontamConfig()
    repo_level: bool = True
    repo_format: str = "path_comment"  # path_comment | starcoder2
    tokenizer_path: str | None = None  # an existing tokenizer; else one is trained into out_dir
    tokenizer_kind: str = "sentencepiece"  # of a trained one: sentencepiece | hf (byte-level BPE)
    tokenizer_vocab_size: int = 8192
    tokenizer_layout: str = "starcoder"
    tokenizer_train_docs: int = 2000
    tokens_per_shard: int = 4_000_000
    # Longer samples (whole repositories in dependency order can reach millions of tokens) are
    # stored as consecutive pieces of at most this many tokens, cut at line ends; 0 = never split.
    max_sample_tokens: int = 65536
    heldout_fraction: float = 0.01  # of samples, by content hash, written as held-out shards
    num_workers: int = 0  # 0 = one per CPU core

    def __post_init__(self):
        unknown = sorted(set(self.languages) - set(LANGUAGES))
        if unknown:
            raise ValueError(f"data.languages: unknown language(s) {', '.join(unknown)}")
        if not (self.repo_dirs or self.repo_roots or self.records):
            raise ValueError("data.sources: name at least one of repo_dirs, repo_roots or records")

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Sample:
    repo: str
    language: str
    text: str
    sha: str
    signature: np.ndarray | None


# ----------------------------------------------------------------- stage 1
_WORKER: dict = {}


def _init_worker(cfg: PrepareConfig) -> None:
    _WORKER["cfg"] = cfg
    _WORKER["decontam"] = Decontaminator(cfg.decontamination)
    _WORKER["minhash"] = MinHasher(cfg.dedup)


def process_repo(repo: Repo) -> tuple[list[RepoFile], list[str], Counter]:
    """Everything per file that needs only one repository: read, detect, filter, decontaminate,
    redact. Returns the kept files, their content hashes, and the repository's counts."""
    cfg: PrepareConfig = _WORKER["cfg"]
    counts: Counter = Counter()
    kept: list[RepoFile] = []
    for path, data, reason in repo.files(cfg.filters.max_file_bytes):
        counts["files_seen"] += 1
        language = detect_language(path)
        if reason is None and data is not None:
            if len(data) < cfg.filters.min_file_bytes:
                reason = "too_small"
            elif language is None:
                reason = "unknown_language"
            elif cfg.languages and language not in cfg.languages:
                reason = "language_not_selected"
        text = None
        if reason is None:
            text, reason = decode_bytes(data)
        if reason is None:
            reason = content_filter(text, language, cfg.filters)
        if reason is None and _WORKER["decontam"].check(text):
            reason = "contaminated"
        if reason is not None:
            counts[f"dropped/{reason}"] += 1
            continue
        if cfg.pii:
            text, found = redact(text)
            for kind, n in found.items():
                counts[f"redacted/{kind}"] += n
        kept.append(RepoFile(path=path, language=language, text=text))
    return kept, [content_hash(f.text) for f in kept], counts


def build_samples(job: tuple[str, list[RepoFile]]) -> list[Sample]:
    """One repository's deduplicated files -> samples with MinHash signatures. Repository-level
    languages become dependency-ordered samples (deduplicated as a whole, as DeepSeek-Coder does);
    every other file is a sample of its own."""
    cfg: PrepareConfig = _WORKER["cfg"]
    name, files = job
    grouped = [f for f in files if cfg.repo_level and f.language in REPO_LEVEL]
    out = repo_samples(name, grouped, style=cfg.repo_format) if grouped else []
    out += [(f.language, f.text) for f in files if not (cfg.repo_level and f.language in REPO_LEVEL)]
    hasher: MinHasher = _WORKER["minhash"]
    return [Sample(name, lang, text, content_hash(text), hasher.signature(text) if cfg.near_dedup else None)
            for lang, text in out]


# ----------------------------------------------------------------- stage 2
def encode_shard(job: tuple[str, str, list[str], int]) -> dict:
    """Tokenizes one shard's documents and writes it, splitting those over max_tokens.
    job = (tokenizer path, shard path, texts, max_tokens)."""
    tok_path, out_path, texts, max_tokens = job
    tok = _WORKER.get("tokenizer")
    if tok is None or _WORKER.get("tokenizer_path") != tok_path:
        tok = _WORKER["tokenizer"] = load_tokenizer(tok_path)
        _WORKER["tokenizer_path"] = tok_path
    bos = [tok.bos_id] if tok.add_bos else []  # a model whose sequences start with BOS (DeepSeek-Coder's)
    docs = [np.asarray(bos + ids, np.int32) for ids in tok.encode_batch(texts)]
    records = [r for d in docs for r in shards.to_records(d, max_tokens, tok.line_ends())]
    shards.write_shard(Path(out_path), records)
    return {"records": len(records), "tokens": int(sum(len(d) for d in docs)),
            "split_samples": sum(max_tokens > 0 and len(d) > max_tokens for d in docs)}


# ------------------------------------------------------------- orchestration
def _fingerprint(cfg: PrepareConfig, repos: list[Repo]) -> str:
    h = hashlib.sha256(json.dumps(cfg.to_json(), sort_keys=True, default=str).encode())
    h.update(f"format {shards.FORMAT}".encode())  # shards written by older code are rebuilt
    for r in repos:
        h.update(r.name.encode())
        if r.root is not None:
            h.update(str(Path(r.root).absolute()).encode())
            for full, rel, reason in r.entries():
                try:
                    st = os.lstat(full)
                    h.update(f"{rel}:{reason}:{st.st_size}:{st.st_mtime_ns}".encode())
                except OSError:
                    h.update(f"{rel}:?".encode())
        else:
            for path, content in r.records:
                h.update(path.encode())
                h.update(hashlib.sha256(content.encode("utf-8", "surrogatepass")).digest())
    if cfg.tokenizer_path:
        h.update(load_tokenizer(cfg.tokenizer_path).sha256().encode())
    return h.hexdigest()


def _given_tokenizer(cfg: PrepareConfig) -> Tokenizer | None:
    """tokenizer.path's tokenizer, checked against what the samples will need."""
    tok = load_tokenizer(cfg.tokenizer_path) if cfg.tokenizer_path else None
    needs_markers = cfg.repo_level and cfg.repo_format == "starcoder2"
    if needs_markers and tok is not None:
        missing = [t for t in ("<repo_name>", "<file_sep>") if not tok.has_token(t)]
        if missing:
            raise ConfigError(f"data.repo_format=starcoder2 writes {', '.join(missing)}, which the tokenizer at "
                              f"{tok.path} lacks; use data.repo_format=path_comment")
    elif needs_markers and cfg.tokenizer_layout != "starcoder":
        raise ConfigError("data.repo_format=starcoder2 needs the starcoder tokenizer layout's <repo_name> and "
                          "<file_sep> tokens; set tokenizer.layout=starcoder or data.repo_format=path_comment")
    return tok


def _tokenizer_for(cfg: PrepareConfig, kept: list[Sample], tmp: Path) -> Tokenizer:
    """The given tokenizer copied into the prepared directory, or one trained there on a sample of
    the kept documents: `tokenizer.model` (sentencepiece) or `tokenizer/` (hf)."""
    given = _given_tokenizer(cfg)
    kind = given.kind if given else cfg.tokenizer_kind
    dest = tmp / ("tokenizer" if kind == "hf" else "tokenizer.model")
    if given is not None and kind == "hf":
        given.copy_to(dest)
    elif given is not None:
        shutil.copyfile(given.path, dest)
    else:
        step = max(1, len(kept) // cfg.tokenizer_train_docs)
        train_tokenizer((s.text for s in kept[::step]), dest, kind=kind, vocab_size=cfg.tokenizer_vocab_size,
                        layout=cfg.tokenizer_layout)
    return load_tokenizer(dest)


def _pool(cfg: PrepareConfig):
    workers = cfg.num_workers or os.cpu_count() or 1
    return mp.get_context("spawn").Pool(workers, initializer=_init_worker, initargs=(cfg,)), workers


def prepare(cfg: PrepareConfig, *, progress: bool = True) -> dict:
    """Runs the whole preparation; returns the manifest."""
    start = time.perf_counter()
    _given_tokenizer(cfg)  # a tokenizer that cannot serve is refused before any work
    skipped: list[dict] = []  # malformed records of record files
    repos = discover(cfg.repo_dirs, cfg.repo_roots, cfg.records, cfg.exclude, skipped=skipped)
    out_dir = Path(cfg.out_dir)
    fingerprint = _fingerprint(cfg, repos)
    manifest_path = out_dir / shards.MANIFEST
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text())
        if existing.get("fingerprint") == fingerprint:
            if progress:
                print(f"data prepare: {out_dir} is up to date (same inputs and config)")
            return existing
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    pool, workers = _pool(cfg)
    try:
        counts: Counter = Counter(f"dropped/{s['reason']}" for s in skipped)
        per_repo: list[tuple[str, list[RepoFile]]] = []
        seen: set[str] = set()
        bar = tqdm(total=len(repos), desc="read + filter", unit="repo", disable=not progress, mininterval=1.0)
        for repo, (files, hashes, repo_counts) in zip(repos, pool.imap(process_repo, repos, chunksize=1),
                                                      strict=True):
            counts.update(repo_counts)
            unique = []
            for f, h in zip(files, hashes, strict=True):  # exact dedup across the corpus, first copy wins
                if h in seen:
                    counts["duplicates/exact"] += 1
                else:
                    seen.add(h)
                    unique.append(f)
            counts["files_kept"] += len(unique)
            per_repo.append((repo.name, unique))
            bar.update()
        bar.close()

        samples: list[Sample] = []
        bar = tqdm(total=len(per_repo), desc="order + minhash", unit="repo", disable=not progress, mininterval=1.0)
        for repo_samples_ in pool.imap(build_samples, per_repo, chunksize=1):
            samples += repo_samples_
            bar.update()
        bar.close()
        counts["samples"] = len(samples)
        keep, exact, near = dedup_keep_mask([s.sha for s in samples],
                                            [s.signature if cfg.near_dedup else None for s in samples],
                                            MinHasher(cfg.dedup))
        counts["duplicates/exact"] += exact
        counts["duplicates/near"] = near
        kept = [s for s, k in zip(samples, keep, strict=True) if k]
        if not kept:
            raise RuntimeError(f"data prepare: every file was dropped ({dict(counts)}); check data.sources")

        tok = _tokenizer_for(cfg, kept, tmp)

        splits: dict[str, dict[str, list[Sample]]] = {"train": defaultdict(list), "heldout": defaultdict(list)}
        for smp in kept:
            held = int(smp.sha[:8], 16) / 0xFFFFFFFF < cfg.heldout_fraction
            splits["heldout" if held else "train"][smp.language].append(smp)
        jobs, plan = [], []
        for split, by_language in splits.items():
            for language in sorted(by_language):
                docs = by_language[language]
                # Shard boundaries by characters (~3.2 bytes per token): shards get similar token counts.
                chars = np.cumsum([len(d.text) for d in docs])
                n_shards = max(1, int(np.ceil(chars[-1] / (cfg.tokens_per_shard * 3.2))))
                bounds = np.searchsorted(chars, np.linspace(0, chars[-1], n_shards + 1)[1:-1])
                slug = language_slug(language)
                prefix = "" if split == "train" else "heldout-"
                for k, part in enumerate(np.split(np.arange(len(docs)), bounds)):
                    rel = f"{slug}/{prefix}{slug}-{k:05d}-of-{n_shards:05d}.array_record"
                    jobs.append((str(tok.path), str(tmp / rel), [docs[i].text for i in part],
                                 cfg.max_sample_tokens))
                    plan.append((split, language, rel))
        shard_info: dict[str, dict[str, list[dict]]] = {"train": defaultdict(list), "heldout": defaultdict(list)}
        bar = tqdm(total=len(jobs), desc="tokenize + write", unit="shard", disable=not progress, mininterval=1.0)
        for (split, language, rel), info in zip(plan, pool.imap(encode_shard, jobs, chunksize=1), strict=True):
            counts["samples_split"] += info.pop("split_samples")
            shard_info[split][language].append({"path": rel, **info})
            bar.update()
        bar.close()
    finally:
        pool.close()
        pool.join()

    train = shard_info["train"]
    tokens = {lang: sum(x["tokens"] for x in v) for lang, v in sorted(train.items())}
    manifest = {
        "fingerprint": fingerprint,
        "config": cfg.to_json(),
        "counts": dict(sorted(counts.items())),
        "documents": {lang: sum(x["records"] for x in v) for lang, v in sorted(train.items())},
        "tokens": tokens,
        "total_tokens": sum(tokens.values()),
        "shards": dict(train),
        "heldout_shards": dict(shard_info["heldout"]),
        "heldout_tokens": {lang: sum(x["tokens"] for x in v) for lang, v in sorted(shard_info["heldout"].items())},
        "tokenizer": {"path": tok.path.name, "kind": tok.kind, "sha256": tok.sha256(),
                      "vocab_size": tok.vocab_size, "layout": cfg.tokenizer_layout, "bos_id": tok.bos_id,
                      "eos_id": tok.eos_id, "add_bos": tok.add_bos},
        "repositories": len(repos),
        "skipped_records": skipped[:20],  # the first malformed records: file, line, reason
        "workers": workers,
        "seconds": round(time.perf_counter() - start, 1),
    }
    text = json.dumps(manifest, indent=2, default=str)
    manifest = json.loads(text)  # the same plain-JSON form a later run reads back
    (tmp / shards.MANIFEST).write_text(text)
    # Swap in atomically: a crash leaves either the old directory or the new one, never a mix.
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return manifest

