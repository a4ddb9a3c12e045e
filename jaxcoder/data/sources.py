"""Where raw files come from: directories of repositories, `{repo, path, content}` record files
(JSONL or Parquet), and Parquet shards in The Stack's layouts.

The driver lists the input `Unit`s (a directory repository, or one record file); a worker reads a
unit on its own (`read_unit`) as (repository, path, bytes or None, drop reason) tuples, so the
corpus is read in parallel and no process ever holds more than one file. Directory walks never
follow symbolic links (so link loops cannot trap them) and report unreadable files instead of
raising; a malformed record is skipped with its file and line. Record files may be on any
filesystem Beam knows (local paths, `gs://...`).

Layouts of record files:
* `records`: `{repo, path, content}` JSONL or Parquet;
* `stack_v1`: The Stack v1's Parquet (`max_stars_repo_name`, `max_stars_repo_path`, `content`);
* `stack_v2`: The Stack v2's Parquet (`repo_name`, `path`, `blob_id`), each file's content read from
  `<blob_dir>/<blob_id>` gzip-compressed, as Software Heritage stores blobs.
The column names of each layout are configurable (`data.sources.stack_v1_columns` / `..._v2_...`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path

DEFAULT_EXCLUDE = ("__pycache__", ".git", ".hg", ".svn")
RECORD_FIELDS = ("repo", "path", "content")
LAYOUTS = ("records", "stack_v1", "stack_v2")


@dataclasses.dataclass(frozen=True)
class Unit:
    """One input a worker reads on its own: a directory repository, or one record file."""

    kind: str  # dir | records | stack_v1 | stack_v2
    path: str
    repo: str = ""  # a directory's repository name
    top_level_only: bool = False  # only the files directly under path (a root's loose files)
    part: int = 0  # a large directory is read in `parts` parts: every parts-th file from `part`
    parts: int = 1

    @property
    def key(self) -> str:
        key = f"{self.kind}:{self.repo}:{self.path}:{int(self.top_level_only)}"
        return key if self.parts == 1 else f"{key}:{self.part}/{self.parts}"


@dataclasses.dataclass(frozen=True)
class Columns:
    """Column names of a record layout: repository, path, and content (or blob id)."""

    repo: str
    path: str
    content: str


def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def walk(root: str, exclude: tuple[str, ...], top_level_only: bool = False) -> Iterator[tuple[Path, str, str | None]]:
    """(full path, relative path, drop reason or None) of a directory repository, in a fixed
    order: the one walk (exclusions applied, links reported, never followed) that reading the
    files and fingerprinting the inputs both use. FIFOs, sockets and devices are reported as not
    regular files: reading one could block forever."""
    base = Path(root)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False, onerror=None):
        for d in sorted(dirnames):  # os.walk lists links to directories here and never follows them
            if (Path(dirpath) / d).is_symlink() and not top_level_only:
                yield Path(dirpath) / d, (Path(dirpath) / d).relative_to(base).as_posix(), "symlink"
        dirnames[:] = [] if top_level_only else sorted(d for d in dirnames if not _excluded(d, exclude))
        for name in sorted(filenames):
            if _excluded(name, exclude):
                continue
            full = Path(dirpath) / name
            reason = "symlink" if full.is_symlink() else None if full.is_file() else "not_a_regular_file"
            yield full, full.relative_to(base).as_posix(), reason


def units(sources, exclude: tuple[str, ...] | None = None) -> list[Unit]:
    """Every input unit the `data.sources` section names, in a fixed order; missing sources and
    repeated repository names are refused here, before any work."""
    exclude = tuple(sources.exclude if exclude is None else exclude)
    out: list[Unit] = []
    for d in sources.repo_dirs:
        p = Path(d)
        if not p.is_dir():
            raise FileNotFoundError(f"data.sources.repo_dirs: {d} is not a directory")
        out.append(Unit("dir", str(p), repo=p.name))
    for r in sources.repo_roots:
        p = Path(r)
        if not p.is_dir():
            raise FileNotFoundError(f"data.sources.repo_roots: {r} is not a directory")
        for child in sorted(p.iterdir()):
            if child.is_dir() and not child.is_symlink() and not _excluded(child.name, exclude):
                out.append(Unit("dir", str(child), repo=f"{p.name}/{child.name}"))
        if any(f.is_file() for f in p.iterdir()):  # files directly under the root: a repository too
            out.append(Unit("dir", str(p), repo=f"{p.name}/.", top_level_only=True))
    names = [u.repo for u in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"repository names must be unique across sources; repeated: {', '.join(dupes[:5])}")
    for layout in LAYOUTS:
        for pattern in getattr(sources, layout):
            for path in _match(pattern, f"data.sources.{layout}"):
                if path.endswith(".parquet"):
                    _check_parquet(path, columns(layout, sources))
                out.append(Unit(layout, path))
    if not out:
        raise ValueError("data.sources: name at least one of repo_dirs, repo_roots, records, stack_v1, stack_v2")
    if any(u.kind == "stack_v2" for u in out) and not sources.blob_dir:
        raise ValueError("data.sources.stack_v2 reads file contents by blob id: set data.sources.blob_dir")
    return out


def _match(pattern: str, field: str) -> list[str]:
    """The files a path or glob names, on any filesystem Beam supports."""
    from apache_beam.io.filesystems import FileSystems

    found = sorted(m.path for r in FileSystems.match([pattern]) for m in r.metadata_list)
    if not found:
        raise FileNotFoundError(f"{field}: {pattern} does not exist")
    return found


def _open_parquet(path: str):
    import pyarrow.parquet as pq
    from apache_beam.io.filesystems import FileSystems

    return pq.ParquetFile(FileSystems.open(path, compression_type="uncompressed"))


def _check_parquet(path: str, cols: Columns) -> None:
    """A Parquet source must be readable and have the layout's columns: checked on its footer,
    before any work, so a wrong column name is one clear line rather than a failed worker."""
    try:
        names = set(_open_parquet(path).schema_arrow.names)
    except Exception as e:  # noqa: BLE001 - any pyarrow failure: not a readable Parquet file
        raise ValueError(f"data.sources: {path} is not a readable Parquet file ({e})") from None
    missing = [c for c in (cols.repo, cols.path, cols.content) if c not in names]
    if missing:
        raise ValueError(f"data.sources: {path} has no column(s) {', '.join(missing)} (records need "
                         f"{cols.repo}, {cols.path}, {cols.content}; the column names of a Stack layout are "
                         f"data.sources.stack_v1_columns / stack_v2_columns)")


def columns(layout: str, sources) -> Columns:
    if layout == "records":
        return Columns(*RECORD_FIELDS)
    names = tuple(getattr(sources, f"{layout}_columns"))
    if len(names) != 3:
        raise ValueError(f"data.sources.{layout}_columns must name (repo, path, content-or-blob) columns; got {names}")
    return Columns(*names)


# Bytes of one part of a directory: repositories range from a few files to hundreds of MB, and
# runners hand work out by element, so a large one is read as several parts, in parallel.
PART_BYTES = 4 << 20


def split_unit(unit: Unit, sources, part_bytes: int = PART_BYTES) -> list[Unit]:
    """A directory unit as parts of about `part_bytes` each (its files striped over them, in walk
    order); other units whole."""
    if unit.kind != "dir":
        return [unit]
    sizes = []
    for full, _, reason in walk(unit.path, tuple(sources.exclude), unit.top_level_only):
        try:
            sizes.append(0 if reason else full.stat().st_size)
        except OSError:
            sizes.append(0)
    parts = max(1, min(len(sizes), -(-sum(sizes) // part_bytes)))
    return [dataclasses.replace(unit, part=k, parts=parts) for k in range(parts)]


def read_unit(unit: Unit, sources, max_bytes: int) -> Iterator[tuple[str, str, bytes | None, str | None]]:
    """(repository, path, content, drop reason) of every file of a unit; content is None when the
    file is dropped here. A malformed record comes as ("", "<file>:<line>", None, reason)."""
    if unit.kind == "dir":
        for i, (full, rel, reason) in enumerate(walk(unit.path, tuple(sources.exclude), unit.top_level_only)):
            if i % unit.parts != unit.part:
                continue
            if reason:
                yield unit.repo, rel, None, reason
                continue
            try:
                if full.stat().st_size > max_bytes:
                    yield unit.repo, rel, None, "too_large"
                    continue
                yield unit.repo, rel, full.read_bytes(), None
            except OSError:
                yield unit.repo, rel, None, "unreadable"
        return
    cols = columns(unit.kind, sources)
    for n, rec in _read_records(unit.path, cols):
        problem = _record_problem(rec, cols)
        if problem:
            yield "", f"{unit.path}:{n}", None, problem
            continue
        if unit.kind == "stack_v2":
            data, reason = _read_blob(sources.blob_dir, str(rec[cols.content]), max_bytes)
        else:
            data = rec[cols.content].encode("utf-8", "surrogatepass")
            data, reason = (None, "too_large") if len(data) > max_bytes else (data, None)
        yield str(rec[cols.repo]), rec[cols.path], data, reason


def _read_blob(blob_dir: str, blob_id: str, max_bytes: int) -> tuple[bytes | None, str | None]:
    """A Software Heritage blob: `<blob_dir>/<blob_id>` (or `.gz`), gzip-compressed."""
    from apache_beam.io.filesystems import FileSystems

    for name in (blob_id, blob_id + ".gz"):
        path = FileSystems.join(blob_dir, name)
        if FileSystems.exists(path):
            try:
                with FileSystems.open(path, compression_type="uncompressed") as f:
                    data = gzip.decompress(f.read())
            except (OSError, EOFError):
                return None, "blob_unreadable"
            return (None, "too_large") if len(data) > max_bytes else (data, None)
    return None, "blob_missing"


def _read_records(path: str, cols: Columns) -> Iterator[tuple[int, object]]:
    """(line or row number, the parsed record, or an error reason string) of a record file."""
    from apache_beam.io.filesystems import FileSystems

    if path.endswith(".parquet"):  # its columns were checked by `units`
        n = 0
        for batch in _open_parquet(path).iter_batches(columns=[cols.repo, cols.path, cols.content]):
            for rec in batch.to_pylist():
                n += 1
                yield n, rec
        return
    with FileSystems.open(path) as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield n, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield n, "record_not_utf8"
            except json.JSONDecodeError:
                yield n, "record_not_json"


def _record_problem(rec, cols: Columns) -> str | None:
    if isinstance(rec, str):
        return rec
    if not isinstance(rec, dict):
        return "record_not_an_object"
    if any(rec.get(k) is None for k in (cols.repo, cols.path, cols.content)):
        return "record_missing_fields"
    if not isinstance(rec[cols.content], str) or not isinstance(rec[cols.path], str):
        return "record_wrong_types"
    return None
