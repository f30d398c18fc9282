"""`make bench` (Docker): one private dockerd (tests/integration/dockerkit.py), the same image,
`--runtime runc` side by side with `--runtime runner`, twice: the runner plain (an interpreter
per call), then with a `runner warm-server` on the runtimes' state root (Docker 20.10 gives
every runtime exec-root/runtime-runc/moby), started in dockerd's network and mount
namespaces, where the shims call the runtime (runner/warm.py). runc is measured again in
the second phase: each ratio is against runc of the same phase.

  - `docker run --rm IMAGE true`, one at a time: median and p90 wall time of the client
    command (dockerd → containerd → shim → runtime create/start/delete, and the daemon's own
    work around it, which both runtimes share);
  - 50 × `docker run -d IMAGE sleep 1000`, then `docker rm -f` of all 50, one command at a time,
    the runtimes taking turns: wall time of each phase.

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
    """n × `docker run -d` per runtime, then `docker rm -f` of each, the runtimes taking
    turns container by container (load that drifts falls on both alike): the summed wall
    time of each phase, per runtime."""
    names = {rt: [f"bench-{rt}-{i}" for i in range(n)] for rt in RUNTIMES}
    out = {rt: [0.0, 0.0] for rt in RUNTIMES}
    for phase, args in ((0, ("run", "-d", "--runtime", "{rt}", "--name", "{name}", IMAGE,
                             "sleep", "1000")), (1, ("rm", "-f", "{name}"))):
        for i in range(n):
            for rt in (RUNTIMES if i % 2 == 0 else RUNTIMES[::-1]):
                progress(f"{n} x docker {args[0]}: {i + 1}/{n} {rt}")
                out[rt][phase] += timed(d, *(a.format(rt=rt, name=names[rt][i])
                                             for a in args))
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
    warm = None
    rm, n = {}, {}
    try:
        d.start()
        d.import_image(str(ROOTFS))
        rm["plain"] = run_rm(d, args.runs)
        n["plain"] = many(d, args.containers)
        warm = start_warm(d)
        rm["warm"] = run_rm(d, args.runs)
        n["warm"] = many(d, args.containers)
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

    print("\nDocker 20.10 (Debian docker.io), one dockerd, --runtime runc vs --runtime runner, "
          "without and with the warm server")
    print(f"  {'':<38} {'runc':>10} {'runner':>10} {'ratio':>7}")
    for phase in ("plain", "warm"):
        print(f"  runner {phase}:")
        a, b = statistics.median(rm[phase]["runc"]), statistics.median(rm[phase]["runner"])
        print(f"  {'docker run --rm true, median (ms)':<38} {a * 1000:10.0f} {b * 1000:10.0f} "
              f"{b / a:6.2f}x")
        a, b = p90(rm[phase]["runc"]), p90(rm[phase]["runner"])
        print(f"  {'  p90 (ms), ' + str(args.runs) + ' runs':<38} {a * 1000:10.0f} "
              f"{b * 1000:10.0f} {b / a:6.2f}x")
        for i, label in enumerate(("docker run -d", "docker rm -f")):
            a, b = n[phase]["runc"][i], n[phase]["runner"][i]
            print(f"  {f'{args.containers} x {label} (s)':<38} {a:10.1f} {b:10.1f} "
                  f"{b / a:6.2f}x")
    return 0


def start_warm(d: Dockerd) -> subprocess.Popen:
    """The warm server of the runtimes' state root, in dockerd's network and mount
    namespaces (the shims call the runtime there; it serves no other)."""
    root = os.path.join(d.exec_root, "runtime-runc", "moby")
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
