"""The Stack's Parquet layouts as sources: v1 (contents in the rows) and v2 (contents read by blob
id from gzip blobs, as Software Heritage stores them) prepare the same shards as the same files
given as repository directories."""

from __future__ import annotations

import gzip
import hashlib
import sysconfig
from pathlib import Path

import pytest
from helpers import prepare_configs

from jaxcoder.data import shards
from jaxcoder.data.prepare import prepare

STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _repos() -> dict[str, dict[str, str]]:
    out = {}
    for package in ("json", "email"):
        root = STDLIB / package
        out[package] = {p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
                        for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}
    return out


def _shard_bytes(directory: Path, manifest: dict) -> dict:
    out = {}
    for split in ("shards", "heldout_shards"):
        for lang, entries in manifest[split].items():
            out[(split, lang)] = [(directory / e["path"]).read_bytes() for e in entries]
    return out


@pytest.mark.slow
def test_stack_layouts_prepare_the_same_shards_as_directories(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    repos = _repos()
    for name, files in repos.items():  # the directory form: <root>/<repo>/<path>
        for path, text in files.items():
            (tmp_path / "dirs" / name / path).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / "dirs" / name / path).write_text(text, encoding="utf-8")
    rows = [(name, path, text) for name, files in repos.items() for path, text in files.items()]
    half = len(rows) // 2  # two Parquet shards, a repository split across them
    v1 = [{"max_stars_repo_name": r, "max_stars_repo_path": p, "content": t, "lang": "Python", "size": len(t)}
          for r, p, t in rows]
    (tmp_path / "v1").mkdir()
    pq.write_table(pa.Table.from_pylist(v1[:half]), tmp_path / "v1" / "train-00000.parquet")
    pq.write_table(pa.Table.from_pylist(v1[half:]), tmp_path / "v1" / "train-00001.parquet")
    (tmp_path / "blobs").mkdir()
    v2 = []
    for r, p, t in rows:
        blob = hashlib.sha1(t.encode()).hexdigest()
        (tmp_path / "blobs" / blob).write_bytes(gzip.compress(t.encode()))
        v2.append({"blob_id": blob, "repo_name": r, "path": p, "language": "Python", "length_bytes": len(t)})
    v2.append({"blob_id": "0" * 40, "repo_name": "json", "path": "missing.py", "language": "Python",
               "length_bytes": 1})  # a blob that is not there: counted, not fatal
    (tmp_path / "v2").mkdir()
    pq.write_table(pa.Table.from_pylist(v2), tmp_path / "v2" / "data.parquet")

    common = dict(vocab_size=600, heldout_fraction=0.2, workers=2)
    dirs = prepare(*prepare_configs(tmp_path / "out-dirs", repo_roots=(str(tmp_path / "dirs"),), **common),
                   progress=False)
    stack1 = prepare(*prepare_configs(tmp_path / "out-v1", stack_v1=(str(tmp_path / "v1" / "*.parquet"),),
                                      **common), progress=False)
    stack2 = prepare(*prepare_configs(tmp_path / "out-v2", stack_v2=(str(tmp_path / "v2" / "data.parquet"),),
                                      blob_dir=str(tmp_path / "blobs"), **common), progress=False)
    # Directory repositories are named <root>/<repo>; the layouts carry plain names: only the
    # names in repository-level samples would differ, and these packages are Python files.
    expected = _shard_bytes(tmp_path / "out-dirs", dirs)
    assert _shard_bytes(tmp_path / "out-v1", stack1) == expected
    assert _shard_bytes(tmp_path / "out-v2", stack2) == expected
    assert stack2["counts"]["dropped/blob_missing"] == 1
    assert dirs["total_tokens"] == stack1["total_tokens"] == stack2["total_tokens"] > 0
    assert shards.load_manifest(tmp_path / "out-v2")["tokenizer"]["sha256"] == dirs["tokenizer"]["sha256"]
