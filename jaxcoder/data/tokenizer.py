"""SentencePiece BPE tokenizer for code, and its Hugging Face export.

Trained lossless on whitespace (identity normalisation, no dummy prefix, whitespace-only
pieces), with byte fallback and split digits. FIM and metadata markers are user-defined
symbols, so they always encode to one token. Newline stays mergeable: making it a symbol
costs ~7% compression on Python (shared/reference/libraries.md §5.1).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import sentencepiece as spm

from jaxcoder.fields import check, field

# Marker tokens of the two FIM/metadata layouts (code-llm-papers.md §1).
STARCODER_TOKENS = ("<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<file_sep>", "<repo_name>")
DEEPSEEK_TOKENS = ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>")
TOKEN_LAYOUTS = {"starcoder": STARCODER_TOKENS, "deepseek": DEEPSEEK_TOKENS}
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """The `tokenizer` section."""

    path: str | None = None  # an existing sentencepiece model; else `data prepare` trains one
    vocab_size: int = field(8192, ge=1)  # of a tokenizer `data prepare` trains
    layout: str = field("starcoder", choices=tuple(TOKEN_LAYOUTS))  # FIM/metadata tokens
    train_docs: int = field(2000, ge=1)  # documents sampled to train a tokenizer

    def __post_init__(self):
        check(self, "tokenizer")


def _chunks(texts: Iterable[str], max_chars: int = 4096) -> Iterator[str]:
    """Splits documents at line boundaries into sentencepiece-sized pieces, keeping newlines."""
    for text in texts:
        buf = ""
        for line in text.splitlines(keepends=True):
            if buf and len(buf) + len(line) > max_chars:
                yield buf
                buf = ""
            buf += line[: max_chars * 4]
        if buf:
            yield buf


def train_tokenizer(texts: Iterable[str], out_path: str | os.PathLike, *, vocab_size: int = 8192,
                    layout: str = "starcoder", max_sentences: int = 2_000_000, num_threads: int | None = None,
                    vocab_field: str = "tokenizer.vocab_size") -> Path:
    """Trains a BPE model on `texts` and writes `out_path` (a .model file)."""
    if layout not in TOKEN_LAYOUTS:
        raise ValueError(f"tokenizer.layout must be one of {', '.join(TOKEN_LAYOUTS)}, got {layout!r}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prefix = os.path.join(tmp, "code")
        _train_checked(
            sentence_iterator=_chunks(texts), model_prefix=prefix, model_type="bpe", vocab_size=vocab_size,
            normalization_rule_name="identity", remove_extra_whitespaces=False, add_dummy_prefix=False,
            allow_whitespace_only_pieces=True, split_digits=True, byte_fallback=True,
            character_coverage=0.99995, max_sentencepiece_length=16, max_sentence_length=16384,
            user_defined_symbols=list(TOKEN_LAYOUTS[layout]), pad_id=PAD_ID, unk_id=UNK_ID, bos_id=BOS_ID,
            eos_id=EOS_ID, num_threads=num_threads or os.cpu_count(), input_sentence_size=max_sentences,
            shuffle_input_sentence=True, minloglevel=2, vocab_size_field=vocab_field)
        out_path.write_bytes(_without_run_details(Path(prefix + ".model").read_bytes()))
    return out_path


def _train_checked(*, vocab_size_field: str, **kwargs) -> None:
    """SentencePieceTrainer.train, its vocabulary-size failures turned into one line that names the
    config field and the size this corpus supports."""
    try:
        spm.SentencePieceTrainer.train(**kwargs)
    except RuntimeError as e:
        text, size = str(e), kwargs["vocab_size"]
        most = re.search(r"Vocabulary size too high \(\d+\)\. Please set it to a value <= (\d+)", text)
        least = re.search(r"Vocabulary size is smaller than required_chars\. \d+ vs (\d+)", text)
        if most:
            raise ValueError(f"{vocab_size_field}={size} is more than this corpus can support: at most "
                             f"{most[1]}; set --config.{vocab_size_field}={most[1]} or less, or add data") from None
        if least:
            raise ValueError(f"{vocab_size_field}={size} is less than the {least[1]} distinct characters and "
                             f"special tokens of this corpus need; set --config.{vocab_size_field} to at least "
                             f"{least[1]}") from None
        if "!sentences_.empty()" in text:
            raise ValueError("no text to train the tokenizer on (every document was dropped or empty)") from None
        raise


def _without_run_details(model: bytes) -> bytes:
    """Clears the temporary path and thread count the trainer records, so equal inputs give
    byte-identical models (and equal hashes in manifests)."""
    from sentencepiece import sentencepiece_model_pb2

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(model)
    proto.trainer_spec.model_prefix = "code"
    proto.trainer_spec.ClearField("num_threads")
    return proto.SerializeToString()


class Tokenizer:
    """Thin wrapper over a SentencePiece model with the ids jaxcoder needs."""

    def __init__(self, model_path: str | os.PathLike):
        self.path = Path(model_path)
        if not self.path.exists():
            raise FileNotFoundError(f"tokenizer model {self.path} does not exist (train one with "
                                    "`jaxcoder data tokenizer`)")
        self.sp = spm.SentencePieceProcessor(model_file=str(self.path))

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    bos_id, eos_id, pad_id = BOS_ID, EOS_ID, PAD_ID

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids])

    def token_id(self, piece: str) -> int:
        i = self.sp.piece_to_id(piece)
        if i == UNK_ID and piece != self.sp.id_to_piece(UNK_ID):
            raise KeyError(f"{piece!r} is not a token of {self.path}")
        return i

    def split_encode(self, tokens, text: str, cuts: tuple[int, ...]) -> list[list[int]]:
        """`encode` of each piece of `text` cut at the character positions `cuts`, reusing `tokens`
        (= encode(text)) away from the cuts.

        SentencePiece never merges across the start of a run of spaces that follows a non-space, so
        tokenization is separable there: a piece's tokens are the original ones between the first
        such boundary after its start and the last one before its end, plus the re-encoded edges.
        """
        data = text.encode("utf-8")
        lengths = self.byte_lengths()[np.asarray(tokens)]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        if offsets[-1] != len(data):  # not this text's tokens (or unusual pieces): encode plainly
            return self.encode_batch(_cut(text, cuts))
        byte_cuts = [len(text[:c].encode("utf-8")) for c in cuts]
        bounds = [0, *byte_cuts, len(data)]
        out = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            s, e = _next_boundary(data, a), _prev_boundary(data, b)
            i, j = np.searchsorted(offsets, [s, e])
            if s >= e or offsets[i] != s or offsets[j] != e:
                out.append(self.encode(data[a:b].decode("utf-8")))
                continue
            out.append(self.encode(data[a:s].decode("utf-8")) + [int(t) for t in tokens[i:j]]
                       + self.encode(data[e:b].decode("utf-8")))
        return out

    def byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes each token id decodes to (byte-fallback pieces 1, control tokens 0)."""
        if getattr(self, "_lengths", None) is None:
            sp = self.sp
            self._lengths = np.asarray(
                [1 if sp.is_byte(i) else 0 if (sp.is_control(i) or sp.is_unknown(i))
                 else len(sp.id_to_piece(i).replace("\u2581", " ").encode("utf-8")) for i in range(self.vocab_size)],
                np.int64)
        return self._lengths

    def line_ends(self) -> np.ndarray:
        """Whether each token id's text ends a line (its last character is a newline)."""
        if getattr(self, "_line_ends", None) is None:
            sp = self.sp
            self._line_ends = np.asarray(
                [sp.id_to_piece(i) == "<0x0A>" if sp.is_byte(i) else
                 not (sp.is_control(i) or sp.is_unknown(i)) and sp.id_to_piece(i).endswith("\n")
                 for i in range(self.vocab_size)], bool)
        return self._line_ends

    def sha256(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    def special_tokens(self) -> dict:
        return {"bos_token_id": self.bos_id, "eos_token_id": self.eos_id, "pad_token_id": self.pad_id}


def _cut(text: str, cuts) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _is_boundary(data: bytes, x: int) -> bool:
    return x == 0 or x == len(data) or (data[x] == 0x20 and data[x - 1] != 0x20)


def _next_boundary(data: bytes, x: int) -> int:
    """Smallest separable position >= x."""
    while not _is_boundary(data, x):
        nxt = data.find(b" ", x + 1)
        if nxt == -1:
            return len(data)
        x = nxt
    return x


def _prev_boundary(data: bytes, x: int) -> int:
    """Largest separable position <= x."""
    while not _is_boundary(data, x):
        prev = data.rfind(b" ", 0, x)
        x = 0 if prev == -1 else prev
    return x


def save_hf_tokenizer(model_path: str | os.PathLike, out_dir: str | os.PathLike) -> list[str]:
    """Writes tokenizer.json / tokenizer_config.json (and tokenizer.model) for transformers.

    `split_special_tokens=True` keeps literal "<s>" or "</s>" in code from becoming BOS/EOS, and
    `add_prefix_space=False` matches training; with both, ids equal sentencepiece's exactly.
    """
    from transformers import LlamaTokenizer  # the hf extra

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(model_path, Path(tmp) / "tokenizer.model")
        tok = LlamaTokenizer.from_pretrained(tmp, add_prefix_space=False, split_special_tokens=True,
                                             add_bos_token=False, add_eos_token=False)
        tok.pad_token = "<pad>"
        files = list(tok.save_pretrained(str(out)))
    shutil.copy(model_path, out / "tokenizer.model")  # transformers 5 does not re-save it
    return [Path(f).name for f in files] + ["tokenizer.model"]
