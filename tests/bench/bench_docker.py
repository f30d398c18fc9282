"""`make bench` (Docker): one private dockerd (tests/integration/dockerkit.py), the same image,
`--runtime runc` side by side with `--runtime runner`:

  - `docker run --rm IMAGE true`, one at a time: median and p90 wall time of the client
    command (dockerd → containerd → shim → runtime create/start/delete, and the daemon's own
    work around it, which both runtimes share);
  - 50 × `docker run -d IMAGE sleep 1000`, then `docker rm -f` of all 50, one command at a time:
    wall time of each phase.

    .venv/bin/python tests/bench/bench_docker.py [--runs N] [--containers N]

Runs alternate between the runtimes so that load on the machine falls on both alike. Ratios
are runner / runc (below 1: the runner is faster). Nothing is asserted.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))

from dockerkit import IMAGE, Dockerd, missing  # noqa: E402

ROOTFS = REPO / "build" / "bundle" / "rootfs"
RUNTIMES = ("runc", "runner")
TTY = sys.stderr.isatty()


def progress(msg: str) -> None:
    if TTY:
        sys.stderr.write(f"\r\033[K{msg}")
        sys.stderr.flush()


def timed(d: Dockerd, *args) -> float:
    t0 = time.perf_counter()
    r = d(*args, timeout=120)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed: {r.stderr}")
    return took


def run_rm(d: Dockerd, runs: int) -> dict:
    times = {rt: [] for rt in RUNTIMES}
    for rt in RUNTIMES:  # warm-up: page cache, the image's first overlay
        timed(d, "run", "--rm", "--runtime", rt, IMAGE, "true")
    for i in range(runs):
        for rt in (RUNTIMES if i % 2 == 0 else RUNTIMES[::-1]):
            progress(f"docker run --rm: {i + 1}/{runs} {rt}")
            times[rt].append(timed(d, "run", "--rm", "--runtime", rt, IMAGE, "true"))
    return times


def many(d: Dockerd, n: int) -> dict:
    out = {}
    for rt in RUNTIMES:
        names = [f"bench-{rt}-{i}" for i in range(n)]
        t0 = time.perf_counter()
        for i, name in enumerate(names):
            progress(f"{n} x docker run -d: {i + 1}/{n} {rt}")
            timed(d, "run", "-d", "--runtime", rt, "--name", name, IMAGE, "sleep", "1000")
        started = time.perf_counter() - t0
        t0 = time.perf_counter()
        for i, name in enumerate(names):
            progress(f"{n} x docker rm -f: {i + 1}/{n} {rt}")
            timed(d, "rm", "-f", name)
        out[rt] = (started, time.perf_counter() - t0)
    return out


def p90(xs: list) -> float:
    return sorted(xs)[max(0, int(len(xs) * 0.9 + 0.5) - 1)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=int(os.environ.get("BENCH_DOCKER_RUNS", "20")))
    ap.add_argument("--containers", type=int, default=50)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_docker: needs root (dockerd)")
        return 1
    if missing():
        print(f"bench_docker: skipped, {', '.join(missing())} missing (Debian's docker.io)")
        return 0
    if not (ROOTFS / "bin" / "busybox").exists():
        print("bench_docker: no busybox rootfs: run `make rootfs`")
        return 1
    base = tempfile.mkdtemp(prefix="bench-docker-", dir="/tmp")
    os.chmod(base, 0o755)
    d = Dockerd(base)
    try:
        d.start()
        d.import_image(str(ROOTFS))
        rm = run_rm(d, args.runs)
        n = many(d, args.containers)
    finally:
        progress("")
        d.stop()
        for c in os.listdir("/sys/fs/cgroup"):
            top = os.path.join("/sys/fs/cgroup", c, d.cgroup_name)
            if os.path.isdir(top):
                for sub, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                    os.rmdir(sub)
        shutil.rmtree(base, ignore_errors=True)

    print(f"\nDocker 20.10 (Debian docker.io), one dockerd, --runtime runc vs --runtime runner")
    print(f"  {'':<38} {'runc':>10} {'runner':>10} {'ratio':>7}")
    a, b = statistics.median(rm["runc"]), statistics.median(rm["runner"])
    print(f"  {'docker run --rm true, median (ms)':<38} {a * 1000:10.0f} {b * 1000:10.0f} "
          f"{b / a:6.2f}x")
    a, b = p90(rm["runc"]), p90(rm["runner"])
    print(f"  {'  p90 (ms), ' + str(args.runs) + ' runs':<38} {a * 1000:10.0f} {b * 1000:10.0f} "
          f"{b / a:6.2f}x")
    for i, label in enumerate(("docker run -d", "docker rm -f")):
        a, b = n["runc"][i], n["runner"][i]
        print(f"  {f'{args.containers} x {label} (s)':<38} {a:10.1f} {b:10.1f} {b / a:6.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
