"""jaxcoder params: parameter count and FLOPs/token of a config, or of every preset (--all)."""

from __future__ import annotations

from absl import flags

from jaxcoder.commands import common
from jaxcoder.model.config import human_count
from jaxcoder.model.presets import PRESETS, PUBLISHED_PARAMS, preset

ALL = flags.DEFINE_bool("all", False, "Print a table of every preset instead of one config.")


def main(argv):
    del argv
    if ALL.value:
        print(f"{'preset':24s} {'params':>10s} {'published':>10s} {'diff':>7s}")
        for name in PRESETS:
            n = preset(name).param_count()
            pub = PUBLISHED_PARAMS.get(name)
            extra = f"{human_count(pub):>10s} {100 * (n - pub) / pub:+6.2f}%" if pub else f"{'-':>10s}"
            print(f"{name:24s} {human_count(n):>10s} {extra}")
        return
    run = common.require_config()
    m = run.model
    print(f"preset: {run.preset or '-'}")
    print(f"parameters: {m.param_count():,} ({human_count(m.param_count())})")
    seq = run.train.seq_len
    print(f"training FLOPs/token at seq_len {seq}: {m.flops_per_token(seq):.4g}")
