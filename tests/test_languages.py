"""Programs of other languages (MultiPL-E's way: the completion and the problem's assertions in one
file, compiled where needed, run) pass when correct, fail when wrong or not compiling, and a
hostile one is contained as a Python one is."""

from __future__ import annotations

import os

import pytest
from test_sandbox import CONTAINED, LEVEL, MARK, _processes_with

from jaxcoder.eval.languages import LANGUAGES, available, run_programs
from jaxcoder.eval.sandbox import SandboxConfig

CFG = SandboxConfig(cpu_s=10, max_processes=32, workers=2)

# (correct, wrong, does not compile) completions of one small problem, in MultiPL-E's test style.
PROGRAMS = {
    "cpp": ("#include <cassert>\n#include <vector>\nlong add(long x, long y) {\n    return x + y;\n}\n"
            "int main() {\n    auto candidate = add;\n    assert(candidate(2, 3) == 5);\n"
            "    assert(candidate(-7, 7) == 0);\n}\n"),
    "java": ("import java.util.*;\nclass Problem {\n    public static long add(long x, long y) {\n"
             "        return x + y;\n    }\n    public static void main(String[] args) {\n"
             "    assert(add((2l), (3l)) == (5l));\n"
             "    assert(add((-7l), (7l)) == (0l));\n    }\n}\n"),
    "js": ("function add(x, y){\n  return x + y;\n}\n\nconst assert = require('node:assert');\n\nfunction test() {\n"
           "  let candidate = add;\n  assert.deepEqual(candidate(2, 3),5);\n  assert.deepEqual(candidate(-7, 7),0);\n"
           "}\n\ntest();\n"),
    "rs": ("fn add(x: isize, y: isize) -> isize {\n    return x + y;\n}\n\nfn main() {\n    let candidate = add;\n"
           "    assert_eq!(candidate(2, 3), 5);\n    assert_eq!(candidate(-7, 7), 0);\n}\n"),
    "sh": ("#!/bin/bash\nadd() {\n    echo $(( $1 + $2 ))\n}\n\ncandidate() {\n    add \"$@\"\n}\n\nset -e\n"
           "run_test() {\n    [[ $(candidate \"2\" \"3\") = \"5\" ]]\n"
           "    [[ $(candidate \"-7\" \"7\") = \"0\" ]]\n}\n\nrun_test\n"),
    "pl": ("sub add {\n    my($x, $y) = @_;\n    return $x + $y;\n}\n\nuse strict;\nmy $candidate = \\&add;\n"
           "if($candidate->(2, 3) == 5) {} else { die \"Test failed!\"; }\n"
           "if($candidate->(-7, 7) == 0) {} else { die \"Test failed!\"; }\n"),
    "php": ("<?php\nfunction add($x, $y) {\n    return $x + $y;\n}\n\nfunction candidate(...$args) {\n"
            "    return add(...$args);\n}\n\nfunction test(): void {\n"
            "    if (candidate(2, 3) !== 5) { throw new Exception(\"Test failed!\"); }\n"
            "    if (candidate(-7, 7) !== 0) { throw new Exception(\"Test failed!\"); }\n}\n\ntest();\n"),
    "rb": ("def add(x, y)\n  return x + y;\nend\n\nrequire 'test/unit'\nclass TestHumanEval < Test::Unit::TestCase\n"
           "  def test_add\n    candidate = method(:add)\n    assert_equal(5, candidate.call(2, 3))\n"
           "    assert_equal(0, candidate.call(-7, 7))\n  end\nend\n"),
}
WRONG = {"+ y": "- y", "$1 + $2": "$1 * $2", "$x + $y": "$x - $y"}


def _wrong(program: str) -> str:
    for right, wrong in WRONG.items():
        if right in program:
            return program.replace(right, wrong, 1)
    raise AssertionError(program)


def _needs(language: str) -> None:
    why = available()[language]
    if why:
        pytest.skip(f"{language} is not available here: {why}")


@pytest.mark.parametrize("language", sorted(PROGRAMS))
def test_correct_programs_pass_and_wrong_or_broken_ones_fail(language):
    _needs(language)
    good = PROGRAMS[language]
    broken = good
    for right, typo in (("return x + y;", "return x +;"), ("$(( $1 + $2 ))", "$(( $1 + ))"), ("$x + $y;", "$x +;")):
        broken = broken.replace(right, typo)
    assert broken != good
    results = run_programs(language, [good, _wrong(good), broken], CFG)
    assert [r.status for r in results] == ["passed", "failed", "failed"], [(r.status, r.output) for r in results]


def test_every_language_is_listed_with_why_it_is_missing():
    status = available()
    assert set(status) == set(LANGUAGES) and status["py"] is None
    with pytest.raises(ValueError, match="unknown language 'cobol'; known: cpp, java, js, rs, sh, pl, php, rb, py"):
        run_programs("cobol", ["IDENTIFICATION DIVISION."])


HOSTILE_CPP = r"""
#include <cstdio>
#include <unistd.h>
int main() {
    FILE *f = fopen("OUTSIDE/pwned", "w"); if (f) { fputs("x", f); fclose(f); }
    f = fopen("/tmp/MARK", "w"); if (f) fclose(f);
    int n = 0;
    while (n < 2000) {
        pid_t p = fork();
        if (p < 0) break;
        if (p == 0) { execl("/bin/sleep", "MARK", "30", nullptr); _exit(0); }
        n++;
    }
    printf("forked %d\n", n);
    return 0;
}
"""
HOSTILE_SH = ("touch OUTSIDE/pwned /tmp/MARK 2>/dev/null\nrm -rf OUTSIDE 2>/dev/null\n(exec -a MARK sleep 30 &)\n"
              "exit 0\n")


@pytest.mark.skipif(not CONTAINED, reason=f"namespaces are unavailable here (isolation: {LEVEL})")
def test_a_hostile_compiled_program_is_contained(tmp_path):
    _needs("cpp")
    outside = tmp_path / "evaluator"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep me")
    fill = {"OUTSIDE": str(outside), "MARK": MARK}
    cpp, sh = HOSTILE_CPP, HOSTILE_SH
    for k, v in fill.items():
        cpp, sh = cpp.replace(k, v), sh.replace(k, v)
    (forked,) = run_programs("cpp", [cpp], CFG, level=CONTAINED[0])
    (shell,) = run_programs("sh", [sh], CFG, level=CONTAINED[0])
    assert forked.passed and 0 < int(forked.output.split()[-1]) < CFG.max_processes, forked
    assert shell.passed, shell
    assert sorted(os.listdir(outside)) == ["keep.txt"] and (outside / "keep.txt").read_text() == "keep me"
    assert not os.path.exists(f"/tmp/{MARK}") and not _processes_with(MARK)
