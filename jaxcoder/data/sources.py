"""Where raw files come from: directories of repositories, and JSONL/Parquet record files.

A `Repo` is a name plus a way to list its files as (relative path, bytes-or-error). Directory
walks never follow symbolic links (so link loops cannot trap them) and report unreadable files
instead of raising; record files are grouped by their `repo` field.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Repo:
    name: str
    root: str | None = None  # a directory repository
    records: tuple[tuple[str, str], ...] = ()  # (path, content) for record-file repositories
    top_level_only: bool = False  # only the files directly under root (a root's loose files)
    exclude: tuple[str, ...] = ()  # fnmatch patterns for file and directory names to skip

    def files(self, max_bytes: int) -> Iterator[tuple[str, bytes | None, str | None]]:
        """(relative path, content, drop reason). Content is None when the file is dropped here."""
        if self.root is None:
            for path, content in self.records:
                data = content.encode("utf-8", "surrogatepass")
                yield (path, None, "too_large") if len(data) > max_bytes else (path, data, None)
            return
        for full, rel, reason in self.entries():
            if reason:
                yield rel, None, reason
                continue
            try:
                if full.stat().st_size > max_bytes:
                    yield rel, None, "too_large"
                    continue
                yield rel, full.read_bytes(), None
            except OSError:
                yield rel, None, "unreadable"

    def entries(self) -> Iterator[tuple[Path, str, str | None]]:
        """(full path, relative path, drop reason or None) of a directory repository, in a fixed
        order: the one walk (exclusions applied, links reported, never followed) that reading the
        files and fingerprinting the inputs both use. FIFOs, sockets and devices are reported as
        not regular files: reading one could block forever."""
        root = Path(self.root)
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False, onerror=None):
            for d in sorted(dirnames):  # os.walk lists links to directories here and never follows them
                if (Path(dirpath) / d).is_symlink() and not self.top_level_only:
                    yield Path(dirpath) / d, (Path(dirpath) / d).relative_to(root).as_posix(), "symlink"
            dirnames[:] = [] if self.top_level_only else sorted(d for d in dirnames if not _excluded(d, self.exclude))
            for name in sorted(filenames):
                if _excluded(name, self.exclude):
                    continue
                full = Path(dirpath) / name
                reason = "symlink" if full.is_symlink() else None if full.is_file() else "not_a_regular_file"
                yield full, full.relative_to(root).as_posix(), reason


DEFAULT_EXCLUDE = ("__pycache__", ".git", ".hg", ".svn")


def _excluded(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


RECORD_FIELDS = ("repo", "path", "content")


def _read_records(path: Path) -> Iterator[tuple[int, object]]:
    """(line or row number, the parsed record, or an error reason string) of a record file."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
            names = set(table.schema_arrow.names)
        except Exception as e:  # noqa: BLE001 - any pyarrow failure: not a readable Parquet file
            raise ValueError(f"data.sources.records: {path} is not a readable Parquet file ({e})") from None
        missing = [c for c in RECORD_FIELDS if c not in names]
        if missing:
            raise ValueError(f"data.sources.records: {path} has no column(s) {', '.join(missing)} "
                             f"(records need {', '.join(RECORD_FIELDS)})")
        n = 0
        for batch in table.iter_batches(columns=list(RECORD_FIELDS)):
            for rec in batch.to_pylist():
                n += 1
                yield n, rec
        return
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            try:
                yield n, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield n, "record_not_utf8"
            except json.JSONDecodeError:
                yield n, "record_not_json"


def _record_problem(rec) -> str | None:
    if isinstance(rec, str):
        return rec
    if not isinstance(rec, dict):
        return "record_not_an_object"
    if any(rec.get(k) is None for k in RECORD_FIELDS):
        return "record_missing_fields"
    if not isinstance(rec["content"], str) or not isinstance(rec["path"], str):
        return "record_wrong_types"
    return None


def discover(repo_dirs=(), repo_roots=(), record_files=(), exclude=DEFAULT_EXCLUDE,
             skipped: list[dict] | None = None) -> list[Repo]:
    """All repositories named by the config, sorted by name (duplicate names are refused). A
    malformed record is skipped and, when `skipped` is given, reported there as {file, line, reason}."""
    exclude = tuple(exclude)
    repos: list[Repo] = []
    for d in repo_dirs:
        p = Path(d)
        if not p.is_dir():
            raise FileNotFoundError(f"data.sources.repo_dirs: {d} is not a directory")
        repos.append(Repo(name=p.name, root=str(p), exclude=exclude))
    for r in repo_roots:
        p = Path(r)
        if not p.is_dir():
            raise FileNotFoundError(f"data.sources.repo_roots: {r} is not a directory")
        for child in sorted(p.iterdir()):
            if child.is_dir() and not child.is_symlink() and not _excluded(child.name, exclude):
                repos.append(Repo(name=f"{p.name}/{child.name}", root=str(child), exclude=exclude))
        if any(f.is_file() for f in p.iterdir()):  # files directly under the root: a repository too
            repos.append(Repo(name=f"{p.name}/.", root=str(p), top_level_only=True, exclude=exclude))
    for f in record_files:
        p = Path(f)
        if not p.exists():
            raise FileNotFoundError(f"data.sources.records: {f} does not exist")
        grouped: dict[str, list[tuple[str, str]]] = defaultdict(list)
        for n, rec in _read_records(p):
            problem = _record_problem(rec)
            if problem:
                if skipped is not None:
                    skipped.append({"file": str(p), "line": n, "reason": problem})
                continue
            grouped[str(rec["repo"])].append((rec["path"], rec["content"]))
        repos += [Repo(name=name, records=tuple(sorted(files))) for name, files in sorted(grouped.items())]
    names = [r.name for r in repos]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"repository names must be unique across sources; repeated: {', '.join(dupes[:5])}")
    return sorted(repos, key=lambda r: r.name)
