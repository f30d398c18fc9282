"""`make bench`, sandbox: serial `box.run(["true"])` from one warm Sandbox (each run a fresh
container over a fresh overlay, with cgroup limits, seccomp, no network, the shim's init),
side by side in one run with a bubblewrap loop on the same rootfs (namespaces only: no
cgroup, no limits, no overlay), with the library's own floor, `libcontainer.run` of a plain
bundle, and with the CLI, a `runner run` loop of that bundle; then the same Sandbox from 2
and 4 threads and from asyncio. Batches alternate, R rounds, the median is reported, as
runs a second and as the sandbox's ratio to each (on a loaded machine the ratios are what
holds; the absolute rates are the machine's of the moment: the load average is printed).

    .venv/bin/python tests/bench/bench_sandbox.py [--runs N] [--rounds R] [--image DIR]"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import libcontainer  # noqa: E402
from libcontainer import sandbox  # noqa: E402
from libcontainer.default_spec import default_config  # noqa: E402


def rate(fn, n: int) -> float:
    t = time.perf_counter()
    fn(n)
    return n / (time.perf_counter() - t)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--image", default=os.path.join(REPO, "build", "bundle", "rootfs"))
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="sbxbench-", dir="/dev/shm")
    bundle = os.path.join(work, "bundle")
    os.mkdir(bundle)
    cfg = default_config(args=["true"], terminal=False)
    cfg["root"]["path"] = os.path.abspath(args.image)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    state = os.path.join(work, "state")
    null = os.open("/dev/null", os.O_RDWR)
    box = sandbox.Sandbox(args.image)
    seq = [0]

    def sandbox_serial(n):
        for _ in range(n):
            r = box.run(["true"])
            assert r.status == "OK", r

    def plain(n):
        for _ in range(n):
            seq[0] += 1
            assert libcontainer.run(bundle, f"sbxb{os.getpid()}-{seq[0]}", root=state,
                                    stdio=(null, null, null)) == 0

    runner = [os.path.join(os.path.dirname(sys.executable), "runner"), "--root", state]

    def runner_run(n):
        for _ in range(n):
            seq[0] += 1
            subprocess.run(runner + ["run", "--bundle", bundle, f"sbxb{os.getpid()}-{seq[0]}"],
                           check=True, stdin=null, stdout=null, stderr=null)

    bw = ["bwrap", "--ro-bind", args.image, "/", "--proc", "/proc", "--dev", "/dev",
          "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--",
          "/bin/true"]

    def bwrap(n):
        for _ in range(n):
            subprocess.run(bw, check=True)

    def threads(k):
        def go(n):
            per = n // k
            ts = [threading.Thread(target=sandbox_serial, args=(per,)) for _ in range(k)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        return go

    def aio(n):
        async def many():
            rs = await asyncio.gather(*(box.arun(["true"]) for _ in range(n)))
            assert all(r.status == "OK" for r in rs)
        asyncio.run(many())

    cases = [("sandbox: box.run(['true'])", sandbox_serial),
             ("libcontainer.run (plain bundle)", plain)]
    if os.access(runner[0], os.X_OK):
        cases.append(("runner run (CLI, plain bundle)", runner_run))
    if shutil.which("bwrap"):
        cases.append(("bwrap /bin/true loop", bwrap))
    cases += [("sandbox, 2 threads", threads(2)), ("sandbox, 4 threads", threads(4)),
              ("sandbox, asyncio gather", aio)]
    try:
        for _, fn in cases:
            fn(5)  # warm
        got = {name: [] for name, _ in cases}
        for _ in range(args.rounds):
            for name, fn in cases:
                got[name].append(rate(fn, args.runs))
        box.flush()
    finally:
        box.close()
        os.close(null)
        shutil.rmtree(work, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in got.items()}
    base = med[cases[0][0]]
    print(f"sandbox: {args.runs} runs x {args.rounds} rounds, median runs/s "
          f"({len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.1f})")
    for name, r in med.items():
        print(f"  {name:34} {r:8.1f}/s   sandbox/this {base / r:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
