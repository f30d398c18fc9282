"""The grading workload: 200 submissions to one problem (print the sum of two integers), C
and Python, each compiled (gcc -O2; py_compile) and run on 5 inputs. Most are right; some
print a wrong answer, loop, crash, fail to compile or allocate without end — each kind's
verdict is known by construction, so every engine is checked against it, not only against
the others. Deterministic (seeded)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

TESTS = [(b"1 2\n", b"3"), (b"10 -4\n", b"6"), (b"123456789 987654321\n", b"1111111110"),
         (b"-5 -7\n", b"-12"), (b"0 99\n", b"99")]

C = {
    "ok": '#include <stdio.h>\nint main(void){long long a,b;scanf("%lld %lld",&a,&b);'
          'printf("%lld\\n",a+b);return 0;}\n',
    "wa": '#include <stdio.h>\nint main(void){long long a,b;scanf("%lld %lld",&a,&b);'
          'printf("%lld\\n",a-b);return 0;}\n',
    "loop": 'int main(void){volatile unsigned long i=0;for(;;)i++;}\n',
    "crash": '#include <stdio.h>\nint main(void){long long a,b;scanf("%lld %lld",&a,&b);'
             'int *p=(int*)0;*p=(int)a;printf("%lld\\n",a+b);return 0;}\n',
    "ce": 'int main(void){ return missing_symbol + ; }\n',
    "mle": '#include <stdlib.h>\n#include <string.h>\nint main(void){for(;;){char*p=malloc'
           '(1<<20);if(!p)return 3;memset(p,1,1<<20);}}\n',
}
PY = {
    "ok": "a, b = map(int, input().split())\nprint(a + b)\n",
    "wa": "a, b = map(int, input().split())\nprint(a * b)\n",
    "loop": "while True:\n    pass\n",
    "crash": "a, b = map(int, input().split())\nprint((a + b) // 0)\n",
    "ce": "def f(:\n    pass\n",
    "mle": "x = []\nwhile True:\n    x.append(b'x' * (1 << 20))\n",
}
VERDICT = {"ok": "AC", "wa": "WA", "loop": "TLE", "crash": "RE", "ce": "CE", "mle": "MLE"}
# per 100 of each language
MIX = {"ok": 70, "wa": 10, "loop": 3, "crash": 7, "ce": 6, "mle": 4}

# the limits every engine applies to a test run, and to a compile
RUN_LIMITS = {"cpu": 1, "wall": 5, "memory_mb": 128, "pids": 64}
COMPILE_LIMITS = {"cpu": 10, "wall": 30, "memory_mb": 512, "pids": 64}


@dataclass
class Submission:
    n: int
    lang: str           # "c" or "py"
    kind: str
    source: bytes
    expected: str = field(default="")

    @property
    def filename(self) -> str:
        return "main.c" if self.lang == "c" else "main.py"

    def compile_cmd(self) -> list:
        if self.lang == "c":
            return ["gcc", "-O2", "-o", "main", "main.c"]
        return ["python3", "-m", "py_compile", "main.py"]

    def run_cmd(self) -> list:
        return ["./main"] if self.lang == "c" else ["python3", "main.py"]


def submissions(n: int = 200, seed: int = 18) -> list:
    rng = random.Random(seed)
    kinds = [k for k, count in MIX.items() for _ in range(count)]
    out = []
    for i in range(n):
        lang = "c" if i % 2 == 0 else "py"
        kind = kinds[rng.randrange(len(kinds))]
        # a comment makes each source distinct, as real submissions are
        src = (C if lang == "c" else PY)[kind]
        mark = f"/* submission {i} */\n" if lang == "c" else f"# submission {i}\n"
        out.append(Submission(i, lang, kind, (mark + src).encode(), VERDICT[kind]))
    return out


def judge(compile_ok: bool, results) -> str:
    """The verdict from a compile's success and the test results, each an Outcome; grading
    stops at the first test that fails, as judges do."""
    if not compile_ok:
        return "CE"
    for (inp, want), r in zip(TESTS, results):
        if r.verdict != "OK":
            return r.verdict
        if r.stdout.strip() != want:
            return "WA"
    return "AC"


@dataclass
class Outcome:
    verdict: str        # OK, TLE, MLE, RE
    stdout: bytes = b""


def grade(engine, sub: Submission) -> str:
    """Compile, then the tests until one fails: the engine's `compile(sub, wd)` → bool and
    `test(sub, wd, stdin)` → Outcome, in a workdir from `engine.workdir()`."""
    with engine.workdir() as wd:
        if not engine.compile(sub, wd):
            return "CE"
        results = []
        for inp, want in TESTS:
            r = engine.test(sub, wd, inp)
            results.append(r)
            if r.verdict != "OK" or r.stdout.strip() != want:
                break
        return judge(True, results)


def from_exit(code: int | None, timed_out: bool = False, oom: bool = False) -> str:
    """An outcome's verdict from what a CLI engine reports: 124 (timeout(1)), SIGXCPU
    (RLIMIT_CPU) or SIGKILL with the CPU limit spent → TLE; an OOM kill → MLE."""
    if timed_out or code in (124, 128 + 24, -24):
        return "TLE"
    if oom or code in (137, -9):
        return "MLE"
    return "OK" if code == 0 else "RE"
