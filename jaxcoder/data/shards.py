"""Tokenized documents on disk: ArrayRecord shards per language plus `manifest.json`.

Layout of a prepared directory:

    manifest.json                       counts, tokens per language, shards, tokenizer, config; names
                                        the build below (written last: the commit point)
    build-<fingerprint>/tokenizer.model the tokenizer the shards were encoded with (or tokenizer/)
    build-<fingerprint>/<language>/<language>-00000-of-00004.array_record
                                        one record = one document (or piece), int32 tokens

Every path in the manifest is relative to the prepared directory.

Records hold raw little-endian int32 token ids (no EOS: the loader appends it after FIM). Samples
longer than `data.max_sample_tokens` are stored as several consecutive records (`split_record`), so
one huge repository cannot hold a loader for thousands of steps, and mixture weights (by tokens)
can be turned into record weights. Every piece but a document's last ends with the id -1
(`CONTINUES`, never a token): the loader then knows not to end it with EOS, which would teach the
model to stop files mid-way.
`group_size:1` keeps every record randomly accessible for Grain's global shuffle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

MANIFEST = "manifest.json"
FORMAT = 3  # 2: pieces of split documents carry the CONTINUES marker; 3: shards in build-<fingerprint>/


def write_shard(path: Path, docs: list[np.ndarray]) -> int:
    """Writes token arrays as one shard (atomically); returns how many."""
    from jaxcoder.data.spill import write_records

    return write_records(str(path), (np.asarray(d, "<i4").tobytes() for d in docs))


def split_record(ids: np.ndarray, max_tokens: int, line_ends: np.ndarray) -> list[np.ndarray]:
    """One document cut into consecutive pieces of at most max_tokens tokens, each ending at a line
    end where one falls in the piece's second half (so pieces start at the start of a line)."""
    if max_tokens <= 0 or len(ids) <= max_tokens:
        return [ids]
    ends = np.flatnonzero(line_ends[ids]) + 1  # candidate cut positions
    pieces, start = [], 0
    while len(ids) - start > max_tokens:
        limit = start + max_tokens
        k = np.searchsorted(ends, limit, side="right") - 1
        cut = int(ends[k]) if k >= 0 and ends[k] > start + max_tokens // 2 else limit
        pieces.append(ids[start:cut])
        start = cut
    pieces.append(ids[start:])
    return pieces


CONTINUES = -1


def to_records(ids: np.ndarray, max_tokens: int, line_ends: np.ndarray) -> list[np.ndarray]:
    """A document's records: its pieces (`split_record`), all but the last marked CONTINUES."""
    pieces = split_record(ids, max_tokens, line_ends)
    return [np.append(p, CONTINUES).astype(np.int32) for p in pieces[:-1]] + [pieces[-1]]


def decode_piece(record: bytes) -> dict:
    """{"tokens": the record's tokens, "last": whether it ends its document}."""
    ids = np.frombuffer(record, "<i4").astype(np.int32)
    last = not (len(ids) and ids[-1] == CONTINUES)
    return {"tokens": ids if last else ids[:-1], "last": last}


def decode_record(record: bytes) -> np.ndarray:
    """The record's tokens (without the CONTINUES marker)."""
    return decode_piece(record)["tokens"]


def read_shard(path: Path) -> list[np.ndarray]:
    """Every record's tokens, pieces of long documents as they are stored."""
    return [p["tokens"] for p in read_pieces(path)]


def read_documents(path: Path) -> list[np.ndarray]:
    """Whole documents: the pieces of each long one joined again."""
    docs, parts = [], []
    for piece in read_pieces(path):
        parts.append(piece["tokens"])
        if piece["last"]:
            docs.append(np.concatenate(parts) if len(parts) > 1 else parts[0])
            parts = []
    return docs


def read_pieces(path: Path) -> list[dict]:
    from array_record.python.array_record_module import ArrayRecordReader

    reader = ArrayRecordReader(str(path))
    try:
        return [decode_piece(r) for r in reader.read_all()]
    finally:
        reader.close()


def load_manifest(data_dir: str | Path) -> dict:
    path = Path(data_dir) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run `jaxcoder data prepare` first (data.prepared_dir is "
                                f"{data_dir})")
    return json.loads(path.read_text())


def tokenizer_path(data_dir: str | Path, manifest: dict) -> str:
    """Where the tokenizer of a prepared directory is."""
    return str(Path(data_dir) / manifest["tokenizer"]["path"])


def shard_paths(data_dir: str | Path, manifest: dict, language: str, split: str = "train") -> list[str]:
    table = manifest["shards"] if split == "train" else manifest.get("heldout_shards", {})
    if language not in table:
        raise KeyError(f"language {language!r} has no {split} shards in {data_dir}; prepared languages: "
                       f"{', '.join(sorted(table))}")
    return [str(Path(data_dir) / s["path"]) for s in table[language]]
