"""`make bench` (issue 21): the verbs an engine calls per container, and N containers at
once, for the runner (as `pip install .` installs it), runc and crun side by side, with
ratios from this one run.

    .venv/bin/python tests/bench/bench_scale.py [--rounds N] [--containers N]

Table 1, per verb (median of --rounds lifecycles, round-robin over the runtimes): create,
start, state, kill (SIGKILL), delete of a `sleep` container, and `run` of /bin/true.
Table 2, a population: N × `run -d sleep` (per container), memory per running container
(MemAvailable before and after the N, over N: the machine is shared, so this is the
noisiest row), `list` and `state` of one with N running (against the same with one
running: flat in N is the target), then `delete -f` of each (per container).

crun refuses this host's hybrid cgroups: every crun call runs as `unshare -m sh -c 'umount
/sys/fs/cgroup/unified; exec crun …'`, and the wrapper alone (with /bin/true) is timed
right after each crun call and its median taken off the verb's median. Times are wall time around the call from
this process (the same fork/exec cost for every runtime). Each run cleans up after
itself: every container deleted, cgroups of its ids checked and removed.
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

    def argv(self, *args: str) -> list:
        cmd = [self.exe, "--root", str(self.root), *args]
        if not self.wrapped:
            return cmd
        return bench._crun_wrapper('"$@"') + ["sh"] + cmd  # ($0, then crun's argv)

    def call(self, *args: str, verb: str = "", check: bool = True) -> bytes:
        # output to files, not pipes: a created container's init keeps the stdio it was
        # given, and a pipe would not reach EOF until it exits
        with tempfile.TemporaryFile(dir="/dev/shm") as out:
            t = time.perf_counter_ns()
            r = subprocess.run(self.argv(*args), stdin=subprocess.DEVNULL, stdout=out,
                               stderr=subprocess.STDOUT)
            dt = time.perf_counter_ns() - t
            out.seek(0)
            text = out.read()
        if check and r.returncode:
            raise RuntimeError(f"{self.name} {' '.join(args)}: exit {r.returncode}: "
                               f"{text.decode(errors='replace').strip()}")
        if verb:
            self.times.setdefault(verb, []).append(dt)
            if self.wrapped:  # the wrapper alone, at the same moment: taken off this verb
                t = time.perf_counter_ns()
                subprocess.run(bench._crun_wrapper("/bin/true"), check=True)
                self.times.setdefault(verb + " wrapper", []).append(time.perf_counter_ns() - t)
        return text


def wrapper_time(rounds: int) -> float:
    """The crun wrapper alone (unshare -m + umount + exec /bin/true), median ns."""
    xs = []
    for _ in range(rounds):
        t = time.perf_counter_ns()
        subprocess.run(bench._crun_wrapper("/bin/true"), check=True)
        xs.append(time.perf_counter_ns() - t)
    return bench.median(xs)


def mem_available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1])
    return 0


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


def population(rts: list, n: int, tag: str) -> None:
    for rt in rts:
        ids = [f"{tag}-p{rt.name[:4]}{i}" for i in range(n)]
        try:
            rt.call("run", "-d", "--bundle", str(rt.bundle / "sleep"), f"{tag}-one")
            for _ in range(5):
                rt.call("list", verb="list of 1")
                rt.call("state", f"{tag}-one", verb="state of 1")
            before = mem_available()
            for cid in ids:
                rt.call("run", "-d", "--bundle", str(rt.bundle / "sleep"), cid, verb="run -d")
            time.sleep(1)
            rt.times["memory"] = [(before - mem_available()) / n * 1024]  # bytes a container
            for _ in range(5):
                rt.call("list", verb=f"list of {n + 1}")
                rt.call("state", ids[n // 2], verb=f"state of {n + 1}")
            for cid in ids:
                rt.call("delete", "-f", cid, verb="delete -f")
        finally:
            for cid in ids + [f"{tag}-one"]:
                rt.call("delete", "-f", cid, check=False)
            bench.remove_cgroups(bench.cgroups_named(f"{tag}-", exact=False))


def table(rts: list, rows: list, wrapper_ns: float, unit: str = "ms") -> None:
    names = [rt.name for rt in rts]
    head = f"{'':<22}" + "".join(f"{n:>12}" for n in names)
    head += "".join(f"{'runner/' + n:>15}" for n in names[1:])
    print(head)
    for row in rows:
        vals = {}
        for rt in rts:
            xs = rt.times.get(row)
            if not xs:
                continue
            v = bench.median(xs)
            if rt.wrapped and row != "memory":
                v = max(v - bench.median(rt.times[row + " wrapper"]), 1.0)
            vals[rt.name] = v
        if not vals:
            continue
        fmt = (lambda v: f"{v / 1024:>9.0f} KiB") if row == "memory" else \
              (lambda v: f"{v / 1e6:>9.1f} ms")
        line = f"{row:<22}" + "".join(f"{fmt(vals[n]) if n in vals else '':>12}" for n in names)
        base = vals.get(names[0])
        for n in names[1:]:
            line += f"{(base / vals[n]) if base and vals.get(n) else float('nan'):>14.2f}x"
        print(line)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "15")))
    ap.add_argument("--containers", type=int,
                    default=int(os.environ.get("BENCH_CONTAINERS", "200")))
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_scale: needs root", file=sys.stderr)
        return 1
    missing = bench.ensure_packages("runc", "crun")
    tag = f"bs-{uuid.uuid4().hex[:6]}"
    work = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/tmp"))
    shm = Path(tempfile.mkdtemp(prefix=f"{tag}-", dir="/dev/shm"))
    try:
        print("bench_scale: pip install . into a fresh venv …", flush=True)
        runner = bench.pip_install(work)
        sleep_cfg = bench.bench_config()
        sleep_cfg["process"]["args"] = ["sleep", "100000"]
        rts = []
        for name, exe in (("runner", runner), ("runc", shutil.which("runc") or ""),
                          ("crun", shutil.which("crun") or "")):
            if name in missing or not exe:
                continue
            b = work / "bundles" / name
            bench.make_bundle(b, "true")
            bench.make_bundle(b, "sleep", sleep_cfg)
            rts.append(Runtime(name, exe, shm / name, b / "bundles", wrapped=name == "crun"))
        wrapper_ns = wrapper_time(args.rounds)
        print(f"\nper verb, median of {args.rounds} lifecycles, round-robin (crun: the "
              f"median of its wrapper alone, timed after each call, taken off; the wrapper "
              f"now: {wrapper_ns / 1e6:.1f} ms)")
        lifecycle(rts, args.rounds, tag)
        table(rts, ["create", "start", "state", "kill", "delete", "run"], wrapper_ns)
        n = args.containers
        print(f"\n{n} containers `run -d sleep`, one runtime after the other (list and state: "
              "median of 5)")
        population(rts, n, tag)
        table(rts, ["run -d", "memory", "list of 1", f"list of {n + 1}", "state of 1",
                    f"state of {n + 1}", "delete -f"], wrapper_ns)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)
        left = bench.remove_cgroups(bench.cgroups_named(tag + "-", exact=False))
        if left:
            print(f"bench_scale: removed {len(left)} cgroups left behind: {left[0]} …")


if __name__ == "__main__":
    sys.exit(main())
