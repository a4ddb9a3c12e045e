"""Running untrusted generated programs.

Each sample is a `Job`: files for its directory and commands run there one after another (compile,
then run). Where Linux allows it, a sample gets its own PID, mount, network, IPC and UTS
namespaces and a private root filesystem (`sandbox_init.py`): the system directories read-only, its
directory and /tmp as small private tmpfs mounts, no network, and, when the evaluator is root, a
uid of its own, so it can neither write outside its directory, nor see or signal the evaluator or
the samples running beside it, and every process it starts dies with it. Without root, the same
namespaces come from a user namespace (every capability dropped). Where neither works, only the
resource limits, the process group and the clean environment apply: `isolation()` says which level
is in force and `jaxcoder eval` prints it.

A checked Python job passes only when its checks ran to the end: the program runs under a small
wrapper that writes a per-sample random token to a private pipe after the program's last statement
returned. Ending the process early (`sys.exit(0)`, `exit()`, `quit()`, `os._exit(0)`, a signal)
therefore fails, as in the official HumanEval harness. (Code that walks the interpreter's own
frames could find the token, as it could fake any in-process harness; generated code does not.)

Captured output is bounded (the rest is read and dropped), and any error of one sample, the
sandbox's own included, is that sample's failure, never the evaluator's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

INIT = str(Path(__file__).with_name("sandbox_init.py"))
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
LEVELS = {
    "full": "full (root: private root filesystem; PID, mount, network, IPC namespaces; a uid per sample)",
    "userns": "userns (private root filesystem; PID, mount, network, IPC namespaces in a user namespace; "
              "no capabilities)",
    "limits-only": "limits-only (resource limits and a process group only: a hostile program can write "
                   "where the evaluator's user can, and leave processes behind)",
}

# Runs the program as __main__ and writes the token only after its last statement returned.
CHECKED_PYTHON = r"""
import os, sys, types
def _run():
    token = sys.stdin.buffer.readline().strip()
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    path = sys.argv[1]
    with open(path, encoding="utf-8") as f:
        code = compile(f.read(), path, "exec")
    main = types.ModuleType("__main__")
    main.__file__ = path
    sys.modules["__main__"] = main
    sys.argv = [path]
    exec(code, main.__dict__)
    os.write(3, token + b"\n")
_run()
"""


@dataclasses.dataclass(frozen=True)
class SandboxConfig:
    timeout_s: float = 3.0  # wall clock per sample from its first command, all its commands together
    setup_s: float = 30.0  # most wall clock to build a sample's sandbox (a loaded host is slow at it)
    cpu_s: int = 5  # per process
    memory_bytes: int = 1 << 30  # address space per process
    file_bytes: int = 16 << 20  # largest file a sample may write
    max_processes: int = 64
    disk_bytes: int = 64 << 20  # the sample's directory (a tmpfs)
    tmp_bytes: int = 32 << 20  # each of /tmp, /var/tmp, /dev/shm
    max_output_bytes: int = 1 << 16  # stdout + stderr kept per sample; more is read and dropped
    python: str | None = None  # interpreter for programs; default: the system's python3
    ro_binds: tuple[str, ...] = ()  # more host paths visible read-only inside (toolchains)
    uid_base: int = 200_000  # as root, concurrent samples run as uid_base + slot
    workers: int = 2


@dataclasses.dataclass(frozen=True)
class Job:
    """Files written into the sample's directory and commands run there in order; the sample
    passes when every command exits 0, and, for a checked job, the last one reported its token."""

    files: Mapping[str, str]
    commands: tuple[tuple[str, ...], ...]
    checked: bool = False


@dataclasses.dataclass(frozen=True)
class Result:
    passed: bool
    status: str  # passed | failed | timeout | error
    seconds: float
    output: str  # the last 2,000 characters of stdout + stderr


def interpreter(cfg: SandboxConfig) -> str:
    if cfg.python:
        return cfg.python
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("python3") or "python3"


def python_job(source: str, cfg: SandboxConfig = SandboxConfig()) -> Job:
    """A Python program whose pass means: it ran to its last statement."""
    return Job({"program.py": source}, ((interpreter(cfg), "-I", "-B", "-c", CHECKED_PYTHON, "program.py"),),
               checked=True)


def _binds(cfg: SandboxConfig) -> list[str]:
    paths = [p for p in SYSTEM_DIRS if os.path.lexists(p)] + list(cfg.ro_binds)
    exe = os.path.realpath(interpreter(cfg))
    if not any(exe.startswith(p.rstrip("/") + "/") for p in paths):  # e.g. a pyenv or conda interpreter
        paths.append(os.path.dirname(os.path.dirname(exe)))
    return paths


@functools.cache
def isolation() -> str:
    """The strongest level that works here: 'full' (root), 'userns' or 'limits-only'."""
    candidates = (["full"] if os.geteuid() == 0 else []) + ["userns"]
    cfg = SandboxConfig(timeout_s=10.0)
    with tempfile.TemporaryDirectory(prefix="jaxcoder-sandbox-") as stage:
        for level in candidates:
            # Passes only inside the private root (the evaluator's cwd is never /sandbox).
            probe = Job({"probe.py": "import os\nassert os.getcwd() == '/sandbox'\n"},
                        ((interpreter(cfg), "-I", "-B", "probe.py"),))
            r = _run_job(probe, cfg, level, stage, slot=0)
            if r.passed:
                return level
    return "limits-only"


def describe(level: str) -> str:
    return LEVELS.get(level, level)


def run_program(source: str, cfg: SandboxConfig = SandboxConfig(), level: str | None = None) -> Result:
    """Runs one Python program; passed means it ran to its end within the limits."""
    return run_many([source], dataclasses.replace(cfg, workers=1), level)[0]


def run_many(sources: Sequence[str | Job], cfg: SandboxConfig = SandboxConfig(),
             level: str | None = None) -> list[Result]:
    """Runs programs (Python source or Jobs) `cfg.workers` at a time, results in input order."""
    level = level or isolation()
    jobs = [python_job(s, cfg) if isinstance(s, str) else s for s in sources]
    slots = _Slots()
    with tempfile.TemporaryDirectory(prefix="jaxcoder-sandbox-") as stage:
        def one(job: Job) -> Result:
            with slots.take() as slot:
                return _run_job(job, cfg, level, stage, slot)

        with ThreadPoolExecutor(max(1, cfg.workers)) as pool:
            return list(pool.map(one, jobs))


class _Slots:
    """Small integers unique among the samples running at one time (their uids as root)."""

    def __init__(self):
        self._free: list[int] = []
        self._next = 0
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def take(self):
        with self._lock:
            slot = self._free.pop() if self._free else self._next
            self._next += slot == self._next
        try:
            yield slot
        finally:
            with self._lock:
                self._free.append(slot)


def _run_job(job: Job, cfg: SandboxConfig, level: str, stage: str, slot: int) -> Result:
    start = time.perf_counter()
    try:
        return _execute(job, cfg, level, stage, slot, start)
    except Exception as e:  # noqa: BLE001 - one sample's trouble is that sample's failure
        return Result(False, "error", time.perf_counter() - start, f"sandbox error: {type(e).__name__}: {e}")


def _spec(job: Job, cfg: SandboxConfig, level: str, stage: str, slot: int, fds: tuple[int, int],
          token: str | None):
    root = os.geteuid() == 0
    uid = cfg.uid_base + slot if root else os.getuid()
    limits = {"RLIMIT_CPU": cfg.cpu_s, "RLIMIT_AS": cfg.memory_bytes, "RLIMIT_FSIZE": cfg.file_bytes,
              "RLIMIT_NPROC": cfg.max_processes, "RLIMIT_CORE": 0}
    spec = {"mode": {"full": "root", "userns": "userns"}.get(level, "limits"), "stage": stage,
            "ro_binds": _binds(cfg), "files": dict(job.files), "commands": [list(c) for c in job.commands],
            "token": token, "result_fd": fds[0], "ready_fd": fds[1], "limits": limits, "tmp_bytes": cfg.tmp_bytes,
            "disk_bytes": cfg.disk_bytes, "uid": uid if level != "userns" else 0,
            "outer_uid": uid if root and level == "userns" else None,
            "alarm_s": int(cfg.timeout_s) + 5, "setup_alarm_s": int(cfg.setup_s + cfg.timeout_s) + 5,
            "env": {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/sandbox", "TMPDIR": "/tmp",
                    "LANG": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1"}}
    if root and level != "limits-only":  # the sample's own uid mounts its root on the stage
        os.chmod(stage, 0o711)
    if level == "limits-only":
        spec["workdir"] = tempfile.mkdtemp(prefix="sample-", dir=stage)
        if root:
            os.chmod(stage, 0o711)
            os.chown(spec["workdir"], uid, uid)
        spec["env"].update(HOME=spec["workdir"], TMPDIR=spec["workdir"])
    return spec


def _execute(job: Job, cfg: SandboxConfig, level: str, stage: str, slot: int, start: float) -> Result:
    token = secrets.token_hex(16) if job.checked else None
    (result_r, result_w), (ready_r, ready_w) = os.pipe(), os.pipe()
    spec = _spec(job, cfg, level, stage, slot, (result_w, ready_w), token)
    try:
        proc = subprocess.Popen([sys.executable, "-I", "-S", INIT], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, pass_fds=(result_w, ready_w), start_new_session=True,
                                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd="/")
    finally:
        os.close(result_w)
        os.close(ready_w)
    try:
        proc.stdin.write(json.dumps(spec).encode())
        proc.stdin.close()
        out, reported, timed_out, started = _collect(proc, result_r, ready_r, cfg)
    finally:
        _kill_group(proc)
        os.close(result_r)
        os.close(ready_r)
        if "workdir" in spec:
            shutil.rmtree(spec["workdir"], ignore_errors=True)
    text = out[-2000:].decode("utf-8", "replace") if isinstance(out, bytes) else out
    seconds = time.perf_counter() - (started or start)
    if token is not None and token.encode() in reported.split():  # a forked copy may report it too
        return Result(True, "passed", seconds, text)
    if timed_out:
        return Result(False, "timeout", seconds, text)
    if proc.returncode == 125:  # the sandbox could not be built: not the program's fault
        return Result(False, "error", seconds, text)
    passed = token is None and proc.returncode == 0
    return Result(passed, "passed" if passed else "failed", seconds, text)


def _collect(proc: subprocess.Popen, result_r: int, ready_r: int,
             cfg: SandboxConfig) -> tuple[bytes, bytes, bool, float | None]:
    """Reads stdout (keeping its last `cfg.max_output_bytes`) and the result pipe until both close
    and the process ends, or the deadline passes: `cfg.timeout_s` after the sandbox says the first
    command starts (`cfg.setup_s` more before that). Returns (output, reported, timed out, the time
    the first command started or None)."""
    out, reported, cap, started = bytearray(), bytearray(), cfg.max_output_bytes, None
    deadline = time.perf_counter() + cfg.setup_s + cfg.timeout_s
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout.fileno(), selectors.EVENT_READ, "out")
        sel.register(result_r, selectors.EVENT_READ, "result")
        sel.register(ready_r, selectors.EVENT_READ, "ready")
        while sel.get_map():
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return bytes(out[-cap:]), bytes(reported), True, started
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 1 << 16)
                if key.data == "ready":  # written once by the sandbox, closed before the sample runs
                    sel.unregister(key.fd)
                    if chunk:
                        started = time.perf_counter()
                        deadline = started + cfg.timeout_s
                elif not chunk:
                    sel.unregister(key.fd)
                elif key.data == "out":
                    out += chunk
                    if len(out) > 2 * cap:
                        del out[:-cap]
                elif len(reported) < 4096:
                    reported += chunk
    try:
        proc.wait(timeout=max(0.0, deadline - time.perf_counter()))
    except subprocess.TimeoutExpired:
        return bytes(out[-cap:]), bytes(reported), True, started
    return bytes(out[-cap:]), bytes(reported), False, started


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL to the whole process group; PID 1 of the sample's namespace dies with its parent,
    and the kernel then kills everything left inside."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL cannot be ignored
        proc.wait(timeout=5)
    for f in (proc.stdout, proc.stdin):
        if f and not f.closed:
            with contextlib.suppress(OSError):
                f.close()
