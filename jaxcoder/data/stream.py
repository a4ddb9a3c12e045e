"""A simple in-process token stream: source files -> tokens -> packed rows -> batches.

This is the walking-skeleton loader (no FIM, no filtering, no Grain). Rows are packed with
segment ids and restarting positions, so the model already trains the way the full pipeline
will feed it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from jaxcoder.data.tokenizer import Tokenizer


def list_files(roots: Sequence[str], extensions: Sequence[str], max_files: int | None = None,
               max_bytes: int = 200_000) -> list[Path]:
    """Sorted files under `roots` with the given extensions, skipping huge files and links."""
    exts = {e if e.startswith(".") else "." + e for e in extensions}
    out: list[Path] = []
    for root in roots:
        root_path = Path(root)
        if not root_path.exists():
            raise FileNotFoundError(f"data source {root} does not exist")
        for dirpath, dirnames, filenames in os.walk(root_path, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath) / name
                if path.suffix in exts and not path.is_symlink():
                    try:
                        if 0 < path.stat().st_size <= max_bytes:
                            out.append(path)
                    except OSError:
                        continue
    out.sort()
    return out[:max_files] if max_files else out


def read_text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def split_heldout(files: Sequence[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """Deterministic split by a hash of the path, stable when files are added."""
    train, held = [], []
    for f in files:
        h = int(hashlib.sha1(str(f).encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
        (held if h < fraction else train).append(f)
    return train, held


def tokenize_files(files: Sequence[Path], tokenizer: Tokenizer) -> list[np.ndarray]:
    """Each readable file as an int32 array ending in EOS."""
    docs = []
    for f in files:
        text = read_text(f)
        if text:
            docs.append(np.asarray(tokenizer.encode(text) + [tokenizer.eos_id], np.int32))
    return docs


def pack_rows(docs: Sequence[np.ndarray], seq_len: int, rng: np.random.Generator) -> Iterator[dict]:
    """Endless packed rows of seq_len + 1 tokens: documents in a fresh random order each epoch."""
    if not docs:
        raise ValueError("no documents to train on")
    row_len = seq_len + 1
    buf_tok: list[np.ndarray] = []
    buf_seg: list[np.ndarray] = []
    buf_pos: list[np.ndarray] = []
    have = 0
    while True:
        for i in rng.permutation(len(docs)):
            doc = docs[i]
            start = 0
            while start < len(doc):
                piece = doc[start: start + row_len - have]
                buf_tok.append(piece)
                buf_seg.append(np.full(len(piece), len(buf_tok), np.int32))
                buf_pos.append(np.arange(start, start + len(piece), dtype=np.int32))
                have += len(piece)
                start += len(piece)
                if have == row_len:
                    yield _row(np.concatenate(buf_tok), np.concatenate(buf_seg), np.concatenate(buf_pos))
                    buf_tok, buf_seg, buf_pos, have = [], [], [], 0


def _row(tokens: np.ndarray, segs: np.ndarray, pos: np.ndarray) -> dict:
    # A document continued from the previous row restarts at position 0 in this one.
    pos = pos - pos[0] * (segs == segs[0])
    return {"inputs": tokens[:-1], "targets": tokens[1:], "segment_ids": segs[:-1], "positions": pos[:-1],
            # A target from the next document is not predictable from this one.
            "loss_mask": (segs[1:] == segs[:-1]).astype(np.int32)}


def batches(rows: Iterator[dict], batch_size: int) -> Iterator[dict]:
    while True:
        group = [next(rows) for _ in range(batch_size)]
        yield {k: np.stack([r[k] for r in group]) for k in group[0]}
