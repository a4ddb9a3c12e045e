"""Shared by the benchmarks: a prepared dataset from this machine's Python standard library."""

from __future__ import annotations

import sysconfig
from pathlib import Path

from jaxcoder.data.config import DataConfig, SourcesConfig
from jaxcoder.data.prepare import prepare
from jaxcoder.data.tokenizer import TokenizerConfig


def ensure_prepared(data_dir: str, kind: str = "sentencepiece") -> Path:
    """`data_dir` if it holds a manifest, else a fresh preparation of the stdlib into it with a
    tokenizer of `kind` trained there (sentencepiece, or hf: byte-level BPE)."""
    path = Path(data_dir)
    if not (path / "manifest.json").exists():
        stdlib = sysconfig.get_paths()["stdlib"]
        sources = SourcesConfig(repo_roots=(stdlib,), repo_dirs=tuple(p for p in ("/usr/include/linux",)
                                                                      if Path(p).is_dir()),
                                exclude=("__pycache__", "site-packages", "test", "tests", "idlelib", "lib2to3"))
        prepare(DataConfig(prepared_dir=str(path), sources=sources), TokenizerConfig(vocab_size=8192, kind=kind))
    return path


def stdlib_texts(limit: int | None = None) -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    out = []
    for p in sorted(root.rglob("*.py")):
        if "site-packages" in p.parts or "__pycache__" in p.parts:
            continue
        try:
            out.append(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
        if limit and len(out) >= limit:
            break
    return out
