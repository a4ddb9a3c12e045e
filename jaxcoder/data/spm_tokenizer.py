"""The `sentencepiece` tokenizer kind: BPE for code, and its Hugging Face export.

Trained lossless on whitespace (identity normalisation, no dummy prefix, whitespace-only
pieces), with byte fallback and split digits. FIM and metadata markers are user-defined
symbols, so they always encode to one token. Newline stays mergeable: making it a symbol
costs ~7% compression on Python (shared/reference/libraries.md §5.1). A model trained elsewhere
works too: its special ids are read from it, never assumed.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from jaxcoder.data.tokenizer import TOKEN_LAYOUTS, Tokenizer
from jaxcoder.fields import ConfigError

# The ids jaxcoder gives the control tokens of the models it trains.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


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


def train_sentencepiece(texts: Iterable[str], out_path: str | os.PathLike, *, vocab_size: int = 8192,
                        layout: str = "starcoder", max_sentences: int = 2_000_000, num_threads: int | None = None,
                        vocab_field: str = "tokenizer.vocab_size") -> Path:
    """Trains a BPE model on `texts` and writes `out_path` (a .model file)."""
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


def _optional(i: int) -> int | None:
    return None if i < 0 else i


class SentencePieceTokenizer(Tokenizer):
    """A SentencePiece model, special ids as the model defines them."""

    kind = "sentencepiece"
    add_bos = False  # sentencepiece models carry no such setting; jaxcoder's never use BOS

    def __init__(self, model_path: str | os.PathLike):
        self.path = Path(model_path)
        if not self.path.exists():
            raise FileNotFoundError(f"tokenizer model {self.path} does not exist")
        self.sp = spm.SentencePieceProcessor(model_file=str(self.path))
        self.bos_id, self.pad_id = _optional(self.sp.bos_id()), _optional(self.sp.pad_id())
        eos = _optional(self.sp.eos_id())
        if eos is None:
            raise ConfigError(f"the sentencepiece model {self.path} has no end-of-text token (eos_id is -1); "
                              "jaxcoder needs one to end documents")
        self.eos_id = eos

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    def encode(self, text: str) -> list[int]:
        return self.sp.encode(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.sp.encode(texts)

    def decode(self, ids: Iterable[int]) -> str:
        return self.sp.decode([int(i) for i in ids])

    def token_id(self, piece: str) -> int:
        i = self.sp.piece_to_id(piece)
        unk = self.sp.unk_id()
        if i == unk and piece != self.sp.id_to_piece(unk):
            raise KeyError(f"{piece!r} is not a token of {self.path}")
        return i

    def files(self) -> list[Path]:
        return [self.path]

    def _token_bytes(self) -> list[bytes | None]:
        sp = self.sp
        out: list[bytes | None] = []
        for i in range(self.vocab_size):
            piece = sp.id_to_piece(i)
            if sp.is_byte(i):
                out.append(bytes([int(piece[3:5], 16)]))
            elif sp.is_control(i) or sp.is_unknown(i):
                out.append(None)
            else:
                out.append(piece.replace("\u2581", " ").encode("utf-8"))
        return out

    def _separable(self, text: str, i: int) -> bool:
        # SentencePiece never merges across the start of a run of spaces that follows a non-space.
        return i <= 0 or i >= len(text) or (text[i] == " " and text[i - 1] != " ")

    def save_hf(self, out_dir: str | os.PathLike) -> list[str]:
        """tokenizer.json / tokenizer_config.json (and tokenizer.model) for transformers.

        `split_special_tokens=True` keeps literal "<s>" or "</s>" in code from becoming BOS/EOS, and
        `add_prefix_space=False` matches training; with both, ids equal sentencepiece's exactly.
        """
        from transformers import LlamaTokenizer  # the hf extra

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(self.path, Path(tmp) / "tokenizer.model")
            ids = (("bos", self.bos_id), ("eos", self.eos_id), ("unk", _optional(self.sp.unk_id())))
            names = {f"{k}_token": self.sp.id_to_piece(i) for k, i in ids if i is not None}
            tok = LlamaTokenizer.from_pretrained(tmp, add_prefix_space=False, split_special_tokens=True,
                                                 add_bos_token=False, add_eos_token=False, **names)
            if self.pad_id is not None:
                tok.pad_token = self.sp.id_to_piece(self.pad_id)
            files = list(tok.save_pretrained(str(out)))
        shutil.copy(self.path, out / "tokenizer.model")  # transformers 5 does not re-save it
        return [Path(f).name for f in files] + ["tokenizer.model"]
