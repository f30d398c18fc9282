"""`make bench` (Docker): one private dockerd (tests/integration/dockerkit.py), the same image,
`--runtime runc` side by side with `--runtime runner` and `--runtime runner-warm` (the same
installed runner, with a `runner warm-server` on that runtime's state root, started in
dockerd's namespaces: runner/warm.py):

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

from dockerkit import IMAGE, RUNNER_BIN, Dockerd, missing  # noqa: E402

ROOTFS = REPO / "build" / "bundle" / "rootfs"
RUNTIMES = ("runc", "runner", "runner-warm")
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
        for rt in RUNTIMES[i % 3:] + RUNTIMES[:i % 3]:
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
    d = Dockerd(base, ("--add-runtime", "runner-warm=" + RUNNER_BIN))
    warm = None
    try:
        d.start()
        d.import_image(str(ROOTFS))
        warm = start_warm(d)
        rm = run_rm(d, args.runs)
        n = many(d, args.containers)
    finally:
        progress("")
        if warm is not None:
            warm.terminate()
            warm.wait()
        d.stop()
        for c in os.listdir("/sys/fs/cgroup"):
            top = os.path.join("/sys/fs/cgroup", c, d.cgroup_name)
            if os.path.isdir(top):
                for sub, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                    os.rmdir(sub)
        shutil.rmtree(base, ignore_errors=True)

    print("\nDocker 20.10 (Debian docker.io), one dockerd, --runtime runc vs runner vs "
          "runner-warm (ratios: / runc)")
    print(f"  {'':<38} {'runc':>10} {'runner':>10} {'warm':>10} {'runner':>7} {'warm':>7}")

    def row(label: str, vals: list, scale: float, fmt: str) -> None:
        a = vals[0]
        print(f"  {label:<38}" + "".join(format(v * scale, fmt) for v in vals) +
              "".join(f"{v / a:6.2f}x" for v in vals[1:]))

    row("docker run --rm true, median (ms)", [statistics.median(rm[rt]) for rt in RUNTIMES],
        1000, "10.0f")
    row(f"  p90 (ms), {args.runs} runs", [p90(rm[rt]) for rt in RUNTIMES], 1000, "10.0f")
    for i, label in enumerate(("docker run -d", "docker rm -f")):
        row(f"{args.containers} x {label} (s)", [n[rt][i] for rt in RUNTIMES], 1, "10.1f")
    return 0


def start_warm(d: Dockerd) -> subprocess.Popen:
    """The warm server of the runner-warm runtime's state root, in dockerd's network and
    mount namespaces (the shims call the runtime there; it serves no other)."""
    root = os.path.join(d.exec_root, "runtime-runner-warm", "moby")
    os.makedirs(root, exist_ok=True)
    proc = subprocess.Popen(["nsenter", "-t", str(d.pid), "-n", "-m", RUNNER_BIN, "--root",
                             root, "warm-server"], stdin=subprocess.DEVNULL)
    for _ in range(1000):
        if os.path.exists(os.path.join(root, ".warm.sock")) or proc.poll() is not None:
            break
        time.sleep(0.01)
    if proc.poll() is not None:
        raise SystemExit("bench_docker: runner warm-server did not start")
    return proc


if __name__ == "__main__":
    sys.exit(main())
