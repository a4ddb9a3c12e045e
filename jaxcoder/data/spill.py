"""Work files of `data prepare`: where the pipeline keeps texts while only small references to
them travel through Beam's shuffles.

A Beam runner holds (or spills) every element that crosses a GroupByKey; sending file contents
through the dedup and grouping steps would make the local runner's memory grow with the corpus.
So each worker writes the texts it produces to an ArrayRecord file of its own (named after its
input, so a retried bundle rewrites the same file; moved into place only when complete) and
passes on `(file, index)` references; the steps that need the texts read them back by reference.
Paths may be on any filesystem Beam supports: remote files are staged through local copies.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator

from jaxcoder.data.storage import is_local, local_copy


class Writer:
    """Appends records to an ArrayRecord file that appears at `path` only when closed."""

    def __init__(self, path: str):
        from array_record.python.array_record_module import ArrayRecordWriter

        self.path = path
        if is_local(path):
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        else:
            self._tmp = os.path.join(tempfile.mkdtemp(prefix="jaxcoder-"), "records")
        self._writer = ArrayRecordWriter(self._tmp, "group_size:1")
        self.count = 0

    def add(self, record: bytes) -> int:
        self._writer.write(record)
        self.count += 1
        return self.count - 1

    def close(self) -> None:
        self._writer.close()
        if is_local(self.path):
            os.replace(self._tmp, self.path)
            return
        from apache_beam.io.filesystems import FileSystems

        with open(self._tmp, "rb") as src, FileSystems.create(self.path) as dst:
            shutil.copyfileobj(src, dst)
        shutil.rmtree(os.path.dirname(self._tmp), ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_records(path: str, records: Iterable[bytes]) -> int:
    """Writes records to `path` atomically; returns how many."""
    with Writer(path) as w:
        for record in records:
            w.add(record)
    return w.count


def read_records(path: str, indices: Iterable[int] | None = None) -> Iterator[tuple[int, bytes]]:
    """(index, record) of the given indices (all when None), in index order."""
    from array_record.python.array_record_module import ArrayRecordReader

    with local_copy(path) as local:
        reader = ArrayRecordReader(local)
        try:
            wanted = range(reader.num_records()) if indices is None else sorted(set(indices))
            for i in wanted:
                yield i, reader.read([i])[0]
        finally:
            reader.close()


def pack(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")


def unpack(data: bytes):
    return json.loads(data.decode("utf-8", "surrogatepass"))


def by_file(refs: Iterable[tuple[str, int]]) -> dict[str, list[int]]:
    """References grouped by file, so each file is opened once."""
    out: dict[str, list[int]] = defaultdict(list)
    for path, index in refs:
        out[path].append(index)
    return out
