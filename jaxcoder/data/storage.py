"""The few file operations `data prepare` needs, on a local path or any filesystem Beam supports
(`gs://` on Dataflow, `s3://`, `hdfs://`): the output directory and the work files may live on
object storage, where there is no rename of directories and no local open.

Local paths take the plain os route (atomic renames); remote ones go through Beam's
`FileSystems`, whose single-object writes are atomic on the object stores it supports."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path


def is_local(path: str) -> bool:
    return "://" not in str(path)


def join(base: str, *parts: str) -> str:
    return os.path.join(base, *parts) if is_local(base) else "/".join([str(base).rstrip("/"), *parts])


def exists(path: str) -> bool:
    if is_local(path):
        return os.path.exists(path)
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def read_bytes(path: str) -> bytes:
    if is_local(path):
        return Path(path).read_bytes()
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.open(path, compression_type="uncompressed") as f:
        return f.read()


def write_bytes(path: str, data: bytes) -> None:
    """Writes `path` whole or not at all (a reader never sees half of it)."""
    if is_local(path):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        Path(tmp).write_bytes(data)
        os.replace(tmp, path)
        return
    from apache_beam.io.filesystems import FileSystems

    with FileSystems.create(path, compression_type="uncompressed") as f:
        f.write(data)


def copy_out(local: str | Path, dest: str) -> None:
    """A local file, or a directory's files (recursively), to `dest`."""
    local = Path(local)
    files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
    for f in files:
        target = dest if f == local else join(dest, *f.relative_to(local).parts)
        if is_local(dest):
            os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
            shutil.copyfile(f, target)
        else:
            write_bytes(target, f.read_bytes())


@contextlib.contextmanager
def local_copy(path: str, is_dir: bool = False) -> Iterator[str]:
    """`path` itself when local; else a temporary local copy of the file (or of every file
    under the directory), removed afterwards."""
    if is_local(path):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="jaxcoder-") as tmp:
        name = str(path).rstrip("/").rsplit("/", 1)[-1]
        local = os.path.join(tmp, name)
        for remote, rel in _files_under(path) if is_dir else [(path, "")]:
            target = os.path.join(local, rel) if rel else local
            os.makedirs(os.path.dirname(target), exist_ok=True)
            Path(target).write_bytes(read_bytes(remote))
        yield local


def _files_under(path: str) -> list[tuple[str, str]]:
    """(full path, path relative to `path`) of every file under a remote directory."""
    from apache_beam.io.filesystems import FileSystems

    prefix = str(path).rstrip("/") + "/"
    found = [m.path for r in FileSystems.match([prefix + "**"]) for m in r.metadata_list]
    return [(f, f[len(prefix):]) for f in sorted(found)]


def entries(path: str) -> list[str]:
    """The names directly under a directory (files and subdirectories); [] when it is absent."""
    if is_local(path):
        return sorted(os.listdir(path)) if os.path.isdir(path) else []
    return sorted({rel.split("/", 1)[0] for _, rel in _files_under(path)})


def remove(path: str) -> None:
    """Removes a file or a whole directory; nothing when absent."""
    if is_local(path):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        elif os.path.lexists(path):
            os.remove(path)
        return
    from apache_beam.io.filesystems import FileSystems

    files = [f for f, _ in _files_under(path)] + ([path] if FileSystems.exists(path) else [])
    if files:
        FileSystems.delete(files)
