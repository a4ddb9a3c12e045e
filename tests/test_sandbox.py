"""The sandbox contains hostile programs, never scores a false pass, and honest programs beside them
get exactly the right results."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import pytest

from jaxcoder.eval import humaneval
from jaxcoder.eval.sandbox import Job, SandboxConfig, isolation, run_many, run_program

CFG = SandboxConfig(timeout_s=3.0, cpu_s=3, memory_bytes=512 << 20, max_processes=32, workers=4)
LEVEL = isolation()
# The levels with namespaces that this machine offers (root: both; unprivileged: userns at most).
CONTAINED = [lvl for lvl in ("full", "userns") if lvl == LEVEL or (lvl == "userns" and LEVEL == "full")]
ALL_LEVELS = [*CONTAINED, "limits-only"]
MARK = "jaxcoder_sbx_marker"

# Every way a program can end with status 0 before its checks run, or fake the harness's verdict.
FALSE_PASSES = {
    "sys_exit_0": "import sys\nsys.exit(0)\n",
    "exit": "exit()\n",
    "quit": "quit()\n",
    "os_exit_0": "import os\nos._exit(0)\n",
    "raise_system_exit": "raise SystemExit\n",
    "sigkill_self": "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n",
    "print_passed": "import os\nprint('passed')\nos.write(1, b'passed\\n')\nos._exit(0)\n",
    "forge_result_pipe": "import os\nfor fd in range(3, 20):\n    try:\n        os.write(fd, b'0' * 32 + b'\\n')\n"
                         "    except OSError:\n        pass\nos._exit(0)\n",
    "read_own_source": "import os\nprint(open(__file__).read())\nos._exit(0)\n",
    "atexit_exit": "import atexit, os\natexit.register(lambda: os._exit(0))\nraise SystemExit(0)\n",
    "close_and_exit": "import os\nos.close(3)\nos._exit(0)\n",
}


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_honest_programs_and_every_false_pass_pattern(level):
    honest = {"pass": "assert sum(range(5)) == 10\nprint('ok')\n", "fail": "assert 1 == 2\n",
              "stdin_is_empty": "import sys\nassert sys.stdin.read() == ''\n",
              "forks_and_passes": "import os\npid = os.fork()\nif pid:\n    os.waitpid(pid, 0)\n"}
    programs = {**honest, **FALSE_PASSES}
    results = dict(zip(programs, run_many(list(programs.values()), CFG, level=level), strict=True))
    assert results["pass"].passed and results["pass"].status == "passed" and "ok" in results["pass"].output
    assert results["stdin_is_empty"].passed and results["forks_and_passes"].passed, results
    assert results["fail"].status == "failed" and "AssertionError" in results["fail"].output
    for name in FALSE_PASSES:
        assert not results[name].passed and results[name].status == "failed", (name, results[name])


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_humaneval_completions_that_exit_early_fail(level):
    problem = humaneval.problems()[0]
    body = "    import {mod}\n    {call}\n"
    early = {"sys.exit(0)": body.format(mod="sys", call="sys.exit(0)"),
             "os._exit(0)": body.format(mod="os", call="os._exit(0)"),
             "exit()": "    exit()\n", "quit()": "    quit()\n",
             "module level": "    return True\n\nimport os\nos._exit(0)\n"}
    programs = [humaneval.program(problem, humaneval.canonical_completion(problem))]
    programs += [humaneval.program(problem, c) for c in early.values()]
    results = run_many(programs, CFG, level=level)
    assert results[0].passed, results[0]
    for name, r in zip(early, results[1:], strict=True):
        assert r.status == "failed", (name, r)


def _processes_with(marker: str) -> list[str]:
    found = []
    for path in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(path, "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and "pytest" not in cmd:
            found.append(cmd)
    return found


def _hostile(outside: str, evaluator_pid: int) -> dict[str, str]:
    """Programs that try to escape, outlive the sample, hurt their neighbours or the evaluator."""
    sleeper = f"[sys.executable, '-c', 'import time; time.sleep(60)', '{MARK}']"
    return {
        "infinite_loop": "while True:\n    pass\n",
        "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "memory_bomb": "x = []\nwhile True:\n    x.append(bytearray(10**7))\n",
        "sleep_forever": "import time\ntime.sleep(1000)\n",
        "stdout_flood": "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n",
        "disk_fill": "f = open('big', 'wb')\nwhile True:\n    f.write(b'x' * (1 << 20))\n",
        "tmp_fill": "import os\nfor i in range(10**6):\n    open(f'/tmp/f{i}', 'wb').write(b'x' * (1 << 20))\n",
        "setsid_daemon": f"import subprocess, sys, time\nsubprocess.Popen({sleeper}, start_new_session=True)\n"
                         "time.sleep(0.3)\nraise SystemExit(1)\n",
        "double_fork_daemon": "import os, sys, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                              f"        os.execv(sys.executable, {sleeper})\n    os._exit(0)\ntime.sleep(0.3)\n"
                              "raise SystemExit(1)\n",
        "nohup_sleeper": f"import os\nos.system('nohup sh -c \"sleep 60; echo {MARK}\" >/dev/null 2>&1 &')\n"
                         "raise SystemExit(1)\n",
        "write_tmp": f"open('/tmp/{MARK}', 'w').write('x')\nopen('/var/tmp/{MARK}', 'w').write('x')\n"
                     f"open('/dev/shm/{MARK}', 'w').write('x')\nraise SystemExit(1)\n",
        "write_outside": f"open({outside!r} + '/{MARK}', 'w').write('owned')\n",
        "write_parent_dir": f"import os\nopen(os.path.join(os.path.dirname(os.getcwd()), '{MARK}'), 'w').write('x')\n",
        "write_home_and_root": f"import os\nfor d in ('/root', os.path.expanduser('~'), '/', '/etc', '/usr'):\n"
                               f"    try:\n        open(os.path.join(d, '{MARK}'), 'w').write('x')\n"
                               "    except OSError:\n        pass\nraise SystemExit(1)\n",
        "delete_siblings": "import glob, os, shutil\n"
                           "for pat in ('/tmp/jaxcoder-sandbox-*', '/tmp/*', '../*', '/sandbox/..'):\n"
                           "    for p in glob.glob(pat):\n        shutil.rmtree(p, ignore_errors=True)\n"
                           "raise SystemExit(1)\n",
        "kill_everyone": "import os, signal\nfor sig in (signal.SIGSTOP, signal.SIGKILL):\n    try:\n"
                         "        os.kill(-1, sig)\n    except OSError:\n        pass\nraise SystemExit(1)\n",
        "kill_evaluator": f"import os, signal\nfor pid in ({evaluator_pid}, os.getppid(), 1):\n    try:\n"
                          "        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
                          "raise SystemExit(1)\n",
        "network": "import socket\ns = socket.socket()\ns.settimeout(2)\ns.connect(('1.1.1.1', 80))\n",
        "read_evaluator_env": f"open('/proc/{evaluator_pid}/environ').read()\n",
        "read_init_memory": "open('/proc/1/mem', 'rb').read(1)\n",
        "become_root": f"import os\nos.setuid(0)\nopen('/etc/{MARK}', 'w').write('x')\n",
        "mount_over": "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                      "assert libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) == 0\n",
        "chroot_escape": "import os\nos.mkdir('d')\nos.chroot('d')\n",
        "remount_rw": "import subprocess\nsubprocess.run(['mount', '-o', 'remount,rw', '/usr'], check=True)\n",
    }


@pytest.mark.skipif(not CONTAINED, reason=f"namespaces are unavailable here (isolation: {LEVEL})")
@pytest.mark.parametrize("level", CONTAINED)
def test_hostile_programs_are_contained_and_honest_ones_beside_them_pass(level, tmp_path):
    outside = tmp_path / "evaluator"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    watched = ["/tmp", "/var/tmp", "/dev/shm", str(tmp_path), "/root", os.path.expanduser("~")]
    before = {d: set(os.listdir(d)) for d in watched if os.path.isdir(d)}
    hostile = _hostile(str(outside), os.getpid())
    # Honest programs that take a moment, so they run while their neighbours attack.
    honest = ["import time\ntime.sleep(0.8)\nassert [1, 2][::-1] == [2, 1]\n",
              "import math, time\ntime.sleep(0.5)\nassert math.isqrt(17) == 4\n",
              "import os, time\nopen('own.txt', 'w').write('x' * 1000)\ntime.sleep(0.6)\n"
              "assert open('own.txt').read() == 'x' * 1000\n",
              "import tempfile, time\nwith tempfile.NamedTemporaryFile() as f:\n    f.write(b'ok')\n"
              "    time.sleep(0.7)\n"] * 3
    programs = [p for pair in zip(list(hostile.values()), honest * 3, strict=False) for p in pair]
    programs += list(hostile.values())[len(programs) // 2:]
    results = run_many(programs, CFG, level=level)
    by_program: dict[str, list] = {}
    for p, r in zip(programs, results, strict=True):
        by_program.setdefault(p, []).append(r)
    for name, src in hostile.items():
        for r in by_program[src]:
            assert not r.passed and r.status in ("failed", "timeout"), (name, r)
            assert r.seconds < CFG.timeout_s + 5, (name, r.seconds)
    for src in set(honest):
        for r in by_program[src]:
            assert r.passed, (src, r)
    assert (outside / "keep.txt").read_text() == "keep me" and sorted(os.listdir(outside)) == ["keep.txt"]
    after = {d: set(os.listdir(d)) for d in before}
    for d in before:
        assert after[d] <= before[d] | {p for p in after[d] if p.startswith("pytest-")}, (d, after[d] - before[d])
        assert MARK not in after[d], d
    assert not _processes_with(MARK)


@pytest.mark.parametrize("level", ALL_LEVELS)
def test_a_sample_cannot_start_more_processes_than_its_limit(level):
    # As real root, a user namespace alone is exempt from RLIMIT_NPROC (the kernel checks the real
    # user): a fork bomb there filled the host's PID table and starved its neighbours.
    program = ("import os, time\nn = 0\ntry:\n    while n < 2000:\n        if os.fork() == 0:\n"
               "            time.sleep(2)\n            os._exit(0)\n        n += 1\nexcept OSError:\n    pass\n"
               "print('forked', n)\n")
    r = run_program(program, CFG, level=level)
    assert r.passed, r
    forked = int(r.output.split()[-1])
    assert 0 < forked < CFG.max_processes, (level, forked)


@pytest.mark.skipif(not CONTAINED, reason=f"namespaces are unavailable here (isolation: {LEVEL})")
def test_the_evaluators_memory_stays_bounded_under_output_floods():
    """A fresh interpreter runs four flooding samples (GBs of output in their 3 s) and reports its
    own peak memory (VmHWM: ru_maxrss would carry over the forking pytest's)."""
    code = ("import json, re\nfrom jaxcoder.eval.sandbox import SandboxConfig, run_many\n"
            "flood = 'import os\\nwhile True:\\n    os.write(1, b\"x\" * 65536)\\n'\n"
            "rs = run_many([flood] * 4, SandboxConfig(timeout_s=3.0, workers=4))\n"
            "print(json.dumps({'status': [r.status for r in rs], 'out': [len(r.output) for r in rs],\n"
            "                  'rss_kb': int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1])}))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["status"] == ["timeout"] * 4 and all(n == 2000 for n in report["out"])
    assert report["rss_kb"] < 150_000, report  # the output kept per sample is 64 KiB


def test_one_samples_failure_is_never_the_evaluators():
    jobs = [Job({"x.py": "pass\n"}, (("/nonexistent/interpreter", "x.py"),)),
            Job({"../escape.py": "pass\n"}, (("/usr/bin/true",),)),
            "assert True\n"]
    results = run_many(jobs, CFG)
    assert [r.passed for r in results] == [False, False, True]
    assert "nonexistent" in results[0].output


def test_commands_run_in_order_and_stop_at_the_first_failure():
    job = Job({"a.sh": "echo one > log\n", "b.sh": "echo two >> log\ncat log\n"},
              (("/bin/sh", "a.sh"), ("/bin/sh", "b.sh")))
    r = run_many([job, Job({}, (("/bin/false",), ("/bin/sh", "-c", "echo never")))], CFG)
    assert r[0].passed and r[0].output.split() == ["one", "two"]
    assert r[1].status == "failed" and "never" not in r[1].output


def test_run_program_output_and_timeout():
    assert run_program("print('hi')\n", CFG).output == "hi\n"
    r = run_program("import time\nprint('started', flush=True)\ntime.sleep(30)\n", CFG)
    assert r.status == "timeout" and r.output == "started\n" and CFG.timeout_s <= r.seconds < CFG.timeout_s + 2
