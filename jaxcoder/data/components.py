"""Connected components of the near-duplicate graph, at any scale, in Beam.

Near-dedup merges documents that share an LSH band; the clusters are the connected components of
the graph whose edges join each bucket's members to the bucket's smallest id. One process cannot
hold The Stack's buckets or documents, so the components come from Kiveris et al.'s (2014)
alternating *large-star* and *small-star* operations, each one GroupByKey over the edges: after a
large-star every node's larger neighbours point at its smallest neighbour; after a small-star
every node and its smaller neighbours point at the smallest of them. The graph converges to one
star per component, centred on the component's smallest id (so the keeper is deterministic);
a round that changes no edge proves convergence, which `prepare` checks between rounds.

`converge` runs rounds until then, over edge files; `dedup.union_find_components` is the exact
single-process reference the tests compare against.
"""

from __future__ import annotations

import json

import apache_beam as beam

ROUNDS_PER_PIPELINE = 3


class _StarStep(beam.DoFn):
    """A star operation that counts the edges it moves in the `jaxcoder` counter `counter`."""

    def __init__(self, counter: str):
        self.counter = counter

    def setup(self):
        self.changed = beam.metrics.Metrics.counter("jaxcoder", self.counter)


class _LargeStar(_StarStep):
    """u with neighbours N: every neighbour larger than u joins min(N + u). An edge moves when u
    itself is not that minimum."""

    def process(self, item):
        u, neighbours = item
        nodes = set(neighbours)
        m = min(nodes | {u})
        larger = [v for v in nodes if v > u]
        if m != u and larger:
            self.changed.inc(len(larger))
        for v in larger:
            yield (v, m)


class _SmallStar(_StarStep):
    """u with neighbours N: u and its neighbours not larger than u join min(those + u). Edges to
    larger neighbours are emitted by those neighbours' own small-star. Edges move when u has more
    than one smaller neighbour."""

    def process(self, item):
        u, neighbours = item
        smaller = {v for v in neighbours if v < u}
        m = min(smaller | {u})
        if len(smaller) > 1:
            self.changed.inc(len(smaller) - 1)
        for v in smaller | {u}:
            if v != m:
                yield (v, m)


def _both_ways(edge):
    a, b = edge
    yield (a, b)
    yield (b, a)


class StarRound(beam.PTransform):
    """One large-star then one small-star over (larger, smaller) edges; the new edge set, each
    edge once as (larger, smaller). Counts the edges it moved in the counter `counter` (zero: the
    input was already one star per component)."""

    def __init__(self, counter: str, label: str | None = None):
        super().__init__(label)
        self.counter = counter

    def expand(self, edges):
        large = (edges | "both ways 1" >> beam.FlatMap(_both_ways) | "neighbours 1" >> beam.GroupByKey()
                 | "large-star" >> beam.ParDo(_LargeStar(self.counter)) | "distinct 1" >> beam.Distinct())
        return (large | "both ways 2" >> beam.FlatMap(_both_ways) | "neighbours 2" >> beam.GroupByKey()
                | "small-star" >> beam.ParDo(_SmallStar(self.counter)) | "distinct 2" >> beam.Distinct())


def _read_edges(p, pattern: str, label: str):
    return (p | f"read {label}" >> beam.io.ReadFromText(pattern) | f"parse {label}" >> beam.Map(json.loads)
            | f"pairs {label}" >> beam.Map(tuple))


def write_edges(edges, prefix: str, label: str = "edges") -> None:
    """Writes (larger, smaller) edges as JSON lines `<prefix>-*.json`."""
    _ = (edges | f"{label} to text" >> beam.Map(lambda e: json.dumps(list(e)))
         | f"write {label}" >> beam.io.WriteToText(prefix, file_name_suffix=".json"))


def star_rounds(edges, first: int = 0, n: int = ROUNDS_PER_PIPELINE):
    """`n` star rounds, counted in `components/round_<i>` from `first`."""
    for r in range(first, first + n):
        edges = edges | f"round {r}" >> StarRound(f"components/round_{r}")
    return edges


def converge(runner, work: str, edges_prefix: str, done: int = 0) -> str:
    """Star rounds over the edges at `<edges_prefix>-*.json` (after `done` rounds already run),
    ROUNDS_PER_PIPELINE per pipeline, until a round moves no edge; returns the file pattern of the
    converged edges: one (node, its component's smallest node) per node that is not the smallest."""
    prefix = edges_prefix
    while not (done and runner.counter(f"components/round_{done - 1}") == 0):
        out = f"{work}/components-{done + ROUNDS_PER_PIPELINE}"

        def build(p, src=f"{prefix}-*.json", first=done, out=out):
            write_edges(star_rounds(_read_edges(p, src, "edges"), first), out)

        runner.pipeline(f"near-duplicate components, rounds {done + 1}-{done + ROUNDS_PER_PIPELINE}", build)
        done += ROUNDS_PER_PIPELINE
        prefix = out
    return f"{prefix}-*.json"
