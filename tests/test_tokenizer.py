"""Tokenizers of both kinds: lossless on real source files and whitespace edge cases, FIM markers
single tokens, special ids read from the files, ids equal to transformers' AutoTokenizer on the
stdlib, and the exact re-tokenization around FIM cuts."""

from __future__ import annotations

import json
import random
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from helpers import deepseek_like_tokenizer

from jaxcoder.data.tokenizer import DEEPSEEK_TOKENS, STARCODER_TOKENS, load_tokenizer, train_tokenizer
from jaxcoder.fields import ConfigError

EDGE_CASES = [
    "def f(x):\n    return x\n", "\tindented\twith\ttabs\n", "trailing spaces   \n\n\n", "crlf\r\nline\r\n",
    "html </s> and <s> literals", "emoji 🙂 and accents é ü", "  leading spaces", "", "x" * 3000,
    "digits 1234567890", "<fim_prefix>a<fim_suffix>b<fim_middle>c", "x\u00a0= 1\u3000\n", "a\t \n\tb  \n \n",
]
SPLIT_CASES = ["  a  b ", " x", "x ", "a  \n  b", "a\t \n  b", "x = 1;\n\n    y\u00a0= 2\n", "\n\n  \n"]


@pytest.fixture(scope="module")
def corpus():
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))[:160]
    return [f.read_text(encoding="utf-8") for f in files]


def stdlib_files(n: int | None = None) -> list[str]:
    """The standard library's own modules (no site-packages), every n-th for a sample."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = [f for f in sorted(root.rglob("*.py")) if not {"site-packages", "dist-packages"} & set(f.parts)]
    texts = []
    for f in files[::max(1, len(files) // n) if n else 1]:
        try:
            texts.append(f.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return texts


@pytest.fixture(scope="module")
def kinds(corpus, tmp_path_factory):
    """A tokenizer of each kind (and DeepSeek's pre-tokenizer family) trained on half the corpus."""
    d = tmp_path_factory.mktemp("tok")
    return {"sentencepiece": load_tokenizer(train_tokenizer(corpus[::2], d / "code.model", vocab_size=2048)),
            "hf": load_tokenizer(train_tokenizer(corpus[::2], d / "bpe", kind="hf", vocab_size=2048)),
            "hf-deepseek": load_tokenizer(deepseek_like_tokenizer(corpus[::2], d / "ds", vocab_size=2048))}


@pytest.mark.parametrize("kind", ["sentencepiece", "hf", "hf-deepseek"])
def test_lossless_on_source_files_and_edge_cases(kinds, corpus, kind):
    tok = kinds[kind]
    for text in corpus[1::2] + EDGE_CASES:
        assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("kind", ["sentencepiece", "hf"])
def test_fim_markers_are_single_tokens(kinds, kind):
    tok = kinds[kind]
    for marker in STARCODER_TOKENS:
        ids = tok.encode(f"a{marker}b")
        assert tok.token_id(marker) in ids and len([i for i in ids if i == tok.token_id(marker)]) == 1
    tok.check_layout("starcoder")


def test_deepseek_layout(corpus, tmp_path, kinds):
    tok = load_tokenizer(train_tokenizer(corpus[:50], tmp_path / "ds.model", vocab_size=1024, layout="deepseek"))
    for marker in DEEPSEEK_TOKENS:
        assert len(tok.encode(marker)) == 1
    ds = kinds["hf-deepseek"]
    ds.check_layout("deepseek")
    with pytest.raises(ConfigError, match=r"lacks; set --config.tokenizer.layout=deepseek") as e:
        ds.check_layout("starcoder")
    assert "<fim_prefix>, <fim_middle>, <fim_suffix>" in str(e.value)


def test_special_ids_come_from_the_files(kinds):
    sp, hf, ds = kinds["sentencepiece"], kinds["hf"], kinds["hf-deepseek"]
    assert (sp.bos_id, sp.eos_id, sp.pad_id, sp.add_bos) == (2, 3, 0, False)
    end = hf.token_id("<|endoftext|>")
    assert (end, hf.token_id("<fim_prefix>"), hf.token_id("<file_sep>")) == (0, 1, 6)  # StarCoder2's order
    assert (hf.eos_id, hf.add_bos) == (end, False)
    assert (ds.bos_id, ds.eos_id, ds.pad_id, ds.add_bos) == (0, 1, 1, True)
    assert ds.encode_prompt("x")[0] == ds.bos_id and hf.encode_prompt("x") == hf.encode("x")


def test_sentencepiece_model_with_its_own_special_ids(corpus, tmp_path):
    """A Llama-style model (unk 0, bos 1, eos 2, no pad), trained here: its ids, never 0/1/2/3."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus[:60]), model_prefix=str(tmp_path / "llama"),
                                   model_type="bpe", vocab_size=600, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
                                   minloglevel=2, byte_fallback=True)
    tok = load_tokenizer(tmp_path / "llama.model")
    assert (tok.bos_id, tok.eos_id, tok.pad_id) == (1, 2, None)
    assert tok.special_tokens() == {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": None}
    spm.SentencePieceTrainer.train(sentence_iterator=iter(corpus[:60]), model_prefix=str(tmp_path / "noeos"),
                                   model_type="bpe", vocab_size=600, eos_id=-1, minloglevel=2)
    with pytest.raises(ConfigError, match="has no end-of-text token"):
        load_tokenizer(tmp_path / "noeos.model")


def test_refusals_name_the_file(tmp_path, kinds):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nope.model")):
        load_tokenizer(tmp_path / "nope.model")
    with pytest.raises(ConfigError, match="tokenizer.layout must be one of"):
        train_tokenizer(["x"], tmp_path / "t.model", layout="gpt2")
    bad = tmp_path / "no_eos"
    kinds["hf"].copy_to(bad)
    cfg = json.loads((bad / "tokenizer_config.json").read_text())
    del cfg["eos_token"]
    (bad / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="names no end-of-text token"):
        load_tokenizer(bad)


@pytest.mark.parametrize("kind", ["sentencepiece", "hf", "hf-deepseek"])
def test_split_encode_equals_encoding_each_piece(kinds, corpus, kind):
    """FIM's fast path: re-tokenizing only around the cuts gives exactly encode(piece)."""
    tok = kinds[kind]
    rng = random.Random(0)
    for text in corpus[1:50:2] + EDGE_CASES + SPLIT_CASES:
        ids = np.asarray(tok.encode(text), np.int32)
        for _ in range(6):
            cuts = tuple(sorted(rng.randint(0, len(text)) for _ in range(2)))
            bounds = [0, *cuts, len(text)]
            want = tok.encode_batch([text[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)])
            assert tok.split_encode(ids, text, cuts) == want, (text[:60], cuts)


@pytest.mark.parametrize("kind", ["sentencepiece", "hf", "hf-deepseek"])
def test_byte_lengths_and_line_ends_spell_the_text(kinds, corpus, kind):
    tok = kinds[kind]
    for text in corpus[:40] + [c for c in EDGE_CASES if "<fim" not in c]:  # specials spell no text
        ids = tok.encode(text)
        assert int(tok.byte_lengths()[ids].sum()) == len(text.encode("utf-8"))
        assert int(tok.line_ends()[ids].sum()) <= text.count("\n")


def test_ids_equal_transformers_autotokenizer_on_the_stdlib(hf, kinds, tmp_path):
    """200 stdlib files spread over the whole library (all of them: bench/tokenizer.py): the
    exported sentencepiece tokenizer and the hf one written back (byte for byte) give jaxcoder's
    ids in transformers. (tests/test_published.py does the same for the published models'
    stand-ins.)"""
    from transformers import AutoTokenizer

    texts = stdlib_files(200)
    for kind in ("sentencepiece", "hf"):
        tok = kinds[kind]
        out = tmp_path / kind
        names = tok.save_hf(out)
        if tok.kind == "hf":
            assert all((out / n).read_bytes() == (tok.path / n).read_bytes() for n in names)
        auto = AutoTokenizer.from_pretrained(out)
        ours = tok.encode_batch(texts + EDGE_CASES)
        theirs = auto(texts + EDGE_CASES, add_special_tokens=False)["input_ids"]
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
        assert same == len(ours), (kind, same, len(ours))
        assert auto("x")["input_ids"] == tok.encode_prompt("x"), kind  # BOS where the model adds one
        assert (auto.eos_token_id, auto.bos_token_id) == (tok.eos_id, tok.bos_id)


def test_vocabulary_too_large_for_the_corpus_names_the_field_and_the_limit(tmp_path):
    tiny = ["def f(x):\n    return x + 1\n"] * 20
    with pytest.raises(ValueError, match=r"tokenizer.vocab_size=8192 is more than this corpus can support: "
                                         r"at most (\d+); set --config.tokenizer.vocab_size=\1 or less"):
        train_tokenizer(tiny, tmp_path / "t.model", vocab_size=8192)
    with pytest.raises(ValueError, match=r"tokenizer.vocab_size=100 is less than the \d+ distinct characters"):
        train_tokenizer(tiny, tmp_path / "t.model", vocab_size=100)
    with pytest.raises(ValueError, match="no text to train the tokenizer on"):
        train_tokenizer([], tmp_path / "t.model", vocab_size=1000)
    with pytest.raises(ConfigError, match="tokenizer.vocab_size=200 is less than the 256 bytes"):
        train_tokenizer(tiny, tmp_path / "bpe", kind="hf", vocab_size=200)


@pytest.mark.parametrize("kind", ["sentencepiece", "hf", "hf-deepseek"])
def test_the_ends_of_a_long_text_encode_as_in_the_whole_text(kinds, corpus, kind):
    """FIM prompts encode a window at the hole instead of the whole (repository-sized) document:
    the tokens kept equal the ends of the whole text's encoding, at random cuts, across a long
    run of spaces (the window must grow past it) and for texts shorter than the window."""
    from jaxcoder.eval.infilling import end_tokens

    tok, rng = kinds[kind], random.Random(0)
    text = "".join(corpus[1::2])[:60_000]
    text = text[:30_000] + " " * 3000 + "\n" + text[30_000:]
    for cut in [*(rng.randrange(len(text)) for _ in range(6)), 30_000 + 3001 + 40, 30_000 + 1500, 500]:
        for n in (29, 125):
            assert end_tokens(tok, text[:cut], n, last=True) == tok.encode(text[:cut])[-n:], (cut, n)
            assert end_tokens(tok, text[cut:], n, last=False) == tok.encode(text[cut:])[:n], (cut, n)
    assert end_tokens(tok, "x = 1\n", 125, last=True) == tok.encode("x = 1\n")
    assert end_tokens(tok, "x = 1\n", 0, last=False) == []
