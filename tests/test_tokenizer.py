"""The code tokenizer: lossless on real source files and whitespace edge cases, FIM markers are
single tokens, and the exported Hugging Face tokenizer gives identical ids."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from jaxcoder.data.tokenizer import DEEPSEEK_TOKENS, STARCODER_TOKENS, Tokenizer, save_hf_tokenizer, train_tokenizer

EDGE_CASES = [
    "def f(x):\n    return x\n", "\tindented\twith\ttabs\n", "trailing spaces   \n\n\n", "crlf\r\nline\r\n",
    "html </s> and <s> literals", "emoji 🙂 and accents é ü", "  leading spaces", "", "x" * 3000,
    "digits 1234567890", "<fim_prefix>a<fim_suffix>b<fim_middle>c",
]


@pytest.fixture(scope="module")
def corpus():
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:400]
    return [f.read_text(encoding="utf-8") for f in files]


@pytest.fixture(scope="module")
def tok(corpus, tmp_path_factory):
    path = train_tokenizer(corpus[::2], tmp_path_factory.mktemp("tok") / "code.model", vocab_size=2048)
    return Tokenizer(path)


def test_lossless_on_source_files_and_edge_cases(tok, corpus):
    for text in corpus[1::2] + EDGE_CASES:
        assert tok.decode(tok.encode(text)) == text


def test_fim_markers_are_single_tokens(tok):
    for marker in STARCODER_TOKENS:
        ids = tok.encode(f"a{marker}b")
        assert tok.token_id(marker) in ids and len([i for i in ids if i == tok.token_id(marker)]) == 1


def test_deepseek_layout(corpus, tmp_path):
    tok = Tokenizer(train_tokenizer(corpus[:50], tmp_path / "ds.model", vocab_size=1024, layout="deepseek"))
    for marker in DEEPSEEK_TOKENS:
        assert len(tok.encode(marker)) == 1


def test_unknown_layout_is_refused(tmp_path):
    with pytest.raises(ValueError, match="tokenizer.layout must be one of"):
        train_tokenizer(["x"], tmp_path / "t.model", layout="gpt2")


def test_missing_model_file_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.model")):
        Tokenizer(tmp_path / "nope.model")


def test_hf_tokenizer_gives_identical_ids(hf, tok, corpus, tmp_path):
    from transformers import AutoTokenizer

    files = save_hf_tokenizer(tok.path, tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json", "tokenizer.model"} <= set(files)
    assert all((tmp_path / f).exists() for f in files)
    hf_tok = AutoTokenizer.from_pretrained(tmp_path)
    for text in corpus[1:200:2] + EDGE_CASES:
        ids = tok.encode(text)
        assert hf_tok(text)["input_ids"] == ids, text[:80]
        assert hf_tok.decode(ids) == text
    assert (hf_tok.pad_token_id, hf_tok.bos_token_id, hf_tok.eos_token_id) == (tok.pad_id, tok.bos_id, tok.eos_id)
    assert Path(tmp_path / "tokenizer.model").read_bytes() == tok.path.read_bytes()


def test_split_encode_equals_encoding_each_piece(tok, corpus):
    """FIM's fast path: re-tokenizing only around the cuts gives exactly encode(piece)."""
    import random

    import numpy as np

    rng = random.Random(0)
    for text in corpus[:150] + EDGE_CASES + ["  a  b ", " x", "x ", "a  \n  b"]:
        ids = np.asarray(tok.encode(text), np.int32)
        for _ in range(6):
            cuts = tuple(sorted(rng.randint(0, len(text)) for _ in range(2)))
            bounds = [0, *cuts, len(text)]
            want = tok.encode_batch([text[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
            assert tok.split_encode(ids, text, cuts) == want, (text[:60], cuts)


def test_vocabulary_too_large_for_the_corpus_names_the_field_and_the_limit(tmp_path):
    tiny = ["def f(x):\n    return x + 1\n"] * 20
    with pytest.raises(ValueError, match=r"tokenizer.vocab_size=8192 is more than this corpus can support: "
                                         r"at most (\d+); set --config.tokenizer.vocab_size=\1 or less"):
        train_tokenizer(tiny, tmp_path / "t.model", vocab_size=8192)
    with pytest.raises(ValueError, match=r"tokenizer.vocab_size=100 is less than the \d+ distinct characters"):
        train_tokenizer(tiny, tmp_path / "t.model", vocab_size=100)
    with pytest.raises(ValueError, match="no text to train the tokenizer on"):
        train_tokenizer([], tmp_path / "t.model", vocab_size=1000)
