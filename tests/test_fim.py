"""FIM: exact token layouts of both model lines against hand-built examples, lossless rejoin, and
the measured FIM/SPM rates over 10K documents."""

from __future__ import annotations

import numpy as np
import pytest

from jaxcoder.data.fim import FimConfig, FimTokens, layout_tokens, line_span, permute, split_points


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

    from jaxcoder.data import fim as fim_module
    from jaxcoder.data.tokenizer import load_tokenizer

    chosen = []
    real_layout = fim_module.layout_tokens

    def spy(pre, mid, suf, ids_, spm):
        chosen.append(spm)
        return real_layout(pre, mid, suf, ids_, spm)

    monkeypatch.setattr(fim_module, "layout_tokens", spy)

    cfg, manifest = prepared_data
    tok = load_tokenizer(cfg.tokenizer_path)
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


def test_line_spans_are_whole_lines_like_the_line_infilling_benchmarks():
    text = "a = 1\nif a:\n    b = 2\n\nprint(b)\n"
    lines = text.split("\n")[:-1]
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(2000):
        lo, hi = line_span(text, rng)
        assert lo == 0 or text[lo - 1] == "\n"  # starts at a line start
        assert text[hi] == "\n"  # ends before a newline: the suffix starts with it, as in the benchmarks
        seen.add(text[lo:hi])
    singles = {m for m in seen if "\n" not in m}
    assert singles == set(lines)  # every line, the empty one included, is a single-line middle
    assert "if a:\n    b = 2" in seen and text[:-1] in seen  # and multi-line middles up to all of it
    assert line_span("", rng) == (0, 0) and line_span("no newline", rng) == (0, 10)


def test_line_rate_mixes_line_and_character_spans():
    """line_rate=0 keeps the character-level random stream unchanged; line_rate=1 only line spans."""
    doc = np.asarray(ids("def f(x):\n    y = x + 1\n    return y\n"), np.int32)
    fim_ids = FimTokens.from_tokenizer(TOK, "starcoder")

    def middles(line_rate, seed=3):
        rng = np.random.default_rng(seed)
        cfg = FimConfig(rate=1.0, spm_rate=0.0, line_rate=line_rate)
        outs = [permute(doc, rng, TOK, cfg, fim_ids).tolist() for _ in range(300)]
        return [TOK.decode(o[o.index(fim_ids.middle) + 1:]) for o in outs]

    rng = np.random.default_rng(3)
    char_only = []
    for _ in range(300):  # the pre-line_rate draws: rate, the two cut points, spm
        rng.random()
        lo, hi = split_points(len(TOK.decode(doc.tolist())), rng)
        rng.random()
        char_only.append(TOK.decode(doc.tolist())[lo:hi])
    assert middles(0.0) == char_only
    text = TOK.decode(doc.tolist())
    line_middles = middles(1.0)
    assert all((text.index(m) == 0 or text[text.index(m) - 1] == "\n") and text[text.index(m) + len(m)] == "\n"
               for m in line_middles if m)
    with pytest.raises(ValueError, match="line_rate must be >= 0 and <= 1"):
        FimConfig(line_rate=1.5)


def test_context_level_pieces_end_with_eos_and_rejoin(prepared_data):
    """data.fim.max_tokens: pieces cut at line ends, each FIM-transformed on its own, EOS after
    every transformed piece but the document's last; the pieces rejoin to the document."""
    import sysconfig
    from pathlib import Path

    from jaxcoder.data.tokenizer import load_tokenizer

    cfg, _ = prepared_data
    tok = load_tokenizer(cfg.tokenizer_path)
    fim_ids = FimTokens.from_tokenizer(tok, "starcoder")
    text = (Path(sysconfig.get_paths()["stdlib"]) / "json" / "encoder.py").read_text()
    doc = np.asarray(tok.encode(text), np.int32)
    rng = np.random.default_rng(0)
    for rate in (1.0, 0.5):
        out = permute(doc, rng, tok, FimConfig(rate=rate, spm_rate=0.0, max_tokens=64), fim_ids,
                      end_id=tok.eos_id).tolist()
        chunks = [[]]  # split at EOS: plain pieces run together, each transformed piece ends a chunk
        for t in out:
            chunks.append([]) if t == tok.eos_id else chunks[-1].append(t)
        rebuilt, transformed = [], []
        for c in chunks:
            assert c.count(fim_ids.prefix) <= 1 and (fim_ids.prefix not in c or chunks[-1] is c or
                                                      fim_ids.middle in c)
            if fim_ids.prefix in c:
                i, si, mi = c.index(fim_ids.prefix), c.index(fim_ids.suffix), c.index(fim_ids.middle)
                piece = tok.decode(c[i + 1:si]) + tok.decode(c[mi + 1:]) + tok.decode(c[si + 1:mi])
                rebuilt += [tok.decode(c[:i]), piece]
                transformed.append(piece)
            else:
                rebuilt.append(tok.decode(c))
                assert c is chunks[-1]  # a chunk without FIM can only be the plain tail
        assert "".join(rebuilt) == text
        if rate == 1.0:  # every piece transformed: one chunk each, at most 64 tokens + 3 sentinels
            assert len(transformed) == len(chunks) >= len(doc) // 64
            assert all(len(c) <= 64 + 3 + 4 for c in chunks)  # + re-tokenization at the two cuts
            # Cut at line ends (a hard cut only where a piece's second half has none; see shards.split_record).
            assert sum(p.endswith("\n") for p in transformed[:-1]) >= 0.9 * (len(transformed) - 1)
        else:
            assert 0 < len(transformed) < len(doc) // 32


def _real_tokenizer(prepared_data):

    from jaxcoder.data.tokenizer import load_tokenizer

    cfg, _ = prepared_data
    return load_tokenizer(cfg.tokenizer_path)


def test_starcoder2_repository_samples_are_fim_transformed_per_file(prepared_data):
    """StarCoder2's repository-context FIM: `<repo_name>` metadata and `<file_sep>` separators stay
    where they are, each file is transformed on its own with its path at the start of the prefix,
    and the files rejoin exactly."""
    from jaxcoder.data.repo_order import RepoFile, repo_samples

    tok = _real_tokenizer(prepared_data)
    fim_ids = FimTokens.from_tokenizer(tok, "starcoder")
    files = [RepoFile("pkg/util.py", "python", "import os\n\n\ndef here():\n    return os.getcwd()\n"),
             RepoFile("pkg/main.py", "python",
                      "from pkg import VERSION\nfrom pkg.util import here\n\nprint(VERSION, here())\n"),
             RepoFile("pkg/__init__.py", "python", "VERSION = '1.0'\n")]
    text = repo_samples("org/repo", files, style="starcoder2")[0][1]
    doc = np.asarray(tok.encode(text), np.int32)
    seps = np.flatnonzero(doc == fim_ids.file_sep)
    assert len(seps) == 3 and doc[0] == fim_ids.repo_name
    rng = np.random.default_rng(0)
    for _ in range(20):
        out = permute(doc, rng, tok, FimConfig(rate=1.0, spm_rate=0.0, file_rate=1.0), fim_ids).tolist()
        assert out[:seps[0]] == doc[:seps[0]].tolist()  # `<repo_name>org/repo` untouched
        fragments = np.split(np.asarray(out), np.flatnonzero(np.asarray(out) == fim_ids.file_sep))[1:]
        assert len(fragments) == 3
        rebuilt = tok.decode(doc[:seps[0]].tolist())
        for frag in fragments:
            frag = frag.tolist()
            assert frag[0] == fim_ids.file_sep and frag[1] == fim_ids.prefix
            si, mi = frag.index(fim_ids.suffix), frag.index(fim_ids.middle)
            prefix, suffix, middle = tok.decode(frag[2:si]), tok.decode(frag[si + 1:mi]), tok.decode(frag[mi + 1:])
            assert prefix.startswith("pkg/") and ".py\n" in prefix  # the whole path line is in the prefix
            rebuilt += "<file_sep>" + prefix + middle + suffix
        assert rebuilt == text
    # file_rate 0: a candidate repository keeps every file as it is; rate 0: nothing is drawn at all.
    assert permute(doc, rng, tok, FimConfig(rate=1.0, file_rate=0.0), fim_ids).tolist() == doc.tolist()
    assert permute(doc, rng, tok, FimConfig(rate=0.0), fim_ids) is doc


def test_stored_pieces_end_with_eos_only_at_the_document_end(prepared_data):
    """A document longer than data.max_sample_tokens is stored in pieces; only its last piece is
    followed by EOS, unless FIM made a piece a sample of its own."""
    from pathlib import Path

    from jaxcoder.data import pipeline, shards

    cfg, manifest = prepared_data
    tok = _real_tokenizer(prepared_data)
    pieces = [p for lang in manifest["shards"] for path in shards.shard_paths(cfg.out_dir, manifest, lang)
              for p in shards.read_pieces(Path(path))]
    continued = [p for p in pieces if not p["last"]]
    assert continued  # whole packages in dependency order outgrow max_sample_tokens (4096)
    rng = np.random.default_rng(0)
    plain = pipeline._Fim(cfg.tokenizer_path, FimConfig(rate=0.0))
    ends = [plain.random_map(p, rng)["tokens"][-1] == tok.eos_id for p in pieces]
    assert ends == [p["last"] for p in pieces]
    fim = pipeline._Fim(cfg.tokenizer_path, FimConfig(rate=1.0, spm_rate=0.0))
    for p in continued[:5]:  # transformed pieces are whole FIM samples: EOS after the middle
        out = fim.random_map(p, rng)["tokens"]
        assert out[0] == FimTokens.from_tokenizer(tok, "starcoder").prefix and out[-1] == tok.eos_id
    # Joined again, the pieces are the documents, token for token.
    for lang in manifest["shards"]:
        docs = [d for p in shards.shard_paths(cfg.out_dir, manifest, lang) for d in shards.read_documents(Path(p))]
        assert sum(len(d) for d in docs) == manifest["tokens"][lang]


def test_streams_draw_their_own_fim_decisions(prepared_data, monkeypatch):
    """Each loader stream draws different FIM decisions at equal indices (a multi-host run gets as
    many distinct transformations as a one-host run), and a rebuilt stream draws the same again."""
    import copy

    from jaxcoder.data import pipeline

    cfg, _ = prepared_data
    draws: list[float] = []
    real = pipeline.permute

    def spy(tokens, rng, *args, **kwargs):
        draws.append(copy.deepcopy(rng).random())
        return real(tokens, rng, *args, **kwargs)

    monkeypatch.setattr(pipeline, "permute", spy)
    pcfg = pipeline.LoaderConfig(data_dir=cfg.out_dir, seq_len=64, batch_size=2, fim=FimConfig(rate=0.5))

    def first_draws(stream):
        draws.clear()
        docs = pipeline.documents(pcfg, process_index=stream, process_count=2)
        for i in range(8):
            docs[i]
        return list(draws)

    a, b, a_again = first_draws(0), first_draws(1), first_draws(0)
    assert len(a) == 8 and a == a_again
    assert all(x != y for x, y in zip(a, b, strict=True))
    assert pipeline.stream_seed(0, 0) == 0
    assert len({pipeline.stream_seed(s, k) for s in range(3) for k in range(3)}) == 9
