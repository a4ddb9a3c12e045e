"""Compiling and running generated programs of many languages in the sandbox.

Each language is how MultiPL-E (Cassano et al.) runs its programs: a file with the completion and
the problem's tests, compiled where the language is compiled, and run; the program passes when
every command exits 0 (the tests are assertions: a failed one exits non-zero). The names are
MultiPL-E's (`cpp`, `java`, `js`, `rs`, `sh`, `pl`, `php`, `rb`, `py`). Compilers and runtimes run
inside the same sandbox as the program (`sandbox.py`), under the sample's limits, with their
toolchain directories visible read-only. Python keeps the checked runner (`sandbox.python_job`): a pass
there also means the program reached its last statement.

`available()` says which languages this host can run and why the others cannot; evaluations skip
those and say so, as they do MultiPL-E's languages without a runner here yet (Go, TypeScript, C#,
Scala, Swift, D, Lua, R, Julia, Racket).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import subprocess
from collections.abc import Sequence

from jaxcoder.eval.sandbox import SYSTEM_DIRS, Job, Result, SandboxConfig, python_job, run_many


@dataclasses.dataclass(frozen=True)
class Language:
    """A language's file name and commands; `{tool}` in a command is that tool's resolved path."""

    name: str
    filename: str
    tools: tuple[str, ...]
    commands: tuple[tuple[str, ...], ...]
    # Compilers need more than the 3 s HumanEval gives a Python program (MultiPL-E allows 15 s).
    timeout_s: float = 15.0
    # Address space: the JVM and V8 reserve far more virtual memory than they use.
    memory_bytes: int = 1 << 30


# The JVM sizes its heap from the host's memory and starts a thread per core for garbage
# collection and compilation: fixed, small settings keep it inside the sample's limits.
_JVM = ("-Xmx256m", "-Xss16m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:CICompilerCount=2")

LANGUAGES = {lang.name: lang for lang in (
    Language("cpp", "program.cpp", ("g++",),
             (("{g++}", "-std=c++17", "-O0", "-o", "program", "program.cpp"), ("./program",))),
    Language("java", "Problem.java", ("javac", "java"),
             (("{javac}", *(f"-J{o}" for o in _JVM), "-encoding", "UTF-8", "Problem.java"),
              ("{java}", *_JVM, "-ea", "-cp", ".", "Problem")), memory_bytes=4 << 30),
    Language("js", "program.js", ("node",), (("{node}", "program.js"),), timeout_s=10.0, memory_bytes=16 << 30),
    Language("rs", "program.rs", ("rustc",),
             (("{rustc}", "-C", "opt-level=0", "-C", "debuginfo=0", "-o", "program", "program.rs"),
              ("./program",))),
    Language("sh", "program.sh", ("bash",), (("{bash}", "program.sh"),), timeout_s=10.0),
    Language("pl", "program.pl", ("perl",), (("{perl}", "program.pl"),), timeout_s=10.0),
    Language("php", "program.php", ("php",), (("{php}", "program.php"),), timeout_s=10.0),
    Language("rb", "program.rb", ("ruby",), (("{ruby}", "program.rb"),), timeout_s=10.0),
    Language("py", "program.py", ("python3",), (), timeout_s=3.0),
)}


_DEFAULT = SandboxConfig()


@functools.cache
def resolve_tool(name: str) -> str | None:
    """The real executable behind `name` on PATH (a rustup proxy resolved to its toolchain's)."""
    found = shutil.which(name)
    if not found:
        return None
    real = os.path.realpath(found)
    if os.path.basename(real) == "rustup":
        out = subprocess.run([real, "which", name], capture_output=True, text=True, timeout=60)
        return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else None
    return real


def available() -> dict[str, str | None]:
    """Each language -> None when this host can run it, else why not."""
    out = {}
    for name, lang in LANGUAGES.items():
        missing = [t for t in lang.tools if resolve_tool(t) is None]
        out[name] = f"{', '.join(missing)} not found on PATH" if missing else None
    return out


def _toolchain_dirs(lang: Language) -> tuple[str, ...]:
    """Install roots of the language's tools outside the system directories (a rustup toolchain,
    an SDK under /root or /home), which the sandbox must show read-only."""
    roots = []
    for tool in lang.tools:
        path = resolve_tool(tool)
        if path and not any(path.startswith(d.rstrip("/") + "/") for d in SYSTEM_DIRS):
            roots.append(os.path.dirname(os.path.dirname(path)))
    return tuple(roots)


def job(language: str, program: str, cfg: SandboxConfig = _DEFAULT) -> Job:
    """The sandbox job that compiles (where needed) and runs one complete program."""
    lang = LANGUAGES[language]
    if language == "py":
        return python_job(program, cfg)
    tools = {t: resolve_tool(t) for t in lang.tools}
    commands = tuple(tuple(tools.get(a[1:-1], a) for a in command) for command in lang.commands)
    return Job({lang.filename: program}, commands)


def sandbox_config(language: str, cfg: SandboxConfig = _DEFAULT) -> SandboxConfig:
    """`cfg` with the language's time and address-space allowances and its toolchain visible."""
    lang = LANGUAGES[language]
    return dataclasses.replace(cfg, timeout_s=max(cfg.timeout_s, lang.timeout_s),
                               memory_bytes=max(cfg.memory_bytes, lang.memory_bytes),
                               ro_binds=(*cfg.ro_binds, *_toolchain_dirs(lang)))


def run_programs(language: str, programs: Sequence[str], cfg: SandboxConfig = _DEFAULT,
                 level: str | None = None) -> list[Result]:
    """Compiles and runs complete programs of one language in the sandbox (at `level`, default
    the strongest isolation here), results in order."""
    if language not in LANGUAGES:
        raise ValueError(f"unknown language {language!r}; known: {', '.join(LANGUAGES)}")
    why = available()[language]
    if why:
        raise ValueError(f"cannot run {language} programs here: {why}")
    lang_cfg = sandbox_config(language, cfg)
    return run_many([job(language, p, lang_cfg) for p in programs], lang_cfg, level)
