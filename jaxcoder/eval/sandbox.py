"""Running untrusted generated programs.

Each program runs in its own process group and session, in a fresh temporary directory, with
limits on CPU time, address space, file size and process count, a wall-clock timeout after which
the whole group is killed, and a minimal environment (nothing of the evaluator's). Where the OS
allows (Linux, started as root): a private network namespace (`unshare -n`: no network at all) and
an unprivileged user (`setpriv` to nobody), so the program can neither reach the network, nor
signal or read the evaluator's processes, nor write outside its directory except world-writable
places such as /tmp. Without root, only the limits, the process group and the clean environment
apply; `isolation()` says which level is in force and `jaxcoder eval` prints it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

NOBODY = 65534


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = 3.0
    cpu_s: int = 5
    memory_bytes: int = 1 << 30
    file_bytes: int = 16 << 20
    max_processes: int = 64
    python: str | None = None  # interpreter for programs; default: a system one the sandbox user can run
    workers: int = 2


@dataclasses.dataclass(frozen=True)
class Result:
    passed: bool
    status: str  # passed | failed | timeout
    seconds: float
    output: str


def _interpreter(cfg: SandboxConfig) -> str:
    if cfg.python:
        return cfg.python
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("python3") or "python3"


def isolation() -> str:
    """'full' (network namespace + unprivileged user), or 'limits-only'."""
    if os.geteuid() == 0 and shutil.which("unshare") and shutil.which("setpriv"):
        probe = subprocess.run(["unshare", "-n", "--", "true"], capture_output=True)
        if probe.returncode == 0:
            return "full"
    return "limits-only"


def _limits(cfg: SandboxConfig):
    """preexec_fn fallback when `prlimit` is missing (not fork-safe in threaded evaluators)."""
    def apply():
        resource.setrlimit(resource.RLIMIT_CPU, (cfg.cpu_s, cfg.cpu_s))
        resource.setrlimit(resource.RLIMIT_AS, (cfg.memory_bytes, cfg.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (cfg.file_bytes, cfg.file_bytes))
        resource.setrlimit(resource.RLIMIT_NPROC, (cfg.max_processes, cfg.max_processes))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _prlimit(cfg: SandboxConfig) -> list[str]:
    # Applied by a separate program after the user switch, so the process-count limit binds (root
    # is exempt from it) and the evaluator never forks with a preexec hook (unsafe with threads).
    return ["prlimit", f"--cpu={cfg.cpu_s}", f"--as={cfg.memory_bytes}", f"--fsize={cfg.file_bytes}",
            f"--nproc={cfg.max_processes}", "--core=0", "--"]


def run_program(source: str, cfg: SandboxConfig = SandboxConfig(), level: str | None = None) -> Result:
    """Runs one Python program; passed means it exited 0 within the limits."""
    level = level or isolation()
    workdir = tempfile.mkdtemp(prefix="jaxcoder-sbx-")
    try:
        path = os.path.join(workdir, "program.py")
        with open(path, "w") as f:
            f.write(source)
        cmd = [_interpreter(cfg), "-I", "-B", path]
        use_prlimit = shutil.which("prlimit") is not None
        if use_prlimit:
            cmd = [*_prlimit(cfg), *cmd]
        if level == "full":
            os.chown(workdir, NOBODY, NOBODY)
            os.chown(path, NOBODY, NOBODY)
            cmd = ["unshare", "-n", "--", "setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
                   "--", *cmd]
        env = {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
               "PYTHONDONTWRITEBYTECODE": "1"}
        start = time.perf_counter()
        # A new session: its own process group, killed as a whole at the end.
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=None if use_prlimit else _limits(cfg))
        try:
            out, _ = proc.communicate(timeout=cfg.timeout_s)
            status = "passed" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            status = "timeout"
            out = b""
        finally:
            _kill_group(proc)
        return Result(status == "passed", status, time.perf_counter() - start,
                      (out or b"")[-2000:].decode("utf-8", "replace"))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be ignored
        proc.wait(timeout=5)
    if proc.stdout:
        proc.stdout.close()


def run_many(sources: list[str], cfg: SandboxConfig = SandboxConfig()) -> list[Result]:
    level = isolation()
    with ThreadPoolExecutor(cfg.workers) as pool:
        return list(pool.map(lambda s: run_program(s, cfg, level), sources))
