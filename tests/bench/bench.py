"""`make bench`: wall time and peak memory of `runner run` of a /bin/true container, side by
side with `runc run` and `crun run`, plus the floors (the kernel's `unshare` + chroot, and the
interpreter's own start-up). `runner served` is the same runner with a `runner warm-server`
on its state root. Then the memory of one run like for like (tests/bench/memory.py): each
peak RSS plus the private memory of the process the call keeps beside its caller.

    .venv/bin/python tests/bench/bench.py [--runs N] [--warmup N] [--profile]

BENCH_RUNS (default 30) sets N; BENCH_PROFILE=1 is the same as --profile, which afterwards
prints where a `runner run` spends its time (`-X importtime`, `strace -f -c`, `strace -T`).

Every scenario is a small function returning a Scenario: a command built from a fresh
container id, and an optional per-run cleanup. Runs are interleaved round-robin so that
noise from other work on the machine falls on every scenario alike. Time is wall time
from fork to wait4 in a tiny C helper; peak RSS is wait4's ru_maxrss of the command, i.e. the
largest resident set of any process in its tree that was reaped (KiB). Each run gets a
unique id; runc and crun create cgroups named after it, which are checked for and removed
after every run (only those names, nothing else).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = REPO / ".venv" / "bin"
PY = str(VENV_BIN / "python")
RUNNER = str(VENV_BIN / "runner")
ROOTFS = REPO / "build" / "bundle" / "rootfs"
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNIFIED = CGROUP_ROOT / "unified"
# crun 1.8.1 rejects ociVersion "1.3.0"; every runtime gets this same config.
OCI_VERSION = "1.0.2"

sys.path.insert(0, str(REPO))


# ---------------------------------------------------------------------------------- setup

def ensure_packages(*pkgs: str) -> list:
    """apt-get install whichever of `pkgs` is missing; → the ones still missing after."""
    def missing():
        out = []
        for p in pkgs:
            r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True, text=True)
            if not r.stdout.startswith("install ok installed"):
                out.append(p)
        return out

    todo = missing()
    if todo:
        print(f"installing: {' '.join(todo)}", flush=True)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(["apt-get", "install", "-y", "-qq", *todo], env=env, check=False,
                       stdout=subprocess.DEVNULL)
        todo = missing()
    return todo


def compile_package() -> None:
    """What `make compile` does: with PYTHONDONTWRITEBYTECODE set, a module edited since its
    .pyc was written is compiled again on every start, and the bench would time that."""
    subprocess.run([PY, "-m", "compileall", "-q", "libcontainer", "runner"], cwd=REPO, check=True)


def stale_modules() -> list:
    """Sources newer than their .pyc (edited while the bench ran)."""
    out = []
    for src in [*REPO.glob("libcontainer/**/*.py"), *REPO.glob("runner/*.py")]:
        pyc = src.parent / "__pycache__" / f"{src.stem}.cpython-{sys.version_info[0]}{sys.version_info[1]}.pyc"
        if not pyc.exists() or pyc.stat().st_mtime < src.stat().st_mtime:
            out.append(str(src.relative_to(REPO)))
    return out


def bench_config() -> dict:
    from libcontainer.default_spec import default_config

    config = default_config(args=["/bin/true"], terminal=False)
    config["ociVersion"] = OCI_VERSION
    return config


def make_bundle(work: Path, name: str, config: Optional[dict] = None) -> Path:
    """A private copy of build/bundle/rootfs and the shared config, under `work`."""
    from libcontainer import jsonio

    bundle = work / "bundles" / name
    bundle.mkdir(parents=True)
    subprocess.run(["cp", "-a", str(ROOTFS), str(bundle / "rootfs")], check=True)
    (bundle / "config.json").write_text(jsonio.dumps(config or bench_config()))
    return bundle


def cgroup_parents() -> list:
    """Where runc and crun put a container's cgroup when the config names none: under each
    hierarchy's root (crun) and under the caller's own cgroup in it (runc)."""
    own = {}
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        name = controllers.removeprefix("name=") or "unified"
        for key in [name, *name.split(",")]:
            own[key] = path.lstrip("/")
    parents = {CGROUP_ROOT}
    if CGROUP_ROOT.is_dir():
        if (CGROUP_ROOT / "cgroup.procs").exists():  # pure cgroup v2
            parents.add(CGROUP_ROOT / own.get("unified", ""))
        for hier in CGROUP_ROOT.iterdir():
            if hier.is_dir() and not hier.is_symlink() and (hier / "cgroup.procs").exists():
                parents |= {hier, hier / own.get(hier.name, "")}
    return sorted(p for p in parents if p.is_dir())


CGROUP_PARENTS = cgroup_parents()


def cgroups_named(prefix: str, exact: bool = True) -> list:
    """Cgroups called `prefix` (or starting with it): ids are unique to this run, so these
    are ours. Nothing else is looked at."""
    if exact:
        return [p / prefix for p in CGROUP_PARENTS if (p / prefix).is_dir()]
    return [d for p in CGROUP_PARENTS for d in p.iterdir()
            if d.is_dir() and d.name.startswith(prefix)]


def remove_cgroups(dirs: list) -> list:
    """rmdir `dirs` (their child cgroups first); → `dirs`."""
    for d in dirs:
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            sub.rmdir()
        d.rmdir()
    return dirs


# ------------------------------------------------------------------------------ scenarios

@dataclass
class Scenario:
    name: str
    command: Callable[[str], list]           # container id → argv
    cleanup: Optional[Callable[[str], None]] = None   # after each run, with its id
    note: str = ""
    times: list = field(default_factory=list)  # ns
    rss: list = field(default_factory=list)    # KiB


def cgroup_cleanup(leaks: list, name: str) -> Callable[[str], None]:
    """After each run: remove, and remember, any cgroup the runtime left under the run's id."""
    def clean(cid: str) -> None:
        leaks.extend((name, d) for d in remove_cgroups(cgroups_named(cid)))
    return clean


def pip_install(work: Path, rev: str = "") -> str:
    """The package as a user gets it: `pip install .` of this tree (its files as git knows
    them, edits included; or of commit `rev`) into a fresh venv of the system's python. No
    network: the build dependencies come from the dev venv, and its site-packages stands in
    for the installed dependencies (a .pth line). → the `runner` pip installed."""
    name = "pip-" + (rev.replace("/", "_") if rev else "tree")
    src, venv = work / (name + "-src"), work / (name + "-venv")
    if rev:
        src.mkdir()
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(src)], input=archive, check=True)
    else:
        files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                                "--exclude-standard"], cwd=REPO, capture_output=True,
                               check=True).stdout.split(b"\0")
        for f in filter(None, files):
            dest = src / f.decode()
            if (REPO / f.decode()).is_file():
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / f.decode(), dest)
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
    site = subprocess.run([PY, "-c", "import cffi, os; print(os.path.dirname(os.path.dirname("
                           "cffi.__file__)))"], capture_output=True, text=True,
                          check=True).stdout.strip()
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-build-isolation",
                    "--no-deps", str(src)], check=True, capture_output=True,
                   env=dict(os.environ, PYTHONPATH=site, PIP_NO_INDEX="1"))
    ver = "python%d.%d" % sys.version_info[:2]
    (venv / "lib" / ver / "site-packages" / "deps.pth").write_text(site + "\n")
    subprocess.run([str(venv / "bin" / "python3"), "-m", "compileall", "-q",
                    str(venv / "lib" / ver / "site-packages" / "libcontainer"),
                    str(venv / "lib" / ver / "site-packages" / "runner")], check=True)
    return str(venv / "bin" / "runner")


def scenario_runner(work: Path, leaks: list, config: Optional[dict] = None,
                    runner: str = RUNNER, name: str = "runner") -> Scenario:
    bundle = make_bundle(work, name.replace(" ", "").strip("()").replace("(", "-"), config)
    root = work / "state" / "runner"
    return Scenario(name, lambda cid: [runner, "--root", str(root), "run", "--bundle",
                                       str(bundle), cid], cgroup_cleanup(leaks, "runner"))


def start_warm_server(runner: str, root: Path, log=subprocess.DEVNULL,
                      debug: bool = False) -> subprocess.Popen:
    """`runner warm-server` on `root` (runner/warm.py), serving once this returns."""
    root.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([runner, "--root", str(root), *(["--debug"] if debug else []),
                             "warm-server"], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    for _ in range(1000):
        if (root / ".warm.sock").exists() or proc.poll() is not None:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        raise RuntimeError("runner warm-server did not start")
    time.sleep(0.5)  # past its imports: serving
    return proc


def scenario_runner_served(work: Path, leaks: list, runner: str) -> Scenario:
    """The same runner with a warm server on its state root: the launcher hands the call
    over and execs runner/warm-spawn, which clones the container; no Python in this
    process (the server is started by main)."""
    bundle = make_bundle(work, "runner-served")
    root = work / "state" / "runner-served"
    return Scenario("runner served", lambda cid: [runner, "--root", str(root), "run",
                                                  "--bundle", str(bundle), cid],
                    cgroup_cleanup(leaks, "runner served"),
                    note="a `runner warm-server` on its root (runner/warm_spawn.py)")


def scenario_runc(work: Path, leaks: list, config: Optional[dict] = None) -> Scenario:
    bundle, root = make_bundle(work, "runc", config), work / "state" / "runc"
    runc = shutil.which("runc")
    return Scenario("runc", lambda cid: [runc, "--root", str(root), "run", "--bundle",
                                         str(bundle), cid], cgroup_cleanup(leaks, "runc"))


def _crun_wrapper(then: str) -> list:
    """crun refuses hybrid cgroups (v1 + /sys/fs/cgroup/unified): run it in a mount
    namespace without the unified mount. Nothing to do on a pure v1 or v2 machine."""
    if os.path.ismount(UNIFIED):
        return ["unshare", "-m", "sh", "-c", f"umount {UNIFIED} && exec {then}"]
    return ["sh", "-c", f"exec {then}"]


def scenario_crun(work: Path, leaks: list, config: Optional[dict] = None) -> Scenario:
    bundle, root = make_bundle(work, "crun", config), work / "state" / "crun"
    crun = shutil.which("crun")
    return Scenario("crun (raw)", lambda cid: _crun_wrapper(
        f'{crun} --root {root} run --bundle {bundle} "$0"') + [cid], cgroup_cleanup(leaks, "crun"),
        note="includes the unshare -m + umount wrapper")


def scenario_crun_wrapper() -> Scenario:
    return Scenario("crun wrapper", lambda cid: _crun_wrapper("/bin/true"),
                    note="unshare -m sh -c umount, alone")


def scenario_true() -> Scenario:
    """/bin/true alone: the spawn every scenario pays. What the wrapper adds is its time
    over this one; taking the whole wrapper off crun would take crun's own spawn off too."""
    return Scenario("/bin/true", lambda cid: ["/bin/true"], note="a plain spawn, alone")


# ------------------------------------------------------------------ cgroups (issue 4)
# The same `run` with a typical linux.resources set, for each runtime: the difference to
# the plain scenarios is the cost of creating the cgroup, applying the limits and removing
# it. cgroup_manager_cost() measures libcontainer.cgroups alone, in-process.
TYPICAL_RESOURCES = {
    "memory": {"limit": 256 << 20, "reservation": 128 << 20},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000},
    "pids": {"limit": 128},
    "devices": [{"allow": False, "access": "rwm"}],
}


def resources_config() -> dict:
    config = bench_config()
    config["linux"]["resources"] = TYPICAL_RESOURCES
    return config


def scenarios_with_resources(work: Path, leaks: list, missing: list) -> list:
    out = []
    for name, make in (("runner", scenario_runner), ("crun", scenario_crun),
                       ("runc", scenario_runc)):
        if name in missing:
            continue
        sc = make(work / "res", leaks, resources_config())
        sc.name += " +res"
        sc.note = (sc.note + "; " if sc.note else "") + "memory, cpu, pids, devices limits"
        out.append(sc)
    return out


def cgroup_manager_cost(runs: int, tag: str) -> str:
    """Median cost of Manager.create (mkdir in every hierarchy + the limits) and destroy."""
    from libcontainer import cgroups

    create_ns, destroy_ns = [], []
    for i in range(runs + 3):
        t0 = time.perf_counter_ns()
        m = cgroups.Manager.create(f"{tag}-m{i}", f"{tag}-mgr/m{i}", TYPICAL_RESOURCES)
        t1 = time.perf_counter_ns()
        m.destroy()
        t2 = time.perf_counter_ns()
        if i >= 3:
            create_ns.append(t1 - t0)
            destroy_ns.append(t2 - t1)
    host = cgroups.detect()
    return (f"cgroups.Manager ({host.mode} host, typical resources): create+apply "
            f"{ms(median(create_ns)):.2f} ms, destroy {ms(median(destroy_ns)):.2f} ms (median "
            f"of {runs})")


def scenario_floor(work: Path) -> Scenario:
    rootfs = make_bundle(work, "floor") / "rootfs"
    return Scenario("floor", lambda cid: [
        "unshare", "--fork", "--pid", "--mount", "--net", "--ipc", "--uts", "--mount-proc",
        "chroot", str(rootfs), "/bin/true"], note="unshare (all namespaces) + chroot + exec")


def scenario_python() -> Scenario:
    return Scenario("python -c pass", lambda cid: [PY, "-c", "pass"],
                    note="the interpreter's own start-up")


# -------------------------------------------------------------------------------- running

# A fork + exec + wait4 from Python would report Python's own RSS as the child's peak: the
# kernel carries the old address space's high-water mark across execve, and posix_spawn's
# vfork child *is* the bench's address space until it execs. So runs go through this tiny
# helper, which also takes the time (fork → wait4) without any Python in the loop.
HELPER_C = r"""
#include <stdio.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/resource.h>
int main(int argc, char **argv) {
    struct timespec a, b;
    struct rusage ru;
    int status;
    if (argc < 2) return 126;
    clock_gettime(CLOCK_MONOTONIC, &a);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open("/dev/null", O_RDWR);
        dup2(fd, 0);
        dup2(fd, 1);
        execvp(argv[1], argv + 1);
        _exit(127);
    }
    if (pid < 0 || wait4(pid, &status, 0, &ru) < 0) return 126;
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%lld %ld %d\n", (b.tv_sec - a.tv_sec) * 1000000000LL + (b.tv_nsec - a.tv_nsec),
           ru.ru_maxrss, status);
    return 0;
}
"""


def build_helper(work: Path) -> str:
    src, exe = work / "spawn.c", work / "spawn"
    src.write_text(HELPER_C)
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(src)], check=True)
    return str(exe)


class RunFailed(Exception):
    pass


def run_once(helper: str, sc: Scenario, cid: str) -> tuple:
    """→ (wall ns, ru_maxrss KiB) of one run of `sc`."""
    argv = sc.command(cid)
    r = subprocess.run([helper, *argv], stdin=subprocess.DEVNULL, capture_output=True)
    if sc.cleanup is not None:
        sc.cleanup(cid)
    try:
        elapsed, rss, status = map(int, r.stdout.split())
    except ValueError:
        elapsed, rss, status = 0, 0, 126 << 8
    code = os.waitstatus_to_exitcode(status)
    if r.returncode or code:
        err = r.stderr.decode(errors="replace").strip()
        raise RunFailed(f"{sc.name}: exit {code}: {' '.join(argv)}\n{err}")
    return elapsed, rss


def measure(helper: str, scenarios: list, runs: int, warmup: int, tag: str) -> None:
    """Warm-up, then `runs` rounds; each round runs every scenario once, starting from a
    different one each round."""
    n = 0
    for rnd in range(warmup + runs):
        for k in range(len(scenarios)):
            sc = scenarios[(rnd + k) % len(scenarios)]
            n += 1
            elapsed, rss = run_once(helper, sc, f"{tag}-{n}")
            if rnd >= warmup:
                sc.times.append(elapsed)
                sc.rss.append(rss)


# ------------------------------------------------------------------------------- reporting

def median(xs: list) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def p90(xs: list) -> float:
    s = sorted(xs)
    return s[max(0, -(-len(s) * 9 // 10) - 1)]  # nearest rank


def ms(ns: float) -> float:
    return ns / 1e6


def report(scenarios: list, runs: int) -> str:
    by = {sc.name: sc for sc in scenarios}
    print(f"\n{runs} runs each, round-robin, after warm-up (wall ms; peak RSS = wait4 ru_maxrss)")
    print(f"{'scenario':<18}{'median':>9}{'p90':>9}{'peak RSS':>12}{'median':>11}   note")
    for sc in scenarios:
        print(f"{sc.name:<18}{ms(median(sc.times)):>9.1f}{ms(p90(sc.times)):>9.1f}"
              f"{max(sc.rss) / 1024:>9.1f} MiB{median(sc.rss):>7.0f} KiB   {sc.note}")
    med = {name: ms(median(sc.times)) for name, sc in by.items()}
    rss = {name: max(sc.rss) / 1024 for name, sc in by.items()}
    if "crun (raw)" in med:
        med["crun"] = max(med["crun (raw)"] - (med["crun wrapper"] - med["/bin/true"]), 0.001)
        rss["crun"] = rss["crun (raw)"]
        print(f"{'crun (corrected)':<18}{med['crun']:>9.1f}{'':>9}{'':>12}   "
              "raw median minus what the wrapper adds over /bin/true")

    r = med["runner"]
    parts = [f"runner {r:.1f} ms"]
    for ours in ("runner", "runner served"):
        if ours not in med:
            continue
        print()
        for other in ("crun", "crun (raw)", "runc"):
            if other in med:
                print(f"{ours + '/' + other:<25} time {med[ours] / med[other]:5.2f}x   "
                      f"peak RSS {rss[ours] / rss[other]:5.2f}x")
                if ours == "runner" and other != "crun (raw)":
                    parts.append(f"{r / med[other]:.2f}x {other} ({med[other]:.1f} ms)")
    summary = (", ".join(parts) + f"; floor {med['floor']:.1f} ms, "
               f"python -c pass {med['python -c pass']:.1f} ms, "
               f"peak RSS runner {rss['runner']:.1f} MiB")
    if "runner served" in med:
        summary += (f"; served {med['runner served']:.1f} ms, peak RSS "
                    f"{rss['runner served']:.1f} MiB")
    print(f"\nsummary: {summary}")
    return summary


def memory_table(work: Path, leaks: list, scenarios: list, runner: str, server, missing: list,
                 tag: str, runs: int = 7) -> str:
    """Each runtime's peak RSS (the table above) plus the process its call keeps beside
    the caller (tests/bench/memory.py); → the summary line."""
    import memory

    config = bench_config()
    config["process"]["args"] = ["/bin/sleep", memory.SLEEP]
    bundle = make_bundle(work / "mem", "sleep", config)
    config["process"]["args"] = ["/bin/sleep", "600"]  # (killed when done)
    beside = make_bundle(work / "mem", "sleep-long", config)
    peak = {sc.name: median(sc.rss) for sc in scenarios}
    served = memory.served_worker(runner, work / "state" / "runner-served", bundle,
                                  server.pid, runs, f"{tag}-srv")
    clean = cgroup_cleanup(leaks, "memory")
    inits = {}
    if "runc" not in missing:
        inits["runc"] = memory.init_uss(["runc", "--root", str(work / "state" / "runc")],
                                        bundle, beside, runs, f"{tag}-runc", clean)
    if "crun" not in missing:
        inits["crun"] = memory.init_uss(_crun_wrapper(
            f'{shutil.which("crun")} --root {work / "state" / "crun"} "$@"') + ["sh"],
            bundle, beside, runs, f"{tag}-crun", clean)
    return "summary: " + memory.report(peak, served, inits)


# ------------------------------------------------------------------------------- profiling

def profile(work: Path) -> None:
    """Where a `runner run` spends its time: imports, syscalls, and a timeline."""
    bundle = work / "bundles" / "runner"
    root = work / "state" / "runner"
    env = dict(os.environ)

    def runner_argv(cid):
        return [RUNNER, "--root", str(root), "run", "--bundle", str(bundle), cid]

    # 1. imports
    # the checkout's bin/runner: the installed one is a program (csrc/launcher.c), which
    # python cannot be given as a script; both run bin/boot.py
    argv = runner_argv("prof-imp")
    argv[0] = str(REPO / "bin" / "runner")
    r = subprocess.run([PY, "-X", "importtime", *argv], env=env, capture_output=True, text=True)
    rows = []
    for line in r.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append((int(m[1]), int(m[2]), len(m[3]) // 2, m[4]))
    total = sum(s for s, _, _, _ in rows)
    print(f"\n== python -X importtime: {len(rows)} modules, {total / 1000:.1f} ms self time in all")
    print("top-level imports by cumulative time:")
    for self_us, cum, depth, name in sorted((x for x in rows if x[2] == 0),
                                            key=lambda x: -x[1])[:8]:
        print(f"  {cum / 1000:7.2f} ms  {name}")
    print("modules by self time:")
    for self_us, cum, depth, name in sorted(rows, key=lambda x: -x[0])[:10]:
        print(f"  {self_us / 1000:7.2f} ms  {name}")

    if ensure_packages("strace"):
        print("\nstrace is not available: no syscall profile")
        return

    # 2. syscall counts and time, whole tree
    out = work / "strace-c.txt"
    subprocess.run(["strace", "-f", "-c", "-S", "time", "-o", str(out), *runner_argv("prof-c")],
                   env=env, capture_output=True)
    lines = out.read_text().splitlines()
    print("\n== strace -f -c (top 12 by time; strace inflates every syscall)")
    print("\n".join(lines[:14] + lines[-2:]))

    # 3. timeline: phases from one strace -f -ttt -T trace
    out = work / "strace-T.txt"
    subprocess.run(["strace", "-f", "-ttt", "-T", "-o", str(out), *runner_argv("prof-t")],
                   env=env, capture_output=True)
    print_timeline(out.read_text().splitlines())


def print_timeline(lines: list) -> None:
    line_re = re.compile(r"^(\d+)\s+(\d+\.\d+) (\w+)\((.*?)(?:\) += (.*?))?(?: <(\d+\.\d+)>)?$")
    events = []
    for line in lines:
        m = line_re.match(line)
        if m:
            events.append((int(m[1]), float(m[2]), m[3], m[4], m[6]))
    if not events:
        return
    main_pid, t0 = events[0][0], events[0][1]
    t_end = max(e[1] for e in events)

    def first(pred):
        return next((e for e in events if pred(e)), None)

    marks = [
        ("interpreter start-up (execve → first libcontainer/runner import)", first(
            lambda e: e[2] in ("openat", "newfstatat", "stat") and
            ("/libcontainer" in e[3] or "/runner/" in e[3]) and "site-packages" not in e[3])),
        ("our imports (→ reading config.json)", first(
            lambda e: e[2] == "openat" and "config.json" in e[3])),
        ("parse + plan + state dir (→ clone)", first(
            lambda e: e[0] == main_pid and e[2] in ("clone", "clone3"))),
        ("container setup in the child (→ execve /bin/true)", first(
            lambda e: e[0] != main_pid and e[2] == "execve" and "/bin/true" in e[3])),
        ("run /bin/true, reap, clean up, exit", None),
    ]
    print("\n== timeline of one `runner run` under strace -f -ttt -T (ms; strace slows syscalls)")
    prev = t0
    for label, ev in marks:
        t = ev[1] if ev else t_end
        print(f"  {(t - prev) * 1000:7.2f}  {label}")
        prev = t
    print(f"  {(t_end - t0) * 1000:7.2f}  total")
    slow = sorted((e for e in events if e[4]), key=lambda e: -float(e[4]))[:10]
    print("slowest syscalls (strace -T):")
    for pid, t, name, args, dur in slow:
        who = "parent" if pid == main_pid else f"pid {pid}"
        print(f"  {float(dur) * 1000:7.2f}  {who:<10} {name}({args[:70]})")


# ------------------------------------------------------------------------------------ main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_RUNS", "30")))
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--profile", action="store_true",
                    default=os.environ.get("BENCH_PROFILE", "") not in ("", "0"))
    ap.add_argument("--tables", choices=("all", "cli", "inprocess"), default="all",
                    help="cli: table 1 only; inprocess: tables 2 and 3 only")
    ap.add_argument("--batch", type=int, default=int(os.environ.get("BENCH_BATCH", "100")),
                    help="containers per in-process batch")
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "5")),
                    help="in-process batches per runtime")
    ap.add_argument("--baseline", default=os.environ.get("BENCH_BASELINE", ""),
                    help="a git revision to time beside this tree (pip-installed the same way)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 1
    if not ROOTFS.is_dir():
        print(f"bench: {ROOTFS} is missing: run `make rootfs`", file=sys.stderr)
        return 1
    if ensure_packages("gcc", "libc6-dev"):
        print("bench: gcc is needed for the measuring helper", file=sys.stderr)
        return 1
    missing = ensure_packages("runc", "crun")
    for p in missing:
        print(f"bench: {p} could not be installed; leaving it out")

    compile_package()
    tag = f"bench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp"))
    # state roots on tmpfs, as /run is on a usual host (this VM's /run is ext4, where
    # creating and unlinking state files costs ms under load, for every runtime)
    shm = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/dev/shm"))
    (work / "state").symlink_to(shm)
    leaks: list = []
    server = None
    try:
        if args.tables in ("all", "cli"):
            print("bench: pip install . into a fresh venv …", flush=True)
            pip_runner = pip_install(work)
            scenarios = [scenario_runner(work, leaks, runner=pip_runner),
                         scenario_runner(work, leaks, name="runner (venv)")]
            scenarios[1].note = "make venv's .venv/bin/runner (the same launcher, editable install)"
            scenarios[0].note = "as `pip install .` installs it"
            if args.baseline:
                print(f"bench: pip install of {args.baseline} …", flush=True)
                baseline_runner = pip_install(work, args.baseline)
                scenarios.append(scenario_runner(work, leaks, runner=baseline_runner,
                                                 name=f"runner@{args.baseline}"))
                scenarios[-1].note = f"{args.baseline} as `pip install .` installs it"
            scenarios.insert(1, scenario_runner_served(work, leaks, pip_runner))
            server = start_warm_server(pip_runner, work / "state" / "runner-served")
            if "crun" not in missing:
                scenarios += [scenario_crun(work, leaks), scenario_crun_wrapper(), scenario_true()]
            if "runc" not in missing:
                scenarios.append(scenario_runc(work, leaks))
            scenarios += scenarios_with_resources(work, leaks, missing)
            scenarios += [scenario_floor(work), scenario_python()]
            print(f"bench: {len(scenarios)} scenarios, {args.warmup} warm-up + {args.runs} runs "
                  f"each, work dir {work}", flush=True)
            try:
                measure(build_helper(work), scenarios, args.runs, args.warmup, tag)
            except RunFailed as e:
                print(f"bench: run failed: {e}", file=sys.stderr)
                return 1
            report(scenarios, args.runs)
            print(memory_table(work, leaks, scenarios, pip_runner, server, missing, tag))
            print(cgroup_manager_cost(args.runs, tag))
            stale = stale_modules()
            if stale:
                print(f"warning: {', '.join(stale)} changed during the bench: runner's times "
                      "include compiling them")
            for name in sorted({name for name, _ in leaks}):
                dirs = [str(d) for n, d in leaks if n == name]
                print(f"note: {name} left {len(dirs)} cgroups behind (removed), e.g. {dirs[0]}")
            if args.profile:
                profile(work)
        if args.tables in ("all", "inprocess"):
            import throughput
            from libcontainer import jsonio

            try:
                baseline_py = ""
                if args.baseline:
                    runner = Path(pip_install(work, args.baseline)) if args.tables == \
                        "inprocess" else Path(baseline_runner)
                    baseline_py = str(runner.parent / "python3")
                lines = throughput.main(PY, str(REPO), ROOTFS, jsonio.dumps(bench_config()),
                                        None if "crun" in missing else shutil.which("crun"),
                                        tag, n=args.batch, rounds=args.rounds,
                                        baseline=(args.baseline, baseline_py))
            except throughput.Failed as e:
                print(f"bench: run failed: {e}", file=sys.stderr)
                return 1
            print("\nsummary: " + "\nsummary: ".join(lines))
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
        left = remove_cgroups(cgroups_named(tag + "-", exact=False))
        if left:
            print(f"bench: removed {len(left)} cgroups left behind: {left[0]} …")


if __name__ == "__main__":
    sys.exit(main())
