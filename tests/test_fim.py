"""FIM: exact token layouts of both model lines against hand-built examples, lossless rejoin, and
the measured FIM/SPM rates over 10K documents."""

from __future__ import annotations

import numpy as np
import pytest

from jaxcoder.data.fim import FimConfig, FimTokens, layout_tokens, permute, split_points


class CharTokenizer:
    """One token per character (ids = code points + 1000); markers get small ids."""

    MARKERS = {"<fim_prefix>": 1, "<fim_middle>": 2, "<fim_suffix>": 3,
               "<｜fim▁begin｜>": 11, "<｜fim▁hole｜>": 12, "<｜fim▁end｜>": 13}

    def token_id(self, piece):
        return self.MARKERS[piece]

    def encode(self, text):
        return [ord(c) + 1000 for c in text]

    def encode_batch(self, texts):
        return [self.encode(t) for t in texts]

    def decode(self, ids):
        return "".join(chr(i - 1000) for i in ids)


TOK = CharTokenizer()


def ids(s):
    return TOK.encode(s)


class FixedRng:
    """Replays chosen values: random() draws, then integers() for the two cut points."""

    def __init__(self, randoms, cuts):
        self.randoms, self.cuts = list(randoms), cuts

    def random(self):
        return self.randoms.pop(0)

    def integers(self, lo, hi, size):
        return np.asarray(self.cuts)


DOC = "def f():\n    return 1\n"


def test_starcoder_psm_layout_token_by_token():
    cfg = FimConfig(rate=1.0, spm_rate=0.5, layout="starcoder")
    out = permute(np.asarray(ids(DOC)), FixedRng([0.0, 0.9], [4, 12]), TOK, cfg,
                  FimTokens.from_tokenizer(TOK, "starcoder"))
    # prefix "def ", middle "f():\n   " (chars 4..12), suffix " return 1\n"
    expected = [1, *ids("def "), 3, *ids(" return 1\n"), 2, *ids("f():\n   ")]
    assert out.tolist() == expected


def test_starcoder_spm_layout_token_by_token():
    cfg = FimConfig(rate=1.0, spm_rate=0.5, layout="starcoder")
    out = permute(np.asarray(ids(DOC)), FixedRng([0.0, 0.1], [12, 4]), TOK, cfg,
                  FimTokens.from_tokenizer(TOK, "starcoder"))
    # <fim_prefix><fim_suffix> suffix <fim_middle> prefix middle
    expected = [1, 3, *ids(" return 1\n"), 2, *ids("def "), *ids("f():\n   ")]
    assert out.tolist() == expected


def test_deepseek_psm_layout_token_by_token():
    cfg = FimConfig(rate=1.0, spm_rate=0.0, layout="deepseek")
    out = permute(np.asarray(ids(DOC)), FixedRng([0.0, 0.9], [0, 9]), TOK, cfg,
                  FimTokens.from_tokenizer(TOK, "deepseek"))
    expected = [11, 12, *ids("    return 1\n"), 13, *ids("def f():\n")]
    assert out.tolist() == expected


def test_deepseek_layout_refuses_spm():
    with pytest.raises(ValueError, match="PSM only"):
        FimConfig(rate=0.5, spm_rate=0.5, layout="deepseek")


def test_documents_rejoin_and_rates_match(prepared_data, monkeypatch):
    """Real tokenizer, 10K documents: prefix + middle + suffix == document, and the FIM and SPM
    rates are within 4.5 standard deviations of the configured ones. (An SPM and a PSM sample with
    an empty prefix are the same tokens, so the SPM choice is recorded where it is made.)"""
    from pathlib import Path

    from jaxcoder.data import fim as fim_module
    from jaxcoder.data.tokenizer import Tokenizer

    chosen = []
    real_layout = fim_module.layout_tokens

    def spy(pre, mid, suf, ids_, spm):
        chosen.append(spm)
        return real_layout(pre, mid, suf, ids_, spm)

    monkeypatch.setattr(fim_module, "layout_tokens", spy)

    cfg, manifest = prepared_data
    tok = Tokenizer(Path(cfg.out_dir) / "tokenizer.model")
    fim_ids = FimTokens.from_tokenizer(tok, "starcoder")
    rng = np.random.default_rng(0)
    corpus = ["def add(a, b):\n    return a + b\n", "x = {'k': [1, 2, 3]}\n\n", "\tindent\n  é 🙂 <s>\n",
              "class A:\n    pass\n"] * 2500
    fim_cfg = FimConfig(rate=0.3, spm_rate=0.25)
    for text in corpus:
        doc = np.asarray(tok.encode(text), np.int32)
        out = fim_module.permute(doc, rng, tok, fim_cfg, fim_ids).tolist()
        if out == doc.tolist():
            continue
        if out[:2] == [fim_ids.prefix, fim_ids.suffix]:
            s = out[2:].index(fim_ids.middle) + 2
            suffix, rest = out[2:s], out[s + 1:]
            joined = tok.decode(rest) + tok.decode(suffix)  # SPM: prefix+middle follow the marker
        else:
            si, mi = out.index(fim_ids.suffix), out.index(fim_ids.middle)
            joined = tok.decode(out[1:si]) + tok.decode(out[mi + 1:]) + tok.decode(out[si + 1:mi])
        assert joined == text
    n, n_fim, n_spm = len(corpus), len(chosen), sum(chosen)
    assert abs(n_fim - 0.3 * n) < 4.5 * np.sqrt(n * 0.3 * 0.7), n_fim
    assert abs(n_spm - 0.25 * n_fim) < 4.5 * np.sqrt(n_fim * 0.25 * 0.75), (n_spm, n_fim)


def test_split_points_are_sorted_uniform_and_cover_the_ends():
    rng = np.random.default_rng(1)
    pts = np.asarray([split_points(10, rng) for _ in range(20000)])
    assert (pts[:, 0] <= pts[:, 1]).all() and pts.min() == 0 and pts.max() == 10
    # Each of the two i.i.d. draws is uniform over 11 values: the min has P(0) = 1 - (10/11)^2.
    assert abs((pts[:, 0] == 0).mean() - (1 - (10 / 11) ** 2)) < 0.01


def test_layout_helper_matches_docstring():
    f = FimTokens(prefix=1, suffix=3, middle=2)
    assert layout_tokens([7], [8], [9], f, spm=False) == [1, 7, 3, 9, 2, 8]
    assert layout_tokens([7], [8], [9], f, spm=True) == [1, 3, 9, 2, 7, 8]
