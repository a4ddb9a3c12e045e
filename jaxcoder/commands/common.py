"""Flags shared by every verb (absl flags are process-global, so they are defined once here)."""

from __future__ import annotations

import re

from absl import flags
from ml_collections import config_flags

CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Run config: configs/<file>.py[:arg]; override fields with --config.<field>=<value>.",
    lock_config=True)
CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A jaxcoder checkpoint directory (…/checkpoints).")
STEP = flags.DEFINE_integer("step", None, "Checkpoint step to read (default: the latest).")
OUT = flags.DEFINE_string("out", None, "Output directory.")


def require_config():
    """The run config resolved into typed sections, checked field by field before anything runs."""
    cfg = CONFIG.value
    if cfg is None:
        raise SystemExit("error: --config=configs/<file>.py[:arg] is required for this verb")
    from jaxcoder.config import resolve

    return resolve(cfg)


def require(flag, what: str):
    if flag.value is None:
        raise SystemExit(f"error: --{flag.name} is required ({what})")
    return flag.value


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


def unescape(text: str) -> str:
    """Decodes the backslash escapes \\n, \\t, \\r and \\\\ of a prompt given on the command line
    (Make and most shells pass them through literally); every other character, non-ASCII
    included, is kept as is (`codecs.decode(..., "unicode_escape")` would mangle UTF-8)."""
    return re.sub(r"\\([ntr\\])", lambda m: _ESCAPES[m.group(1)], text)
