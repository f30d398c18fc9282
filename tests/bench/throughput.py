"""`make bench`, tables 2 and 3: containers per second from one warm process.

- in-process: `libcontainer.run()` in a loop in one interpreter that has imported the package
  (cleanup "now", and "background": the delete overlapped with the next start), against a
  shell loop of `crun run` on the same config, and the floor: tests/bench/floor.c, the
  kernel's own cost of the same namespaces, mounts and cgroups with no runtime around it.
- concurrency: `libcontainer.run_many` with 1, 2, 4, 8 threads against as many `crun run`
  loops in parallel (and as many floor loops).

crun refuses this hybrid host's cgroups unless /sys/fs/cgroup/unified is unmounted in a
mount namespace of its own: every crun loop runs inside one `unshare -m` wrapper and its
clock starts inside it, so the wrapper's cost is not in the numbers. Each measurement is a
batch of N containers; batches of the runtimes alternate, R rounds, and the median is
reported. State roots are on tmpfs (/dev/shm), as /run is on a usual host (here /run is
ext4, where a state file's create/unlink costs 0.4-4 ms under load, for every runtime).
Every run's exit status is checked: a failed container fails the bench.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Runs in a fresh venv interpreter: imports first (not timed), a warm-up, then N containers.
WORKER = r"""
import os, resource, sys, time
if sys.argv[1]:
    sys.path.insert(0, sys.argv[1])
import libcontainer
bundle, root, n, mode, workers, tag = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), sys.argv[7]
null = os.open("/dev/null", os.O_RDWR)
io = (null, null, null)
kw = {} if mode == "now" else {"cleanup": mode}  # (an older libcontainer has no cleanup)
for i in range(3):
    assert libcontainer.run(bundle, f"{tag}-w{i}", root=root, stdio=io) == 0
def cpu():
    return sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                   resource.getrusage(resource.RUSAGE_CHILDREN)))
c0 = cpu()
t0 = time.perf_counter()
if workers == 0:
    bad = 0
    for i in range(n):
        bad += libcontainer.run(bundle, f"{tag}-{i}", root=root, stdio=io, **kw) != 0
    if kw:
        libcontainer.wait_cleanup()
else:
    res = libcontainer.run_many([(bundle, f"{tag}-{i}") for i in range(n)], workers=workers,
                                root=root, stdio=io)
    bad = sum(r != 0 for r in res)
dt = time.perf_counter() - t0
print(n / dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, bad, (cpu() - c0) / n * 1000)
"""

# n containers per loop, `loops` loops at once; prints "ns failures"
CRUN_LOOPS = r"""
if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified || exit 125; fi
crun=$1 root=$2 bundle=$3 n=$4 loops=$5 tag=$6 out=$7
start=$(date +%s%N)
l=0
while [ $l -lt $loops ]; do
    ( i=0; f=0
      while [ $i -lt $n ]; do
          "$crun" --root "$root" run --bundle "$bundle" "$tag-$l-$i" </dev/null >/dev/null 2>&1 || f=$((f+1))
          i=$((i+1))
      done
      echo $f > "$out.$l" ) &
    l=$((l+1))
done
wait
end=$(date +%s%N)
echo $((end - start)) $(cat "$out".* | awk '{s+=$1} END {print s+0}')
"""


def build_floor(work: Path) -> str:
    exe = work / "floor-bin"
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "floor.c")], check=True)
    return str(exe)


def cgroup_args() -> tuple:
    """The floor's cgroups: one directory per hierarchy (as the runner makes), entered like
    the runner's (v1 by the child, v2 by clone3); and the /sys/fs/cgroup binds."""
    sys.path.insert(0, str(HERE.parents[1]))
    from libcontainer import cgroups

    host = cgroups.detect()
    parents = list(dict.fromkeys(host.v1.values()))
    if host.unified:
        parents.append(host.unified)
    binds = [str(p) for p in sorted(Path("/sys/fs/cgroup").iterdir())
             if p.is_dir() and not p.is_symlink()]
    return parents, binds


class Batch:
    def __init__(self, name: str, note: str, run):
        self.name, self.note, self.run = name, note, run
        self.rates: list = []
        self.rss: list = []
        self.cpu: list = []  # CPU ms (user+sys) a container: what the load does not stretch


def median(xs: list) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


class Failed(Exception):
    pass


def runner_batch(py: str, repo: str, bundle: str, root: str, n: int, mode: str, workers: int):
    def run(tag: str):
        r = subprocess.run([py, "-c", WORKER, repo, bundle, root, str(n), mode, str(workers), tag],
                           capture_output=True, text=True, timeout=600)
        try:
            rate, rss, bad, cpu = r.stdout.split()
        except ValueError:
            raise Failed(f"libcontainer.run ({mode}, {workers} workers): {r.stderr.strip()}")
        if r.returncode or int(bad):
            raise Failed(f"libcontainer.run: {bad} of {n} containers failed\n{r.stderr}")
        return float(rate), int(rss), float(cpu)
    return run


def crun_batch(crun: str, work: Path, bundle: str, root: str, n: int, loops: int):
    def run(tag: str):
        out = work / f"crun-{tag}"
        cmd = ["sh", "-c", CRUN_LOOPS, "crun-loops", crun, root, bundle, str(n), str(loops), tag,
               str(out)]
        if os.path.ismount("/sys/fs/cgroup/unified"):
            cmd = ["unshare", "-m", "--propagation", "private"] + cmd
        c0 = children_cpu()
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        cpu = (children_cpu() - c0) / (n * loops) * 1000
        for f in work.glob(f"crun-{tag}.*"):
            f.unlink()
        try:
            ns, bad = map(int, r.stdout.split())
        except ValueError:
            raise Failed(f"crun loops: {r.stderr.strip()}")
        if r.returncode or bad:
            raise Failed(f"crun run: {bad} of {n * loops} containers failed")
        return n * loops / (ns / 1e9), 0, cpu
    return run


def children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def floor_batch(floor: str, rootfs: str, n: int, loops: int, cgroups: bool, mounts: bool,
                cg_parents: list, binds: list):
    def run(tag: str):
        args = [floor, str(n), rootfs]
        if mounts:
            args.append("-M")
            for b in binds:
                args += ["-b", b]
        if cgroups:
            for p in cg_parents:
                args += ["-c", p]
        import time
        t0, c0 = time.perf_counter(), children_cpu()
        procs = [subprocess.Popen(args + ["-p", f"{tag}-{l}"], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for l in range(loops)]
        for p in procs:
            out, err = p.communicate(timeout=600)
            if p.returncode:
                raise Failed(f"floor: {err.strip()}")
        return (n * loops / (time.perf_counter() - t0), 0,
                (children_cpu() - c0) / (n * loops) * 1000)
    return run


def measure(batches: list, rounds: int, tag: str) -> None:
    for r in range(rounds):
        for k in range(len(batches)):
            b = batches[(r + k) % len(batches)]
            rate, rss, cpu = b.run(f"{tag}-{r}-{k}")
            b.rates.append(rate)
            b.rss.append(rss)
            b.cpu.append(cpu)


def main(py: str, repo: str, rootfs_src: Path, config_json: str, crun: str | None,
         tag: str, n: int = 100, rounds: int = 5, concurrency=(1, 2, 4, 8),
         baseline: tuple = ("", "")) -> list:
    """Run both tables; → the summary lines. `baseline`: (revision, the python of a venv it
    is pip-installed in), timed in table 2 beside this tree."""
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-tp-", dir="/tmp"))
    shm = Path(tempfile.mkdtemp(prefix=f"{tag}-tp-", dir="/dev/shm"))
    summary = []
    try:
        bundles = {}
        for name in ("runner", "crun", "floor"):
            b = work / name
            b.mkdir()
            subprocess.run(["cp", "-a", str(rootfs_src), str(b / "rootfs")], check=True)
            (b / "config.json").write_text(config_json)
            bundles[name] = str(b)
        floor = build_floor(work)
        cg_parents, binds = cgroup_args()
        rb, cb, fb = bundles["runner"], bundles["crun"], bundles["floor"] + "/rootfs"
        rroot, croot = str(shm / "runner"), str(shm / "crun")

        # ---- table 2: one process, one container after another
        t2 = [Batch("libcontainer.run()", "cleanup='now' (default)",
                    runner_batch(py, repo, rb, rroot, n, "now", 0)),
              Batch("libcontainer.run()", "cleanup='background'",
                    runner_batch(py, repo, rb, rroot, n, "background", 0))]
        if baseline[0]:
            t2.append(Batch(f"run() @{baseline[0]}", "as pip installs that revision",
                            runner_batch(baseline[1], "", rb, rroot, n, "now", 0)))
        if crun:
            t2.append(Batch("crun run", "a shell loop, inside the unshare wrapper",
                            crun_batch(crun, work, bundles["crun"], croot, n, 1)))
        t2 += [Batch("floor", "clone3 (5 namespaces) + exec /bin/true",
                     floor_batch(floor, fb, n, 1, False, False, cg_parents, binds)),
               Batch("floor", "+ the default config's mounts, pivot_root",
                     floor_batch(floor, fb, n, 1, False, True, cg_parents, binds)),
               Batch("floor", "+ a cgroup in every hierarchy (mkdir, join, rmdir)",
                     floor_batch(floor, fb, n, 1, True, True, cg_parents, binds))]
        print(f"\n== in-process: containers/s from one warm process ({rounds} rounds of {n} "
              "containers, median)", flush=True)
        measure(t2, rounds, f"{tag}-s")
        crun_rate = median(next(b for b in t2 if b.name == "crun run").rates) if crun else 0
        # CPU time a container (user+sys of the runtime and everything it ran; the kernel's
        # work in its own threads, a network namespace's cleanup, is nobody's): on a loaded
        # machine the wall-time rate measures the load as much as the runtime
        crun_cpu = median(next(b for b in t2 if b.name == "crun run").cpu) if crun else 0
        print(f"{'':<22}{'':<52}{'/s':>8}{'ms each':>9}{'/ crun':>8}{'CPU ms':>8}{'crun/':>7}")
        for b in t2:
            rate, cpu = median(b.rates), median(b.cpu)
            vs = f"{rate / crun_rate:7.2f}x" if crun_rate else ""
            cvs = f"{crun_cpu / cpu:6.2f}x" if crun_cpu and cpu else ""
            print(f"{b.name[:21]:<22}{b.note:<52}{rate:8.1f}{1000 / rate:9.2f}{vs:>8}"
                  f"{cpu:8.2f}{cvs:>7}")
        rss = max(t2[0].rss) / 1024
        print(f"peak RSS of the process running them: {rss:.1f} MiB")
        now, bg = median(t2[0].rates), median(t2[1].rates)
        if crun:
            summary.append(f"in-process CPU a container: run() {median(t2[0].cpu):.2f} ms, "
                           f"crun {crun_cpu:.2f} ms: crun/run() = "
                           f"{crun_cpu / median(t2[0].cpu):.2f}x")
        floor_all = median(t2[-1].rates)
        vs = (lambda r: f" = {r / crun_rate:.2f}x crun") if crun else (lambda r: "")
        summary.append(f"in-process run(): {now:.0f}/s (cleanup now){vs(now)}, "
                       f"{bg:.0f}/s (background){vs(bg)}" +
                       (f"; crun loop {crun_rate:.0f}/s" if crun else "") +
                       f"; floor {floor_all:.0f}/s ({1000 / floor_all:.2f} ms, we are at "
                       f"{floor_all / max(now, bg):.1f}x it); peak RSS {rss:.1f} MiB")

        # ---- table 3: threads against parallel loops
        t3 = []
        for w in concurrency:
            per = max(n // w, 5)
            row = [Batch(f"run_many x{w}", "", runner_batch(py, repo, rb, rroot, per * w,
                                                           "background", w))]
            if crun:
                row.append(Batch(f"crun x{w}", "", crun_batch(crun, work, bundles["crun"], croot,
                                                             per, w)))
            row.append(Batch(f"floor x{w}", "", floor_batch(floor, fb, per, w, True, True,
                                                           cg_parents, binds)))
            t3.append((w, row))
        print(f"\n== concurrency: containers/s, N threads of run_many vs N parallel loops "
              f"({rounds} rounds, median)", flush=True)
        measure([b for _, row in t3 for b in row], rounds, f"{tag}-c")
        print(f"{'workers':>8}{'run_many':>10}{'crun':>8}{'floor':>8}{'vs crun':>9}")
        parts = []
        for w, row in t3:
            rates = [median(b.rates) for b in row]
            r_, c_ = rates[0], (rates[1] if crun else 0)
            vs = f"{r_ / c_:8.2f}x" if c_ else ""
            print(f"{w:>8}{r_:10.1f}{(f'{c_:.1f}' if c_ else '-'):>8}{rates[-1]:8.1f}{vs:>9}")
            parts.append(f"{w}: {r_:.0f}" + (f"/{c_:.0f}" if c_ else ""))
        summary.append("concurrency run_many/crun per s: " + ", ".join(parts))
        return summary
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


if __name__ == "__main__":
    sys.exit("run through tests/bench/bench.py")
