"""The `jaxcoder` console script: `jaxcoder <verb> [--config=configs/x.py:arg] [--config.a.b=v] ...`.

A bad config, flag or input is reported in one line that names it (`jaxcoder train: error: ...`)
and exits with status 2; `--traceback` (or JAXCODER_TRACEBACK=1) shows the Python traceback too.
"""

from __future__ import annotations

import difflib
import importlib
import os
import re
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
    traceback = "--traceback" in rest or os.environ.get("JAXCODER_TRACEBACK", "") not in ("", "0")
    rest = [a for a in rest if a != "--traceback"]
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

    try:
        app.run(_quiet(module.main), argv=[f"jaxcoder {verb}", *rest], flags_parser=_parse_flags(rest))
    except Exception as e:
        message = None if traceback else user_error(e)
        if message is None:
            raise
        print(f"jaxcoder {verb}: error: {message}", file=sys.stderr)
        raise SystemExit(2) from None


class _OverrideError(ValueError):
    """A --config.<field>=<value> override that the config cannot take."""


def _parse_flags(args: list[str]):
    """absl's flag parsing, with a failed --config override turned into a message naming it."""
    def parse(argv):
        from absl import flags

        for a in args:
            if a.startswith("--config="):
                path = a.split("=", 1)[1].split(":", 1)[0]
                if not os.path.isfile(path):
                    raise _OverrideError(f"--config: {path} is not a file (configs/<file>.py[:arg])")
        try:
            return flags.FLAGS(argv)
        except flags.Error as e:
            # A config file that raised: absl embeds its traceback; its last line says what happened.
            lines = [ln for ln in str(e).splitlines() if ln.strip()]
            head = lines[0].split(": Error whilst parsing")[0]
            raise _OverrideError(head if len(lines) == 1 else f"{head}: {lines[-1]}") from e
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise _OverrideError(_override_problem(args, e)) from e

    return parse


def _override_problem(args: list[str], error: Exception) -> str:
    """Which --config.<path> override failed, with the closest existing field."""
    quoted = set(re.findall(r"[\w-]+", " ".join(str(a) for a in getattr(error, "args", ()))))
    overrides = [a[len("--config."):].split("=", 1)[0] for a in args if a.startswith("--config.")]
    for path in overrides:
        parts = path.split(".")
        for i, part in enumerate(parts):
            if part in quoted and not _exists(parts[:i + 1]):
                return (f"unknown config field {'.'.join(parts[:i + 1])} (in --config.{path})"
                        + _suggestion(".".join(parts[:i]), part))
    return f"cannot apply the --config overrides ({type(error).__name__}: {error})"


def _exists(parts: list[str]) -> bool:
    from jaxcoder.config import base_config

    node = base_config()
    for part in parts:
        if not hasattr(node, "keys") or part not in node:
            return False
        node = node[part]
    return True


def _suggestion(parent: str, name: str) -> str:
    from jaxcoder.config import base_config

    node = base_config()
    for part in [p for p in parent.split(".") if p]:
        node = node.get(part) if hasattr(node, "get") else None
    if not hasattr(node, "keys"):
        return ""
    close = difflib.get_close_matches(name, list(node.keys()), n=1)
    return f"; did you mean {'.'.join([*filter(None, [parent]), close[0]])}?" if close else ""


def user_error(e: Exception) -> str | None:
    """The one-line message for an error in what the user gave (config, flags, files); None for
    anything else (a bug keeps its traceback)."""
    if isinstance(e, KeyError) and e.args and isinstance(e.args[0], str):
        return e.args[0]
    if isinstance(e, ValueError | FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
        return str(e)
    return None


def _fake_devices(args: list[str]) -> None:
    """--dry_run_devices=N must reach XLA before JAX starts, so it is read here, ahead of absl;
    --dry_run_topology compiles for TPU devices it describes and needs no local accelerator."""
    import os

    if any(a.startswith("--dry_run_topology") for a in args):
        os.environ.setdefault("JAX_PLATFORMS", "cpu")
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
