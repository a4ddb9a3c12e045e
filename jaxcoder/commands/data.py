"""jaxcoder data tokenizer: train the sentencepiece tokenizer named by tokenizer.path.

Samples `tokenizer.train_files` files (deterministically) from data.roots/extensions.
"""

from __future__ import annotations

import random
import time

from jaxcoder.commands import common
from jaxcoder.data import stream
from jaxcoder.data.tokenizer import Tokenizer, train_tokenizer

SUBCOMMANDS = ("tokenizer",)


def main(argv):
    sub = argv[1:]
    if sub != ["tokenizer"]:
        raise SystemExit(f"usage: jaxcoder data {{{'|'.join(SUBCOMMANDS)}}} --config=...  (got {' '.join(sub)!r})")
    cfg = common.require_config()
    if not cfg.tokenizer.path:
        raise SystemExit("error: set --config.tokenizer.path to where the tokenizer model should be written")
    files = stream.list_files(cfg.data.roots, cfg.data.extensions)
    random.Random(cfg.seed).shuffle(files)
    files = files[: cfg.tokenizer.train_files]
    texts = [t for t in (stream.read_text(f) for f in files) if t]
    start = time.perf_counter()
    path = train_tokenizer(texts, cfg.tokenizer.path, vocab_size=cfg.tokenizer.vocab_size,
                           layout=cfg.tokenizer.layout)
    tok = Tokenizer(path)
    print(f"tokenizer: {path} ({tok.vocab_size} pieces, {cfg.tokenizer.layout} layout) trained on "
          f"{len(texts)} files in {time.perf_counter() - start:.1f}s; sha256 {tok.sha256()[:12]}")
