"""`make bench` (issue 21): the verbs an engine calls per container, and N containers at
once, for the runner (as `pip install .` installs it), runc and crun side by side, with
ratios from this one run.

    .venv/bin/python tests/bench/bench_scale.py [--rounds N] [--containers N[,N…]] [--api]
    .venv/bin/python tests/bench/bench_scale.py --rounds 0 --containers 1000,3000 --api

The runner twice: plain (each call an interpreter) and `runner warm` (a `runner
warm-server` on its state root, which the launcher hands the verbs that make no process:
runner/warm.py; create and run too, with the clone in the caller: runner/warm_spawn.py).

Table 1, per verb (median of --rounds lifecycles, round-robin over the runtimes): create,
start, state, kill (SIGKILL), delete of a `sleep` container, and `run` of /bin/true.
Table 2, a population: N × `run -d sleep` (per container), memory per running container
(MemAvailable before and after the N, over N: the machine is shared, so this is the
noisiest row), `list` and `state` of one with N running (against the same with one
running: flat in N is the target), then `delete -f` of each (per container). Several
sizes (`--containers 1000,3000`) give a table each; `--rounds 0` skips table 1. `--api`
adds "runner API": the same through `libcontainer` in this process (`run(detach=True)`,
`list_containers`, `load(id).state()`, `load(id).delete(force=True)`): no interpreter
start-up per call.

Each time is printed twice: wall time, and below it CPU time (user + sys of the command
and all it ran, `getrusage` of the children around the call; in the bench process for the
API), which a loaded machine stretches far less (crun's wrapper taken off both).

Where the memory goes, beside MemAvailable: the kernel's own counters over N (slab,
per-cpu, kernel stacks, page tables, shmem), what one container keeps (processes and their
PSS, its state files, cgroup directories, mounts in its namespace), sampled on a few
containers. A run that fails stops that runtime's population there: the table says after
how many containers and prints the error the user saw (that is the point of 3000: where
the kernel or the machine stops us).

crun refuses this host's hybrid cgroups: every crun call runs as `unshare -m sh -c 'umount
/sys/fs/cgroup/unified; exec crun …'`. What the wrapper adds is taken off: right after
each crun call the wrapper alone (with /bin/true) and /bin/true alone are timed, and the
difference of their medians (unshare, sh and umount: not the spawn of a command, which
every column pays) is taken off the verb's median. (Taking the whole wrapper off, as
earlier runs did, took crun's own spawn off too: its column came out below `/bin/true`.)
Times are wall time around the call from this process (the same fork/exec cost for every
runtime). Each run cleans up after itself: every container deleted, cgroups of its ids
checked and removed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  (the bundle, pip-install and cgroup helpers)


class Runtime:
    def __init__(self, name: str, exe: str, root: Path, bundle: Path, wrapped: bool = False):
        self.name, self.exe, self.root, self.bundle, self.wrapped = (name, exe, root, bundle,
                                                                      wrapped)
        self.times: dict = {}
        self.server_log = None  # runner warm: its server's --debug log (the workers' CPU)

    def server_cpu(self) -> int:
        """The CPU time the warm server's worker reported for the last call, ns."""
        if self.server_log is None:
            return 0
        took = [line for line in self.server_log.read().splitlines() if " ms CPU" in line]
        return int(float(took[-1].split(" took ")[1].split()[0]) * 1e6) if took else 0

    def argv(self, *args: str) -> list:
        cmd = [self.exe, "--root", str(self.root), *args]
        if not self.wrapped:
            return cmd
        return bench._crun_wrapper('"$@"') + ["sh"] + cmd  # ($0, then crun's argv)

    def call(self, *args: str, verb: str = "", check: bool = True) -> bytes:
        # output to files, not pipes: a created container's init keeps the stdio it was
        # given, and a pipe would not reach EOF until it exits
        with tempfile.TemporaryFile(dir="/dev/shm") as out:
            c, t = cpu_ns(), time.perf_counter_ns()
            r = subprocess.run(self.argv(*args), stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT)
            dt, dc = time.perf_counter_ns() - t, cpu_ns() - c + self.server_cpu()
            out.seek(0)
            text = out.read()
        if check and r.returncode:
            raise RuntimeError(f"{self.name} {' '.join(args)}: exit {r.returncode}: "
                               f"{text.decode(errors='replace').strip()}")
        if verb:
            self.times.setdefault(verb, []).append(dt)
            self.times.setdefault(verb + " CPU", []).append(dc)
            if self.wrapped:  # the wrapper alone, at the same moment: taken off this verb
                for key, cmd in ((" wrapper", bench._crun_wrapper("/bin/true")),
                                 (" true", ["/bin/true"])):
                    c, t = cpu_ns(), time.perf_counter_ns()
                    subprocess.run(cmd, stdin=subprocess.DEVNULL, check=True)
                    self.times.setdefault(verb + key, []).append(time.perf_counter_ns() - t)
                    self.times.setdefault(verb + " CPU" + key, []).append(cpu_ns() - c)
        return text


def cpu_ns() -> int:
    """User + sys of this process and of every child it waited for, ns: a command's CPU
    time is the difference around it (the load stretches wall time, not this)."""
    import resource

    return int(sum(r.ru_utime + r.ru_stime for r in (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN))) * 1e9)


def start_warm_server(runner: str, root: Path, rt: Runtime) -> subprocess.Popen:
    """`runner warm-server` for the `runner warm` column's state root (runner/warm.py).
    Its CPU rows add what the server's worker reports for each call (--debug: the CPU
    time of the worker since its fork) to the launcher's."""
    log = tempfile.TemporaryFile(mode="w+", dir="/dev/shm")
    rt.server_log = open(f"/proc/self/fd/{log.fileno()}")
    return bench.start_warm_server(runner, root, log, debug=True)


def wrapper_time(rounds: int) -> float:
    """The crun wrapper alone (unshare -m + umount + exec /bin/true), median ns."""
    xs = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        subprocess.run(bench._crun_wrapper("/bin/true"), check=True)
        xs.append(time.perf_counter_ns() - t)
    return bench.median(xs)


MEMINFO = ("MemAvailable", "Slab", "SUnreclaim", "Percpu", "KernelStack", "PageTables",
           "Shmem", "AnonPages")


def meminfo() -> dict:
    """/proc/meminfo's fields that a container's kernel objects move, in KiB."""
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":", 1)
            if k in MEMINFO:
                out[k] = int(v.split()[0])
    return out


def mem_available() -> int:
    return meminfo()["MemAvailable"]


def lifecycle(rts: list, rounds: int, tag: str) -> None:
    n = 0
    for rnd in range(rounds + 1):  # round 0 warms up
        for k in range(len(rts)):
            rt = rts[(rnd + k) % len(rts)]
            n += 1
            cid = f"{tag}-v{n}"
            verb = (lambda v: v) if rnd else (lambda v: "")
            try:
                rt.call("create", "--bundle", str(rt.bundle / "sleep"), cid, verb=verb("create"))
                rt.call("start", cid, verb=verb("start"))
                rt.call("state", cid, verb=verb("state"))
                rt.call("kill", cid, "KILL", verb=verb("kill"))
                for _ in range(200):  # the init reaped by its parent: stopped
                    if b'"stopped"' in rt.call("state", cid):
                        break
                    time.sleep(0.005)
                rt.call("delete", cid, verb=verb("delete"))
                rt.call("run", "--bundle", str(rt.bundle / "true"), f"{cid}r", verb=verb("run"))
            finally:
                rt.call("delete", "-f", cid, check=False)
                rt.call("delete", "-f", f"{cid}r", check=False)
                bench.remove_cgroups(bench.cgroups_named(cid, exact=False))


class ApiRuntime(Runtime):
    """The runner through `libcontainer` in this process: each verb is a call, no exec."""

    def __init__(self, root: Path, bundle: Path):
        super().__init__("runner API", "", root, bundle)
        import libcontainer

        self.lc = libcontainer
        self.null = os.open("/dev/null", os.O_RDWR)

    def call(self, *args: str, verb: str = "", check: bool = True) -> bytes:
        lc, root = self.lc, str(self.root)
        c, t = cpu_ns(), time.perf_counter_ns()
        try:
            if args[0] == "run":  # run -d --bundle B ID
                lc.run(args[3], args[4], root=root, detach=True,
                       stdio=(self.null, self.null, self.null))
                out = b""
            elif args[0] == "list":
                out = " ".join(c.id for c in lc.list_containers(root)).encode()
            elif args[0] == "state":
                out = lc.load(args[1], root).state()["status"].encode()
            elif args[0] == "delete":  # delete -f ID
                lc.load(args[-1], root).delete(force=True)
                out = b""
            else:
                raise ValueError(args[0])
        except Exception as e:
            if check:
                raise RuntimeError(f"{self.name} {' '.join(args)}: {type(e).__name__}: {e}") \
                    from None
            return b""
        if verb:
            self.times.setdefault(verb, []).append(time.perf_counter_ns() - t)
            self.times.setdefault(verb + " CPU", []).append(cpu_ns() - c)
        return out


def footprint(rt: Runtime, cid: str) -> dict:
    """What one running container keeps: the processes in its pids cgroup (the container's
    and any helper the runtime left beside it there) and their PSS, the processes outside it
    whose parent is one of them or that name the id, its state files, its cgroup
    directories, the mounts in its mount namespace."""
    dirs = bench.cgroups_named(cid) + bench.cgroups_named(f"runner-{cid}")  # ours: runner-<id>
    out = {"cgroups": len(dirs)}
    pids = set()
    for d in dirs:
        try:
            pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
        except OSError:
            pass
    pss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
            out["mounts"] = len(Path(f"/proc/{pid}/mountinfo").read_text().splitlines())
        except OSError:
            pass
    out["procs"], out["pss"] = len(pids), pss
    # a helper outside the container that stays for it (a monitor, a shim): its argv names
    # the id, or its parent is the container's init
    helpers = 0
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) in pids:
            continue
        try:
            argv = (p / "cmdline").read_bytes().split(b"\0")
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if cid.encode() in argv or ppid in pids:
            helpers += 1
    out["helpers"] = helpers
    state = rt.root / cid
    files = [f for f in state.rglob("*") if f.is_file()] if state.is_dir() else []
    out["state files"] = len(files)
    out["state KiB"] = sum(-(-f.stat().st_size // 4096) * 4 for f in files)  # tmpfs pages
    return out


def population(rts: list, n: int, tag: str, samples: int = 3) -> dict:
    """→ {runtime name: (containers started, the error that stopped it or "", footprints,
    meminfo deltas over the containers started)}"""
    found = {}
    for rt in rts:
        ids = [f"{tag}-p{rt.name[:4].strip()}{rt.name[-3:].strip()}{n}x{i}" for i in range(n)]
        one = f"{tag}-one{n}"
        started, error = 0, ""
        try:
            rt.call("run", "-d", "--bundle", str(rt.bundle / "sleep"), one)
            for _ in range(5):
                rt.call("list", verb="list of 1")
                rt.call("state", one, verb="state of 1")
            before = meminfo()
            for i, cid in enumerate(ids):
                progress(f"{rt.name}: run -d {i + 1}/{n}")
                try:
                    rt.call("run", "-d", "--bundle", str(rt.bundle / "sleep"), cid,
                            verb="run -d")
                except RuntimeError as e:
                    error = str(e)
                    break
                started += 1
            progress("")
            time.sleep(1)
            after = meminfo()
            delta = {k: (before[k] - after[k] if k == "MemAvailable" else after[k] - before[k])
                     / max(started, 1) for k in before}
            rt.times["memory"] = [delta["MemAvailable"] * 1024]  # bytes a container
            prints = [footprint(rt, ids[j * started // samples]) for j in range(samples)
                      if started]
            for _ in range(5):
                rt.call("list", verb=f"list of {n + 1}")
                if started:
                    rt.call("state", ids[started // 2], verb=f"state of {n + 1}")
            for i, cid in enumerate(ids[:started]):
                progress(f"{rt.name}: delete -f {i + 1}/{started}")
                rt.call("delete", "-f", cid, verb="delete -f")
            progress("")
            found[rt.name] = (started, error, prints, delta)
        finally:
            for cid in ids[started:] + [one]:
                rt.call("delete", "-f", cid, check=False)
            for i, cid in enumerate(ids[:started]):
                if (rt.root / cid).exists():
                    rt.call("delete", "-f", cid, check=False)
            for prefix in (f"{tag}-", f"runner-{tag}-"):
                bench.remove_cgroups(bench.cgroups_named(prefix, exact=False))
    return found


def report_population(found: dict, n: int) -> None:
    for name, (started, error, prints, delta) in found.items():
        if started < n:
            print(f"  {name}: stopped after {started} of {n} containers: {error.strip()}")
    print(f"  per running container, kernel counters over the containers started (KiB): "
          f"{'  '.join(k for k in MEMINFO[1:])}")
    for name, (started, error, prints, delta) in found.items():
        print(f"    {name:<12}" + "  ".join(f"{k}={delta[k]:.1f}" for k in MEMINFO[1:]))
    print("  what one container keeps (median of a few sampled):")
    for name, (started, error, prints, delta) in found.items():
        if prints:
            keys = prints[0].keys()
            med = {k: sorted(p.get(k, 0) for p in prints)[len(prints) // 2] for k in keys}
            print(f"    {name:<12}" + ", ".join(f"{k} {v}" for k, v in med.items()))


def progress(msg: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\033[K{msg}")
        sys.stderr.flush()


def table(rts: list, rows: list, wrapper_ns: float, unit: str = "ms") -> None:
    """Medians side by side, and each runner's (the CLI's, the API's) ratio to each peer."""
    names = [rt.name for rt in rts]
    ours = [n for n in names if n.startswith("runner")]
    pairs = [(a, b) for a in ours for b in names if b not in ours]
    head = f"{'':<22}" + "".join(f"{n:>12}" for n in names)
    head += "".join(f"{(a.replace('runner ', '') + '/' + b):>15}" for a, b in pairs)
    print(head)
    for row in rows:
        vals = {}
        for rt in rts:
            xs = rt.times.get(row)
            if not xs:
                continue
            v = bench.median(xs)
            if rt.wrapped and row != "memory":
                # what the wrapper adds over a plain spawn; at or below it, the call is
                # lost in the wrapper's noise: no number (a 1 ns floor made ratios of
                # millions)
                v = v - (bench.median(rt.times[row + " wrapper"]) -
                         bench.median(rt.times[row + " true"]))
                v = v if v > 0 else None
            vals[rt.name] = v
        if not vals:
            continue
        fmt = (lambda v: f"{v / 1024:>9.0f} KiB") if row == "memory" else \
              (lambda v: f"{v / 1e6:>9.1f} ms" if v is not None else "   (noise)")
        line = f"{row:<22}" + "".join(f"{fmt(vals[n]) if n in vals else '':>12}" for n in names)
        for a, b in pairs:
            r = vals[a] / vals[b] if vals.get(a) and vals.get(b) else float("nan")
            line += f"{r:>14.2f}x"
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "15")))
    ap.add_argument("--containers", default=os.environ.get("BENCH_CONTAINERS", "200"),
                    help="population sizes, comma-separated (a table each)")
    ap.add_argument("--api", action="store_true",
                    help="the population also through the Python API, in this process")
    args = ap.parse_args()
    sizes = [int(x) for x in args.containers.split(",") if x.strip()]
    if os.geteuid() != 0:
        print("bench_scale: needs root", file=sys.stderr)
        return 1
    missing = bench.ensure_packages("runc", "crun")
    tag = f"bs-{uuid.uuid4().hex[:6]}"
    warm = None
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp"))
    shm = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/dev/shm"))
    try:
        print("bench_scale: pip install . into a fresh venv …", flush=True)
        runner = bench.pip_install(work)
        sleep_cfg = bench.bench_config()
        sleep_cfg["process"]["args"] = ["sleep", "100000"]
        rts = []
        for name, exe in (("runner", runner), ("runner warm", runner),
                          ("runc", shutil.which("runc") or ""),
                          ("crun", shutil.which("crun") or "")):
            if name in missing or not exe:
                continue
            b = work / "bundles" / name.replace(" ", "-")
            bench.make_bundle(b, "true")
            bench.make_bundle(b, "sleep", sleep_cfg)
            rts.append(Runtime(name, exe, shm / name.replace(" ", "-"), b / "bundles",
                               wrapped=name == "crun"))
        warm = start_warm_server(runner, shm / "runner-warm",
                                 next(rt for rt in rts if rt.name == "runner warm"))
        wrapper_ns = wrapper_time(max(args.rounds, 10))
        if args.rounds:
            print(f"\nper verb, median of {args.rounds} lifecycles, round-robin (crun: what "
                  f"its wrapper adds over /bin/true, both timed after each call, taken off; "
                  f"the wrapper alone now: {wrapper_ns / 1e6:.1f} ms)")
            lifecycle(rts, args.rounds, tag)
            verbs = ["create", "start", "state", "kill", "delete", "run"]
            table(rts, verbs + [v + " CPU" for v in verbs], wrapper_ns)
        if args.api:
            b = work / "bundles" / "api"
            bench.make_bundle(b, "sleep", sleep_cfg)
            rts.insert(1, ApiRuntime(shm / "api", b / "bundles"))
        for n in sizes:
            for rt in rts:
                rt.times = {}
            with open("/proc/loadavg") as f:
                load = " ".join(f.read().split()[:3])
            print(f"\n{n} containers `run -d sleep`, one runtime after the other (list and "
                  f"state: median of 5; load average {load})")
            found = population(rts, n, f"{tag}{n}")
            rows = ["run -d", "list of 1", f"list of {n + 1}", "state of 1",
                    f"state of {n + 1}", "delete -f"]
            table(rts, rows[:1] + ["memory"] + rows[1:] + [r + " CPU" for r in rows],
                  wrapper_ns)
            report_population(found, n)
        return 0
    finally:
        if warm is not None:
            warm.terminate()
            warm.wait()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
        left = bench.remove_cgroups(bench.cgroups_named(tag + "-", exact=False))
        if left:
            print(f"bench_scale: removed {len(left)} cgroups left behind: {left[0]} …")


if __name__ == "__main__":
    sys.exit(main())
