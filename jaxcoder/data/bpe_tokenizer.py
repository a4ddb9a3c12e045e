"""The `hf` tokenizer kind: a Hugging Face `tokenizer.json` read with the `tokenizers` library.

Published code models ship byte-level BPE tokenizers (StarCoder, StarCoder2: GPT-2's regex with
single digits; DeepSeek-Coder: a sequence of regex splits that isolates newlines). Encoding and
decoding are the library's own, so ids equal transformers' `AutoTokenizer` (which wraps the same
file); the special tokens come from `tokenizer_config.json` / `special_tokens_map.json`.
`train_byte_level_bpe` trains one the StarCoder way.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from jaxcoder.data.tokenizer import TOKEN_LAYOUTS, Tokenizer
from jaxcoder.fields import ConfigError

CONFIG_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Special tokens in the published models' order (code-llm-papers.md §1): StarCoder2's first
# seven, and DeepSeek-Coder's BOS, EOS and FIM tokens.
SPECIALS = {"starcoder": ("<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>",
                          "<repo_name>", "<file_sep>"),
            "deepseek": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>", "<｜fim▁hole｜>", "<｜fim▁begin｜>",
                         "<｜fim▁end｜>")}
END_OF_TEXT = {"starcoder": "<|endoftext|>", "deepseek": "<｜end▁of▁sentence｜>"}


def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-character table, inverted (what ByteLevel vocabularies spell)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _content(token) -> str | None:
    """A special token entry of tokenizer_config.json: a string or an AddedToken dict."""
    if isinstance(token, dict):
        return token.get("content")
    return token if isinstance(token, str) else None


def _family(pre: dict | None) -> str | None:
    """Where tokenization is separable, from the pre-tokenizer's structure:
    `gpt2` (GPT-2's regex, optionally after single-digit splitting: StarCoder's), `newline`
    (a sequence whose first split isolates each newline: DeepSeek-Coder's), or None (unknown:
    FIM cuts re-encode the pieces whole)."""
    if not pre:
        return None
    parts = pre.get("pretokenizers") if pre.get("type") == "Sequence" else [pre]
    if not parts:
        return None
    first = parts[0]
    regex = (first.get("pattern") or {}).get("Regex")
    newline = regex in ("[\r\n]", "\\n|\\r", "[\\r\\n]")
    if first.get("type") == "Split" and newline and first.get("behavior") == "Isolated":
        return "newline"
    kinds = [p.get("type") for p in parts]
    if kinds[-1] == "ByteLevel" and parts[-1].get("use_regex", True) and set(kinds[:-1]) <= {"Digits"}:
        return "gpt2"
    return None


class HFTokenizer(Tokenizer):
    """A tokenizer.json (a directory holding it, or the file) with its special-token configs."""

    kind = "hf"

    def __init__(self, path: str | Path):
        from tokenizers import Tokenizer as _Backend

        path = Path(path)
        self.path = path if path.is_dir() else path.parent
        self._json_path = self.path / "tokenizer.json" if path.is_dir() else path
        spec = json.loads(self._json_path.read_text(encoding="utf-8"))
        if (spec.get("decoder") or {}).get("type") != "ByteLevel":
            raise ConfigError(f"{self._json_path}: jaxcoder's hf tokenizer kind reads byte-level BPE tokenizers "
                              f"(decoder ByteLevel), not {(spec.get('decoder') or {}).get('type')!r}; for a "
                              "sentencepiece-style model give tokenizer.path its tokenizer.model")
        self.backend = _Backend.from_file(str(self._json_path))
        self._added = {t["content"]: t for t in spec.get("added_tokens", [])}
        self._family = None if spec.get("normalizer") else _family(spec.get("pre_tokenizer"))
        config = {}
        for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the latter wins
            f = self.path / name
            if f.exists():
                config.update({k: v for k, v in json.loads(f.read_text(encoding="utf-8")).items() if v is not None})
        self.config = config
        self.bos_id = self._special("bos_token")
        self.pad_id = self._special("pad_token")
        eos = self._special("eos_token")
        if eos is None:
            raise ConfigError(f"the tokenizer at {self.path} names no end-of-text token (eos_token in "
                              "tokenizer_config.json or special_tokens_map.json); jaxcoder needs one to end documents")
        self.eos_id = eos
        self.add_bos = self.bos_id is not None and bool(config.get("add_bos_token", self._post_processor_adds_bos()))

    def _special(self, name: str) -> int | None:
        content = _content(self.config.get(name))
        if content is None:
            return None
        i = self.backend.token_to_id(content)
        if i is None:
            raise ConfigError(f"{self.path}: {name} {content!r} is not a token of tokenizer.json")
        return i

    def _post_processor_adds_bos(self) -> bool:
        probe = self.backend.encode("x", add_special_tokens=True).ids
        return bool(probe) and probe[0] == self.bos_id

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        # encode_batch_fast (tokenizers >= 0.21) skips the character offsets nothing here reads.
        encode = getattr(self.backend, "encode_batch_fast", None) or self.backend.encode_batch
        return [e.ids for e in encode(list(texts), add_special_tokens=False)]

    def decode(self, ids: Iterable[int]) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=False)

    def token_id(self, piece: str) -> int:
        i = self.backend.token_to_id(piece)
        if i is None:
            raise KeyError(f"{piece!r} is not a token of {self._json_path}")
        return i

    def files(self) -> list[Path]:
        return [self.path / n for n in CONFIG_FILES if (self.path / n).exists()]

    def _token_bytes(self) -> list[bytes | None]:
        table = _byte_decoder()
        out: list[bytes | None] = []
        for i in range(self.vocab_size):
            piece = self.backend.id_to_token(i)
            added = self._added.get(piece) if piece is not None else None
            if piece is None or (added and added.get("special")):
                out.append(None)
            elif added:
                out.append(piece.encode("utf-8"))
            else:
                out.append(bytes(table[c] for c in piece) if all(c in table for c in piece) else None)
        return out

    def _separable(self, text: str, i: int) -> bool:
        if i <= 0 or i >= len(text):
            return True
        if self._family == "gpt2":  # a space after a non-space starts a word; nothing merges across
            return text[i] == " " and not text[i - 1].isspace()
        if self._family == "newline":  # every newline is a piece of its own before anything else
            return text[i - 1] in "\r\n" or text[i] in "\r\n"
        return False  # unknown structure: never reuse tokens across a cut

    def save_hf(self, out_dir: str | Path) -> list[str]:
        """The defining files, byte for byte (a published model's tokenizer goes back unchanged)."""
        out = Path(out_dir)
        self.copy_to(out)
        return [f.name for f in self.files()]


def train_byte_level_bpe(texts: Iterable[str], out_dir: str | Path, *, vocab_size: int = 8192,
                         layout: str = "starcoder", vocab_field: str = "tokenizer.vocab_size") -> Path:
    """StarCoder's recipe: byte-level BPE over GPT-2's regex with single digits, the layout's
    special tokens first (ids 0.. in the published models' order), written as tokenizer.json +
    tokenizer_config.json in `out_dir`."""
    from tokenizers import Tokenizer as _Backend
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from jaxcoder.data.tokenizer import STARCODER_TOKENS

    specials = list(SPECIALS[layout]) + [t for t in TOKEN_LAYOUTS[layout] if t not in SPECIALS[layout]]
    if layout == "starcoder":
        specials += [t for t in STARCODER_TOKENS if t not in specials]
    floor = 256 + len(specials)
    if vocab_size <= floor:
        raise ConfigError(f"{vocab_field}={vocab_size} is less than the 256 bytes plus {len(specials)} special "
                          f"tokens a byte-level BPE needs; set --config.{vocab_field} to more than {floor}")
    backend = _Backend(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise ValueError("no text to train the tokenizer on (every document was dropped or empty)")
    backend.train_from_iterator(texts, trainer)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    backend.save(str(out / "tokenizer.json"))
    eos = END_OF_TEXT[layout]
    bos = SPECIALS[layout][0]
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": bos, "eos_token": eos,
              "unk_token": None, "pad_token": None, "add_bos_token": False, "add_prefix_space": False,
              "clean_up_tokenization_spaces": False, "model_max_length": 1_000_000_000}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    return out
