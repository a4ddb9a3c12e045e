"""Repository-level samples: files ordered so definitions come before their users.

DeepSeek-Coder's Algorithm 1: parse each file's imports/includes with regular expressions,
resolve them to files of the same repository, and topologically sort each weakly connected
component, always emitting a not-yet-emitted file of *minimal* in-degree (which breaks cycles).
Ties are broken by path, so the output is deterministic. Each component becomes one sample, each
file prefixed by a comment with its path; or, StarCoder2-style, `<repo_name>name<file_sep>path\\n
code<file_sep>...`.

The regexes are ours (DeepSeek did not publish theirs); each resolves module names against the
repository's file list by suffix match.
"""

from __future__ import annotations

import dataclasses
import heapq
import posixpath
import re
from collections import defaultdict

from jaxcoder.data.dedup import union_find_components
from jaxcoder.data.languages import comment_prefix

_PY = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+import\s+([\w*, ()]+)|import\s+([\w.]+(?:\s*,\s*[\w.]+)*))", re.M)
_JAVA = re.compile(r"^\s*import\s+(?:static\s+)?([\w.]+)(?:\.\*)?\s*;", re.M)
_CSHARP_USING = re.compile(r"^\s*using\s+(?:static\s+)?(?:\w+\s*=\s*)?([\w.]+)\s*;", re.M)
_CSHARP_NS = re.compile(r"^\s*namespace\s+([\w.]+)", re.M)
_C_INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^">]+)[">]', re.M)


@dataclasses.dataclass
class RepoFile:
    path: str  # relative to the repository root, '/'-separated
    language: str
    text: str


def _python_targets(f: RepoFile, index: dict[str, list[str]]) -> set[str]:
    out: set[str] = set()
    pkg = posixpath.dirname(f.path)
    for m in _PY.finditer(f.text):
        modules = []
        if m.group(1) is not None:
            base = m.group(1)
            if base.startswith("."):
                up = len(base) - len(base.lstrip("."))
                parent = pkg
                for _ in range(up - 1):
                    parent = posixpath.dirname(parent)
                rest = base.lstrip(".")
                prefix = "/".join(p for p in (parent, rest.replace(".", "/")) if p)
                names = [n.strip(" ()") for n in m.group(2).split(",")]
                modules += [("path", prefix)] + [("path", f"{prefix}/{n}" if prefix else n) for n in names if n]
            else:
                names = [n.strip(" ()") for n in m.group(2).split(",")]
                modules += [("mod", base)] + [("mod", f"{base}.{n}") for n in names if n and n != "*"]
        else:
            modules += [("mod", name.strip()) for name in m.group(3).split(",")]
        for kind, name in modules:
            stem = name if kind == "path" else name.replace(".", "/")
            for candidate in (f"{stem}.py", f"{stem}/__init__.py"):
                out.update(_suffix_lookup(candidate, index))
    return out


def _suffix_lookup(candidate: str, index: dict[str, list[str]]) -> list[str]:
    """Repository files whose path ends with `candidate` at a '/' boundary."""
    return [p for p in index.get(posixpath.basename(candidate), ())
            if p == candidate or p.endswith("/" + candidate)]


def _java_targets(f: RepoFile, index):
    return {p for m in _JAVA.finditer(f.text) for p in _suffix_lookup(m.group(1).replace(".", "/") + ".java", index)}


def _c_targets(f: RepoFile, index):
    out = set()
    here = posixpath.dirname(f.path)
    for m in _C_INCLUDE.finditer(f.text):
        inc = posixpath.normpath(m.group(1))
        relative = posixpath.normpath(posixpath.join(here, inc))
        hits = [p for p in index.get(posixpath.basename(inc), ()) if p == relative]
        out.update(hits or _suffix_lookup(inc, index))
    return out


def dependencies(files: list[RepoFile]) -> dict[str, set[str]]:
    """path -> the repository files it imports/includes (never itself)."""
    index: dict[str, list[str]] = defaultdict(list)
    for f in files:
        index[posixpath.basename(f.path)].append(f.path)
    namespaces: dict[str, set[str]] = defaultdict(set)
    for f in files:
        if f.language == "c#":
            for m in _CSHARP_NS.finditer(f.text):
                namespaces[m.group(1)].add(f.path)
    deps: dict[str, set[str]] = {}
    for f in files:
        if f.language == "python":
            d = _python_targets(f, index)
        elif f.language == "java":
            d = _java_targets(f, index)
        elif f.language in ("c", "c++"):
            d = _c_targets(f, index)
        elif f.language == "c#":
            d = {p for m in _CSHARP_USING.finditer(f.text) for p in namespaces.get(m.group(1), ())}
        else:
            d = set()
        d.discard(f.path)
        deps[f.path] = d
    return deps


def topological_order(paths: list[str], deps: dict[str, set[str]]) -> list[list[str]]:
    """Algorithm 1: per weakly connected component, repeatedly emit the file of minimal remaining
    in-degree (ties by path). Components are returned in order of their first path."""
    users: dict[str, list[str]] = {p: [] for p in paths}
    in_degree = {p: 0 for p in paths}
    for a in paths:
        for b in deps.get(a, ()):
            if b in users:
                users[b].append(a)  # edge b -> a: a depends on b
                in_degree[a] += 1
    # Weakly connected components by union-find over the edges (one repository: bounded).
    roots = union_find_components((a, b) for b, dependents in users.items() for a in dependents)
    components: dict[str, list[str]] = defaultdict(list)
    for p in sorted(paths):
        components[roots.get(p, p)].append(p)

    results = []
    for members in sorted(components.values(), key=lambda m: m[0]):
        heap = [(in_degree[p], p) for p in members]
        heapq.heapify(heap)
        done: set[str] = set()
        order = []
        while heap:
            degree, p = heapq.heappop(heap)
            if p in done or degree != in_degree[p]:
                continue  # a stale entry: the degree changed since it was pushed
            done.add(p)
            order.append(p)
            for user in users[p]:
                if user not in done:
                    in_degree[user] -= 1
                    heapq.heappush(heap, (in_degree[user], user))
        results.append(order)
    return results


def repo_samples(repo: str, files: list[RepoFile], *, style: str = "path_comment") -> list[tuple[str, str]]:
    """(language, text) samples: one per dependency component, files in dependency order.

    style: `path_comment` (DeepSeek-Coder: `# path` line before each file) or `starcoder2`
    (`<repo_name>repo<file_sep>path\\ncode...`). The sample's language is its first file's.
    """
    if style not in ("path_comment", "starcoder2"):
        raise ValueError(f"data.repo_format must be path_comment or starcoder2, got {style!r}")
    by_path = {f.path: f for f in files}
    order = topological_order(sorted(by_path), dependencies(files))
    samples = []
    for component in order:
        parts = []
        for path in component:
            f = by_path[path]
            if style == "starcoder2":
                parts.append(f"<file_sep>{path}\n{f.text}")
            else:
                parts.append(f"{comment_prefix(f.language)} {path}\n{f.text}")
        text = "".join(parts) if style == "starcoder2" else "\n".join(parts)
        if style == "starcoder2":
            text = f"<repo_name>{repo}{text}"
        samples.append((by_path[component[0]].language, text))
    return samples
