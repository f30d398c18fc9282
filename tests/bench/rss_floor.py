"""Where the peak RSS of a plain `runner run` comes from (issue 21 target 6), step by step.

    .venv/bin/python tests/bench/rss_floor.py [--runs N]

bench.py's first table gives the peak RSS of a `runner run` of a /bin/true container
(wait4's ru_maxrss from a small C parent) beside runc's. This takes that number apart: each
row is a process one step further toward the run, measured the same way, each started by
the interpreter and with the flags the installed launcher starts it with (`python -I -S`,
csrc/launcher.c), the package pip-installed as bench.py installs it:

    the interpreter alone (`-c pass`)
    + `import os` (the boot and every module of ours import it)
    + the extension modules the run loads that are not ours (_cffi_backend, _socket, …)
    + every module the run loads, imported and nothing run
    the run itself; runc's, the peer

then what each of those extension modules adds, as the step without it, and how much of
the interpreter's code the run has mapped at its end. The modules are those the run really
loads (read from one run of it), so the steps follow the code. What a module adds to the
steps here is an upper bound of what leaving it out of the run would save: pages it is the
first to touch may be touched later in the run anyway (errno: +64 KiB here; a run without
it peaked the same, within the runs' ±60 KiB).

All rows run with ASLR off (`setarch -R`): with it on, where mmap puts obmalloc's arenas and
the libraries moves a run's peak by ±150 KiB between runs, so a step of tens of KiB is lost;
with it off the same process peaks within a few KiB each time. The numbers are a little
above bench.py's (with ASLR on) and are for comparing the rows, not for the target.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import bench

# one run of the launcher's own command line, with what it loaded written out at its exit
# (runner ends with os._exit, so atexit would never run)
DUMP = r"""
import os, sys
_exit = os._exit
def _dump(code):
    text, exe, cur = [0, 0], os.path.realpath(sys.executable), False
    for line in open("/proc/self/smaps"):
        p = line.split()
        if not p[0].endswith(":"):
            cur = len(p) > 5 and p[1] == "r-xp" and p[5] == exe
        elif cur and p[0] in ("Size:", "Rss:"):
            text[p[0] == "Rss:"] += int(p[1])
    with open(os.environ["RSS_FLOOR_OUT"], "w") as f:
        f.write(repr((sys.path, [(n, getattr(m, "__file__", None)) for n, m in sys.modules.items()],
                      text)))
    _exit(code)
os._exit = _dump
exec(open(sys.argv[1], "rb").read().split(b"#!boot\n")[1].split(b"\0")[0])
"""


def loaded(python: str, argv: list, out: Path) -> tuple:
    """→ (sys.path, [(module, file)] in the order loaded, [KiB of the interpreter's code, KiB of
    it mapped]) at the end of `python -I -S` running `argv` the way the launcher does."""
    subprocess.run([python, "-I", "-S", "-c", DUMP, *argv], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, RSS_FLOOR_OUT=str(out)))
    import ast

    return ast.literal_eval(out.read_text())


def aslr_off(command):
    return lambda cid: ["setarch", "-R", *command(cid)]


def ours(name: str) -> bool:
    return name.split(".")[0] in ("libcontainer", "runner")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("rss_floor: needs root", file=sys.stderr)
        return 1
    if not shutil.which("setarch"):
        print("rss_floor: setarch (util-linux) is needed to turn ASLR off", file=sys.stderr)
        return 1
    tag = f"rssfloor-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp"))
    shm = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/dev/shm"))
    (work / "state").symlink_to(shm)
    leaks: list = []
    try:
        print("rss_floor: pip install . into a fresh venv …", flush=True)
        runner = bench.pip_install(work)
        python = str(Path(runner).parent / "python3")
        run = bench.scenario_runner(work, leaks, runner=runner, name="the run")
        path, mods, text = loaded(python, run.command(f"{tag}-probe"), work / "loaded")
        run.cleanup(f"{tag}-probe")
        base, with_os = (subprocess.run([python, "-I", "-S", "-c", f"import sys{more}; print("
                                         "' '.join(sys.modules))"], capture_output=True, text=True,
                                        check=True).stdout.split() for more in ("", ", os"))
        new = [(n, f) for n, f in mods if n not in with_os]
        ext = [n for n, f in new if not ours(n) and not (f or "").endswith(".py")]
        every = [n for n, _ in new if n not in ("__main__",)]
        setpath = f"import sys; sys.path[:] = {path!r}; "

        def py(name: str, code: str, note: str = "") -> bench.Scenario:
            return bench.Scenario(name, lambda cid: ["setarch", "-R", python, "-I", "-S", "-c",
                                                     code], note=note)

        steps = [py("python -I -S -c pass", "pass", "the interpreter as the launcher starts it"),
                 py("+ import os", "import os", f"{len(with_os) - len(base)} modules"),
                 py("+ extension modules", setpath + "import os, " + ", ".join(ext),
                    ", ".join(ext)),
                 py("+ all the run's modules", setpath + "import os, " + ", ".join(every),
                    f"{len(every)} modules imported, nothing run")]
        run.command = aslr_off(run.command)
        run.note = "a plain `runner run` of /bin/true, pip-installed"
        steps.append(run)
        if shutil.which("runc"):
            peer = bench.scenario_runc(work, leaks)
            peer.command = aslr_off(peer.command)
            steps.append(peer)
        without = [py(f"  without {m}", setpath + "import os, " +
                      ", ".join(x for x in ext if x != m)) for m in ext]
        scenarios = steps + without
        print(f"rss_floor: {len(scenarios)} rows, {args.warmup} warm-up + {args.runs} runs each, "
              "ASLR off", flush=True)
        bench.measure(bench.build_helper(work), scenarios, args.runs, args.warmup, tag)
        rss = {sc.name: bench.median(sc.rss) for sc in scenarios}
        print(f"\npeak RSS (wait4 ru_maxrss, median of {args.runs}, KiB; ASLR off)")
        print(f"{'step':28s} {'KiB':>7s} {'+KiB':>6s}  note")
        prev = None
        for sc in steps:
            step = "" if prev is None or sc.name == "runc" else f"{rss[sc.name] - prev:+6.0f}"
            print(f"{sc.name:28s} {rss[sc.name]:7.0f} {step:>6s}  {sc.note}")
            if sc.name != "runc":
                prev = rss[sc.name]
        full = rss["+ extension modules"]
        print("\nwhat each extension module adds (the step above without it), KiB")
        for sc in without:
            print(f"  {sc.name.split()[-1]:20s} {full - rss[sc.name]:+6.0f}")
        print(f"\nthe interpreter's code mapped at the end of the run: {text[1]} of {text[0]} KiB "
              "(a fault maps the 64 KiB around it: fault-around)")
        if "runc" in rss:
            print(f"\nsummary: the run {rss['the run']:.0f} KiB = "
                  f"{rss['the run'] / rss['runc']:.2f}x "
                  f"runc's {rss['runc']:.0f}; the interpreter with os and the extension modules "
                  f"alone {full:.0f} = {full / rss['runc']:.2f}x")
        for name in sorted({name for name, _ in leaks}):
            print(f"note: {name} left {sum(n == name for n, _ in leaks)} cgroups behind (removed)")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
        bench.remove_cgroups(bench.cgroups_named(tag + "-", exact=False))


if __name__ == "__main__":
    sys.exit(main())
