"""The tokenizer interface: one protocol, two kinds, loaded from the files that define them.

* `sentencepiece`: a `.model` file (jaxcoder trains these by default; `spm_tokenizer.py`);
* `hf`: a Hugging Face `tokenizer.json` (byte-level BPE, as StarCoder, StarCoder2 and
  DeepSeek-Coder ship), with `tokenizer_config.json` / `special_tokens_map.json` for the special
  tokens (`bpe_tokenizer.py`).

Data preparation, FIM, training, evaluation, generation and export only use `Tokenizer`'s methods:
`encode` / `encode_batch` / `decode`, `encode_prompt` (with BOS where the model expects one),
`token_id`, `split_encode` (exact re-tokenization around FIM cuts), `byte_lengths`, `line_ends`,
the special ids read from the files (never constants), and `sha256` of the defining files.
`load_tokenizer(path)` picks the kind from what `path` holds.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from jaxcoder.data import shards
from jaxcoder.fields import ConfigError, check, field

# Marker tokens of the two FIM/metadata layouts (code-llm-papers.md §1).
STARCODER_TOKENS = ("<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<file_sep>", "<repo_name>")
DEEPSEEK_TOKENS = ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>")
TOKEN_LAYOUTS = {"starcoder": STARCODER_TOKENS, "deepseek": DEEPSEEK_TOKENS}
# The FIM tokens a layout needs (the metadata markers are optional).
FIM_TOKENS = {"starcoder": STARCODER_TOKENS[:3], "deepseek": DEEPSEEK_TOKENS}
KINDS = ("sentencepiece", "hf")


@dataclasses.dataclass(frozen=True)
class TokenizerConfig:
    """The `tokenizer` section."""

    # An existing tokenizer: a sentencepiece .model, a directory or file with a Hugging Face
    # tokenizer.json, or a jaxcoder checkpoint directory (its tokenizer); else `data prepare`
    # trains one of `kind`.
    path: str | None = None
    kind: str = field("sentencepiece", choices=KINDS)  # the trainer for a new tokenizer
    vocab_size: int = field(8192, ge=1)  # of a tokenizer `data prepare` trains
    layout: str = field("starcoder", choices=tuple(TOKEN_LAYOUTS))  # FIM/metadata tokens
    train_docs: int = field(2000, ge=1)  # documents sampled to train a tokenizer

    def __post_init__(self):
        check(self, "tokenizer")


class Tokenizer:
    """What every kind provides; subclasses fill in the encoding and the vocabulary tables."""

    kind: str
    path: Path  # the .model file, or the directory holding tokenizer.json
    bos_id: int | None
    eos_id: int
    pad_id: int | None
    add_bos: bool  # whether sequences start with BOS (DeepSeek-Coder's tokenizer adds one)

    # ----------------------------------------------------------- per kind
    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:
        """The text's tokens, without BOS/EOS."""
        raise NotImplementedError

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        raise NotImplementedError

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def token_id(self, piece: str) -> int:
        """The id of a token given by its text; KeyError when the vocabulary lacks it."""
        raise NotImplementedError

    def files(self) -> list[Path]:
        """The files that define the tokenizer (hashed, copied with checkpoints, exported)."""
        raise NotImplementedError

    def _token_bytes(self) -> list[bytes | None]:
        """The bytes each id decodes to (None for special tokens, which stand for no text)."""
        raise NotImplementedError

    def _separable(self, text: str, i: int) -> bool:
        """Whether tokenization is separable at character i of `text`: encoding text[:i] and
        text[i:] apart gives encode(text) (see `split_encode`)."""
        raise NotImplementedError

    def save_hf(self, out_dir: str | Path) -> list[str]:
        """Writes the files transformers loads (tokenizer.json, tokenizer_config.json, ...)."""
        raise NotImplementedError

    # ----------------------------------------------------------- shared
    def encode_prompt(self, text: str) -> list[int]:
        """A prompt as the model reads it: BOS first where the tokenizer adds one."""
        ids = self.encode(text)
        return [self.bos_id, *ids] if self.add_bos and self.bos_id is not None else ids

    def sha256(self) -> str:
        """Hash of the defining files (a sentencepiece model: its bytes, as manifests record)."""
        files = self.files()
        if len(files) == 1:
            return hashlib.sha256(files[0].read_bytes()).hexdigest()
        h = hashlib.sha256()
        for f in sorted(files, key=lambda p: p.name):
            h.update(f.name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
        return h.hexdigest()

    def special_tokens(self) -> dict:
        return {"bos_token_id": self.bos_id, "eos_token_id": self.eos_id, "pad_token_id": self.pad_id}

    def byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes each token id decodes to (special tokens 0)."""
        if getattr(self, "_lengths", None) is None:
            self._lengths = np.asarray([0 if b is None else len(b) for b in self._token_bytes()], np.int64)
        return self._lengths

    def line_ends(self) -> np.ndarray:
        """Whether each token id's text ends a line (its last byte is a newline)."""
        if getattr(self, "_line_ends", None) is None:
            self._line_ends = np.asarray([bool(b) and b.endswith(b"\n") for b in self._token_bytes()], bool)
        return self._line_ends

    def copy_to(self, directory: str | Path) -> Path:
        """Copies the defining files into `directory`; returns the path that loads them there."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for f in self.files():
            shutil.copyfile(f, directory / f.name)
        return directory / self.path.name if self.path.is_file() else directory

    def check_layout(self, layout: str, what: str = "FIM") -> None:
        """Refuses a tokenizer without the layout's FIM tokens, naming the missing ones."""
        missing = [t for t in FIM_TOKENS[layout] if not self.has_token(t)]
        if missing:
            other = [k for k, toks in FIM_TOKENS.items() if k != layout and all(self.has_token(t) for t in toks)]
            hint = f"set --config.tokenizer.layout={other[0]}" if other else "set --config.data.fim.rate=0"
            raise ConfigError(f"{what} needs the {layout!r} layout's token(s) {', '.join(missing)}, which the "
                              f"tokenizer at {self.path} lacks; {hint}")

    def has_token(self, piece: str) -> bool:
        try:
            self.token_id(piece)
        except KeyError:
            return False
        return True

    def split_encode(self, tokens, text: str, cuts: tuple[int, ...]) -> list[list[int]]:
        """`encode` of each piece of `text` cut at the character positions `cuts`, reusing `tokens`
        (= encode(text)) between the separable positions nearest the cuts, so only the words
        around each cut are encoded again. Exact: where `tokens` do not spell `text` byte for byte
        (special tokens in it, say), every piece is simply encoded."""
        lengths = self.byte_lengths()[np.asarray(tokens, np.int64)]
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        data = text.encode("utf-8")
        if offsets[-1] != len(data):
            return self.encode_batch(_cut(text, cuts))
        # character -> byte offsets only where needed (most code is ASCII: then they are equal)
        to_byte = (lambda c: c) if text.isascii() else (lambda c: len(text[:c].encode("utf-8")))
        bounds = [0, *cuts, len(text)]
        out = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            s, e = self._next_separable(text, a, b), self._prev_separable(text, b, a)
            i, j = np.searchsorted(offsets, [to_byte(s), to_byte(e)])
            if s >= e or offsets[i] != to_byte(s) or offsets[j] != to_byte(e):
                out.append(self.encode(text[a:b]))
                continue
            out.append(self.encode(text[a:s]) + [int(t) for t in tokens[i:j]] + self.encode(text[e:b]))
        return out

    def _next_separable(self, text: str, x: int, limit: int) -> int:
        while x < limit and x != 0 and not self._separable(text, x):
            x += 1
        return x

    def _prev_separable(self, text: str, x: int, limit: int) -> int:
        while x > limit and x != len(text) and not self._separable(text, x):
            x -= 1
        return x


def _cut(text: str, cuts) -> list[str]:
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def tokenizer_kind(path: str | Path) -> str:
    """`sentencepiece` or `hf` by what `path` holds (a jaxcoder checkpoint: its tokenizer)."""
    p = resolve_path(path)
    return "hf" if p.is_dir() or p.name.endswith(".json") else "sentencepiece"


def resolve_path(path: str | Path) -> Path:
    """The tokenizer inside `path`: a file as is; a directory's tokenizer.json, tokenizer.model
    or `tokenizer/` (a jaxcoder checkpoint or prepared-data directory)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"tokenizer {p} does not exist (tokenizer.path: a sentencepiece .model, a "
                                "directory with tokenizer.json, or a jaxcoder checkpoint)")
    if p.is_file():
        return p
    if (p / "tokenizer.json").exists():
        return p
    if (p / shards.MANIFEST).exists():  # prepared data: the manifest names its build's tokenizer
        return resolve_path(shards.tokenizer_path(p, shards.load_manifest(p)))
    for candidate in (p / "tokenizer", p / "tokenizer.model"):
        if candidate.exists():
            return resolve_path(candidate)
    raise FileNotFoundError(f"{p} holds no tokenizer (tokenizer.json, tokenizer.model or tokenizer/)")


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer defined by the files at `path` (see `resolve_path`)."""
    p = resolve_path(path)
    if tokenizer_kind(p) == "hf":
        from jaxcoder.data.bpe_tokenizer import HFTokenizer

        return HFTokenizer(p)
    from jaxcoder.data.spm_tokenizer import SentencePieceTokenizer

    return SentencePieceTokenizer(p)


def train_tokenizer(texts: Iterable[str], out: str | Path, *, kind: str = "sentencepiece", vocab_size: int = 8192,
                    layout: str = "starcoder", vocab_field: str = "tokenizer.vocab_size") -> Path:
    """Trains a tokenizer of `kind` on `texts`: a sentencepiece `.model` file, or a directory with
    a byte-level BPE tokenizer.json; returns the path that `load_tokenizer` takes."""
    if layout not in TOKEN_LAYOUTS:
        raise ConfigError(f"tokenizer.layout must be one of {', '.join(TOKEN_LAYOUTS)}; got {layout!r}")
    if kind == "hf":
        from jaxcoder.data.bpe_tokenizer import train_byte_level_bpe

        return train_byte_level_bpe(texts, out, vocab_size=vocab_size, layout=layout, vocab_field=vocab_field)
    if kind != "sentencepiece":
        raise ConfigError(f"tokenizer.kind must be one of {', '.join(KINDS)}; got {kind!r}")
    from jaxcoder.data.spm_tokenizer import train_sentencepiece

    return train_sentencepiece(texts, out, vocab_size=vocab_size, layout=layout, vocab_field=vocab_field)
