"""Fill-in-the-middle: where a document is split and reordered before packing.

Per document, with probability `fim_rate`: detokenize, pick two uniform character positions
(sorted; any part may be empty), re-tokenize prefix, middle and suffix separately, and lay them
out as PSM or, with probability `fim_spm_rate`, SPM (BigCode's "variant 2"). With probability
`line_rate` the span is whole lines instead (Bavarian et al. 2022's line-level spans): the middle
runs from the start of one line to the end of the same or a later line, without its last newline,
as in the single-line and multi-line infilling benchmarks. The token layouts:

StarCoder line  PSM  <fim_prefix> pre <fim_suffix> suf <fim_middle> mid
                SPM  <fim_prefix> <fim_suffix> suf <fim_middle> pre mid
DeepSeek line   PSM  <｜fim▁begin｜> pre <｜fim▁hole｜> suf <｜fim▁end｜> mid   (PSM only)

Repository samples in StarCoder2's format (`<repo_name>name<file_sep>path\ncode<file_sep>...`)
are FIM candidates with probability `rate`; in a candidate each file is transformed with
probability `file_rate` on its own, its path line staying at the start of the prefix, and the
`<repo_name>` metadata and `<file_sep>` separators are never moved (StarCoder2 §5.1).

The caller appends EOS after the (transformed) document. See code-llm-papers.md §1.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxcoder.data.shards import split_record
from jaxcoder.data.tokenizer import DEEPSEEK_TOKENS, STARCODER_TOKENS
from jaxcoder.fields import check, field


@dataclasses.dataclass(frozen=True)
class FimConfig:
    rate: float = field(0.5, ge=0, le=1)
    spm_rate: float = field(0.5, ge=0, le=1)
    layout: str = field("starcoder", choices=("starcoder", "deepseek"), in_section=False)  # tokenizer.layout
    # 0: FIM per whole document (StarCoder, DeepSeek-Coder). N > 0: documents are cut into pieces
    # of at most N tokens (at line ends), each transformed on its own ("context-level" FIM,
    # Bavarian et al. 2022) and ended by EOS, so that sentinels and middle share a training row
    # when documents outgrow the context.
    max_tokens: int = field(0, ge=0)
    # Share of FIM documents whose middle is whole lines rather than a random character span.
    line_rate: float = field(0.0, ge=0, le=1)
    # In a repository sample (StarCoder2 format) chosen for FIM, the share of its files transformed.
    file_rate: float = field(0.5, ge=0, le=1)

    def __post_init__(self):
        check(self, "data.fim")
        if self.layout == "deepseek" and self.spm_rate > 0 and self.rate > 0:
            raise ValueError("the deepseek FIM layout is PSM only: set data.fim.spm_rate=0")


@dataclasses.dataclass(frozen=True)
class FimTokens:
    """Ids of the sentinel tokens: prefix/suffix/middle (StarCoder) = begin/hole/end (DeepSeek)."""

    prefix: int
    suffix: int
    middle: int
    file_sep: int | None = None  # StarCoder2's repository-format markers (starcoder layout only)
    repo_name: int | None = None

    @staticmethod
    def strings(layout: str) -> tuple[str, str, str]:
        """The (prefix, suffix, middle) sentinel strings of a tokenizer layout."""
        if layout == "deepseek":
            begin, hole, end = DEEPSEEK_TOKENS
            return begin, hole, end
        prefix, middle, suffix = STARCODER_TOKENS[:3]
        return prefix, suffix, middle

    @classmethod
    def from_tokenizer(cls, tokenizer, layout: str) -> FimTokens:
        """Ids from anything with `token_id(str)` (ours) or `convert_tokens_to_ids(str)` (Hugging Face)."""
        lookup = getattr(tokenizer, "token_id", None) or tokenizer.convert_tokens_to_ids

        def optional(piece):
            try:
                return lookup(piece)
            except KeyError:  # a tokenizer without StarCoder2's repository markers
                return None

        markers = (optional("<file_sep>"), optional("<repo_name>")) if layout == "starcoder" else (None, None)
        return cls(*(lookup(t) for t in cls.strings(layout)), *markers)


def split_points(n_chars: int, rng: np.random.Generator) -> tuple[int, int]:
    """Two uniform cut points in [0, n_chars], sorted."""
    a, b = rng.integers(0, n_chars + 1, size=2)
    return (int(a), int(b)) if a <= b else (int(b), int(a))


def line_span(text: str, rng: np.random.Generator) -> tuple[int, int]:
    """A line-level middle: the start of a uniform line i and the end (before its newline) of a
    uniform line j >= i."""
    starts = [0, *(i + 1 for i, ch in enumerate(text) if ch == "\n" and i + 1 < len(text))]
    i, j = sorted(int(x) for x in rng.integers(0, len(starts), size=2))
    end = text.find("\n", starts[j])
    return starts[i], len(text) if end < 0 else end


def layout_tokens(pre: list[int], mid: list[int], suf: list[int], ids: FimTokens, spm: bool) -> list[int]:
    if spm:
        return [ids.prefix, ids.suffix, *suf, ids.middle, *pre, *mid]
    return [ids.prefix, *pre, ids.suffix, *suf, ids.middle, *mid]


def permute(tokens: np.ndarray, rng: np.random.Generator, tokenizer, cfg: FimConfig, ids: FimTokens,
            end_id: int | None = None, last: bool = True) -> np.ndarray:
    """One document's tokens (or one stored piece of it; `last`: the document's final one),
    FIM-transformed with probability cfg.rate (else returned as is); with cfg.max_tokens, each
    piece of at most that many tokens (cut at line ends where the tokenizer tells them)
    separately. A transformed piece that is not the document's last is followed by `end_id`
    (EOS): the end of the document marks where a middle stops in whole-document FIM, so the pieces
    mark it too, and a model learns to stop infilling. Untransformed pieces run on into the next.
    Repository samples in the StarCoder2 format are transformed per file (module docstring).

    The parts are exactly what tokenizing prefix, middle and suffix separately gives; when the
    tokenizer offers `split_encode` only the words around the two cuts are re-tokenized."""
    if ids is not None and ids.file_sep is not None and cfg.rate > 0:
        seps = np.flatnonzero(tokens == ids.file_sep)
        if len(seps):
            return _permute_files(tokens, seps, rng, tokenizer, cfg, ids)
    pieces = [tokens]
    if cfg.max_tokens and len(tokens) > cfg.max_tokens:
        line_ends = tokenizer.line_ends() if hasattr(tokenizer, "line_ends") else np.zeros(tokens.max() + 1, bool)
        pieces = split_record(tokens, cfg.max_tokens, line_ends)
    out = []
    for k, piece in enumerate(pieces):
        out.append(_permute_piece(piece, rng, tokenizer, cfg, ids))
        if end_id is not None and out[-1] is not piece and (k < len(pieces) - 1 or not last):
            out.append(np.asarray([end_id], np.int32))
    return out[0] if len(out) == 1 else np.concatenate(out)


def _permute_files(tokens: np.ndarray, seps: np.ndarray, rng: np.random.Generator, tokenizer, cfg: FimConfig,
                   ids: FimTokens) -> np.ndarray:
    """StarCoder2's repository-context FIM: the sample is a candidate with probability cfg.rate;
    then each `<file_sep>path\ncode` fragment is transformed with probability cfg.file_rate,
    its path line kept at the start of the prefix. What precedes the first separator is the
    `<repo_name>` metadata (never transformed) or, in a stored piece that continues a document,
    the tail of a file (transformed like a file, without a path line). The middle ends where the
    next `<file_sep>` (or EOS) begins, which is what a model infilling in a repository stops at."""
    if rng.random() >= cfg.rate:
        return tokens
    bounds = [0, *seps.tolist(), len(tokens)]
    whole = dataclasses.replace(cfg, rate=cfg.file_rate)
    out = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        fragment = tokens[a:b]
        if a == 0 and (len(fragment) == 0 or fragment[0] == ids.repo_name):
            out.append(fragment)
            continue
        head = fragment[:1] if a > 0 else fragment[:0]
        out += [head, _permute_piece(fragment[len(head):], rng, tokenizer, whole, ids, keep_path=a > 0)]
    return np.concatenate(out).astype(np.int32)


def _permute_piece(tokens: np.ndarray, rng: np.random.Generator, tokenizer, cfg: FimConfig,
                   ids: FimTokens, keep_path: bool = False) -> np.ndarray:
    """FIM on one piece with probability cfg.rate; the piece itself (the same object) otherwise.
    With `keep_path`, the piece's first line (a file path) stays whole at the start of the prefix."""
    if cfg.rate <= 0 or rng.random() >= cfg.rate:
        return tokens
    text = tokenizer.decode(tokens.tolist())
    keep = (text.find("\n") + 1 or len(text)) if keep_path else 0
    # Drawn only when line spans are on, so char-level runs keep their random stream.
    lines = cfg.line_rate > 0 and rng.random() < cfg.line_rate
    lo, hi = line_span(text[keep:], rng) if lines else split_points(len(text) - keep, rng)
    lo, hi = lo + keep, hi + keep
    spm = rng.random() < cfg.spm_rate
    if hasattr(tokenizer, "split_encode"):
        pre, mid, suf = tokenizer.split_encode(tokens, text, (lo, hi))
    else:
        pre, mid, suf = tokenizer.encode_batch([text[:lo], text[lo:hi], text[hi:]])
    return np.asarray(layout_tokens(pre, mid, suf, ids, spm), np.int32)
