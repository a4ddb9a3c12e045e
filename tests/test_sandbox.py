"""The sandbox contains hostile programs while honest ones beside them get the right results."""

from __future__ import annotations

import os

import pytest

from jaxcoder.eval.sandbox import SandboxConfig, isolation, run_many, run_program

CFG = SandboxConfig(timeout_s=3.0, cpu_s=3, memory_bytes=512 << 20, max_processes=32, workers=2)
FULL = isolation() == "full"


def test_honest_programs():
    assert run_program("assert sum(range(5)) == 10\n", CFG).passed
    r = run_program("assert 1 == 2\n", CFG)
    assert not r.passed and r.status == "failed" and "AssertionError" in r.output


HOSTILE = {
    "infinite_loop": "while True:\n    pass\n",
    "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
    "memory_bomb": "x = []\nwhile True:\n    x.append(bytearray(10**7))\n",
    "sleep_forever": "import time\ntime.sleep(1000)\n",
}


def test_hostile_programs_are_contained_and_honest_ones_still_pass():
    honest = ["assert [1, 2][::-1] == [2, 1]\n", "import math\nassert math.isqrt(17) == 4\n"]
    programs = list(HOSTILE.values()) + honest
    results = run_many(programs, CFG)
    for name, r in zip(HOSTILE, results, strict=False):
        assert not r.passed, name
        assert r.seconds < CFG.timeout_s + 5, (name, r.seconds)
    assert all(r.passed for r in results[len(HOSTILE):])


def test_nothing_survives_the_run():
    marker = "jaxcoder_sbx_orphan_marker"
    src = f"import subprocess\nsubprocess.Popen(['sleep', '30', '{marker}'])\nimport time\ntime.sleep(30)\n"
    run_program(src, CFG)
    out = os.popen("ps -eo args").read()
    assert marker not in out


@pytest.mark.skipif(not FULL, reason="needs root with unshare/setpriv (network namespace + unprivileged user)")
def test_full_isolation_blocks_network_files_environment_and_parent(tmp_path):
    outside = tmp_path / "evaluator_file.txt"
    outside.write_text("keep me")
    os.environ["JAXCODER_SECRET_FOR_TEST"] = "s3cr3t"
    try:
        probes = {
            "network": "import socket\ns = socket.socket(); s.settimeout(2)\ns.connect(('1.1.1.1', 80))\n",
            "write_outside": f"open({str(outside)!r}, 'w').write('owned')\n",
            "write_evaluator_dir": f"open({str(tmp_path / 'new.txt')!r}, 'w').write('x')\n",
            "read_env": "import os\nassert 'JAXCODER_SECRET_FOR_TEST' in os.environ\n",
            "read_parent_env": "import os\nopen(f'/proc/{os.getppid()}/environ').read()\n"
                               "open('/proc/1/environ').read()\n",
            "kill_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(1, signal.SIGKILL)\n",
        }
        results = run_many(list(probes.values()), CFG)
        for name, r in zip(probes, results, strict=True):
            assert not r.passed, (name, r.output)
        assert outside.read_text() == "keep me" and not (tmp_path / "new.txt").exists()
    finally:
        del os.environ["JAXCODER_SECRET_FOR_TEST"]
