"""`make bench` (daemon): the same docker CLI (Debian's docker.io 20.10) and the same image
against `runner daemon`, dockerd (+ containerd + shim + runc) and `podman system service`
(+ conmon + runc), each on private paths in a throw-away network namespace:

  - `docker run --rm --network none IMAGE true`, one at a time: median and p90 wall time;
  - N × `docker run -d IMAGE sleep 1000`, then `docker rm -f` of all N: wall time of each phase
    (each container's run and rm round-robin across the daemons);
  - memory of what stays per running container: runner-monitor vs containerd-shim-runc-v2
    vs conmon (PSS from /proc/PID/smaps_rollup, averaged over the N containers).

    .venv/bin/python tests/bench/bench_daemon.py [--runs N] [--containers N] [--no-podman]

Runs alternate between the daemons, so load on the machine falls on all alike. Ratios are
X / dockerd (below 1: faster or smaller). Nothing is asserted."""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from daemonkit import IMAGE, Dockerd, PodmanService, RunnerDaemon, busybox_archive, daemon_netns  # noqa: E402


def pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_named(name: str) -> list:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/comm") as f:
                    if f.read().strip() == name[:15]:
                        out.append(int(p))
            except OSError:
                pass
    return out


MONITOR = {"runner": "runner-monitor", "dockerd": "containerd-shim-runc-v2", "podman": "conmon"}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--containers", type=int, default=100)
    ap.add_argument("--no-podman", action="store_true")
    a = ap.parse_args()
    pid = os.getpid()
    kinds = [("runner", RunnerDaemon), ("dockerd", Dockerd)]
    if not a.no_podman and shutil.which("podman") and shutil.which("conmon"):
        kinds.append(("podman", PodmanService))
    daemons, nss = {}, []
    archive = busybox_archive(f"/tmp/bench-daemon-{pid}.tar")
    try:
        for kind, cls in kinds:
            ns = daemon_netns()
            nss.append(ns)
            d = cls(f"/tmp/bd-{kind[:2]}-{pid}", netns=ns.path)
            d.start()
            daemons[kind] = d
            d.docker("load", "-i", archive, check=True)
            d.docker("run", "--rm", "--network", "none", IMAGE, "true", check=True)  # warm
        times = {k: [] for k in daemons}
        for _ in range(a.runs):
            for k, d in daemons.items():
                t = time.perf_counter()
                d.docker("run", "--rm", "--network", "none", IMAGE, "true", check=True)
                times[k].append(time.perf_counter() - t)
        print("docker run --rm --network none IMAGE true (one at a time)")
        base = statistics.median(times["dockerd"])
        for k, ts in times.items():
            ts.sort()
            med = statistics.median(ts)
            p90 = ts[int(len(ts) * 0.9) - 1]
            print(f"  {k:8s} median {med * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  ratio {med / base:.2f}")
        print(f"\n{a.containers} x docker run -d IMAGE sleep 1000, then docker rm -f of each")
        # round-robin, one container at a time per daemon: load on the machine falls on all alike
        before = {k: set(children_named(MONITOR[k])) for k in daemons}
        up = {k: 0.0 for k in daemons}
        down = dict(up)
        ids: dict = {k: [] for k in daemons}
        for _ in range(a.containers):
            for k, d in daemons.items():
                t = time.perf_counter()
                ids[k].append(d.docker("run", "-d", "--network", "none", IMAGE, "sleep", "1000",
                                       check=True).stdout.strip())
                up[k] += time.perf_counter() - t
        mem = {}
        for k in daemons:
            mons = [p for p in children_named(MONITOR[k]) if p not in before[k]]
            mem[k] = (sum(pss_kb(p) for p in mons) / max(len(ids[k]), 1), len(mons))
        for i in range(a.containers):
            for k, d in daemons.items():
                t = time.perf_counter()
                d.docker("rm", "-f", ids[k][i], check=True)
                down[k] += time.perf_counter() - t
        for k in daemons:
            bu, bd = up["dockerd"], down["dockerd"]
            print(f"  {k:8s} run -d {up[k]:6.1f} s (ratio {up[k] / bu:.2f})   rm -f {down[k]:6.1f} s "
                  f"(ratio {down[k] / bd:.2f})")
        print("\nmemory per running container of what stays with it (PSS)")
        for k, (kb, n) in mem.items():
            print(f"  {k:8s} {MONITOR[k]:24s} {kb:8.0f} KiB/container ({n} processes)"
                  f"  ratio {kb / max(mem['dockerd'][0], 1):.2f}")
    finally:
        for d in daemons.values():
            d.cleanup()
        for ns in nss:
            ns.close()
        os.unlink(archive)
    return 0


if __name__ == "__main__":
    sys.exit(main())
