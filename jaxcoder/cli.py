"""The `jaxcoder` console script: `jaxcoder <verb> [--config=configs/x.py:arg] [--config.a.b=v] ...`."""

from __future__ import annotations

import importlib
import sys

VERBS = {
    "train": ("jaxcoder.commands.train", "train or resume a model from a run config"),
    "export": ("jaxcoder.commands.export", "write a checkpoint as a Hugging Face model directory"),
    "import": ("jaxcoder.commands.import_", "read a Hugging Face directory into a jaxcoder checkpoint"),
    "generate": ("jaxcoder.commands.generate", "sample a completion from a checkpoint"),
    "eval": ("jaxcoder.commands.eval", "evaluate a checkpoint: perplexity, HumanEval, FIM infilling"),
    "params": ("jaxcoder.commands.params", "parameter count of a config (or --all presets)"),
    "data": ("jaxcoder.commands.data", "`data prepare`: build tokenized training shards from code"),
    "report": ("jaxcoder.commands.report", "Markdown report and loss-curve PNG of a run directory"),
}


def usage() -> str:
    lines = ["usage: jaxcoder <verb> [flags]   (jaxcoder <verb> --help for the verb's flags)", "", "verbs:"]
    lines += [f"  {name:10s} {desc}" for name, (_, desc) in VERBS.items()]
    lines += ["", "common flags: --config=configs/<file>.py[:arg] --config.<field>=<value>"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or argv[1] in ("-h", "--help", "help"):
        print(usage())
        return
    verb = argv[1]
    if verb not in VERBS:
        print(f"jaxcoder: unknown verb {verb!r}\n\n{usage()}", file=sys.stderr)
        raise SystemExit(2)
    rest = argv[2:]
    _fake_devices(rest)
    module = importlib.import_module(VERBS[verb][0])
    if any(a in ("-h", "--help", "--helpshort") for a in rest):
        from absl import flags

        from jaxcoder.commands import common

        print((module.__doc__ or verb).strip() + "\n")
        for mod in (module, common):
            text = flags.FLAGS.module_help(mod)
            if text.strip():
                print(text)
        return
    from absl import app

    app.run(_quiet(module.main), argv=[f"jaxcoder {verb}", *rest])


def _fake_devices(args: list[str]) -> None:
    """--dry_run_devices=N must reach XLA before JAX starts, so it is read here, ahead of absl."""
    import os

    for i, a in enumerate(args):
        value = a.split("=", 1)[1] if a.startswith("--dry_run_devices=") else (
            args[i + 1] if a == "--dry_run_devices" and i + 1 < len(args) else None)
        if value and int(value) > 0:
            flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "host_platform_device_count" not in f]
            os.environ["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={int(value)}"])
            os.environ.setdefault("JAX_PLATFORMS", "cpu")


def _quiet(fn):
    """Orbax logs every file it renames at INFO; keep the console readable unless -v is given."""

    def run(argv):
        from absl import flags, logging

        if not flags.FLAGS["verbosity"].present:
            logging.set_verbosity(logging.ERROR)
        return fn(argv)

    return run


if __name__ == "__main__":
    main()
