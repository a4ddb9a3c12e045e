"""jaxcoder report: a Markdown report (`<workdir>/report.md`) and a loss-curve PNG (`loss.png`) of a
run directory: data preparation, training loss, evaluation against the untrained baseline, and
the Hugging Face export check. Reads only what the other verbs wrote; missing parts say so.
"""

from __future__ import annotations

from absl import flags

from jaxcoder.commands import common
from jaxcoder.eval.report import write_report

EXPORT_CHECK = flags.DEFINE_string("export_check", None, "The export's check JSON (default <workdir>/hf.check.json).")
TITLE = flags.DEFINE_string("title", "jaxcoder run", "Report title.")
COMPARE = flags.DEFINE_string("compare", None, "Another evaluation to compare with the latest, task by task: a "
                              "results.json, its directory, or a name under <workdir>/eval (e.g. step_0).")


def main(argv):
    del argv
    run = common.require_config()
    out = write_report(run.workdir, run.data.prepared_dir, EXPORT_CHECK.value, TITLE.value, COMPARE.value)
    print(f"report written to {out}")
