"""`make bench`, build: `runner build` side by side with `buildah bud --layers --runtime runc`
(its own root, overlay storage) on the same Dockerfile and context, from the same base
image: cold (--no-cache: every RUN and COPY runs) and cached (an unchanged rebuild), runs
interleaved, ratio of medians. With --debian, also the multi-stage gcc build on a Debian
base made by debootstrap (tests/bench/grading_image.py makes it once).

    .venv/bin/python tests/bench/bench_build.py [--runs N] [--debian]"""
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
sys.path.insert(0, str(REPO / "tests" / "bench"))
sys.path.insert(0, str(REPO / "tests"))  # conftest, which test_build_buildah imports
import buildkit as bk  # noqa: E402
import imagekit as kit  # noqa: E402

RUNNER = [str(REPO / ".venv" / "bin" / "runner")]

BUSYBOX = """\
FROM localhost/bb
ARG V=1
ENV A=$V
WORKDIR /app
COPY src /app/src
RUN for i in 1 2 3 4 5 6 7 8; do cp -r /app/src /app/copy$i; done && rm -rf /app/copy8
RUN echo "$A" > /app/v && rm /bin/vi
COPY a.txt /app/
USER app
CMD ["sh"]
"""


def timed(cmd: list) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{cmd} failed: {r.stderr}")
    return time.perf_counter() - t


def med(xs: list) -> str:
    return f"{statistics.median(xs) * 1000:8.1f} ms (min {min(xs) * 1000:.1f})"


def compare(title: str, ctx: str, store: str, bh, runs: int) -> None:
    ours_cmd = RUNNER + ["build", "--storage", store, "-q", "-t", "bench", ctx]
    bud = ["buildah", "--root", bh.root, "--runroot", bh.runroot, "--storage-driver", "overlay",
           "bud", "--layers", "--runtime", "runc", "--isolation", "chroot", "-q", "-t", "bench", ctx]
    # warm both once (page cache, buildah's first-run setup)
    timed(ours_cmd)
    timed(bud)
    cold_o, cold_b, hot_o, hot_b = [], [], [], []
    for _ in range(runs):
        cold_o.append(timed(ours_cmd[:2] + ["--no-cache"] + ours_cmd[2:]))
        cold_b.append(timed(bud[:8] + ["--no-cache"] + bud[8:]))
        hot_o.append(timed(ours_cmd))
        hot_b.append(timed(bud))
    print(f"\n{title}")
    print(f"  cold   runner build    {med(cold_o)}")
    print(f"  cold   buildah bud     {med(cold_b)}")
    print(f"  ratio runner / buildah (cold)    {statistics.median(cold_o) / statistics.median(cold_b):6.2f}x")
    print(f"  cached runner build    {med(hot_o)}")
    print(f"  cached buildah bud     {med(hot_b)}")
    print(f"  ratio runner / buildah (cached)  {statistics.median(hot_o) / statistics.median(hot_b):6.2f}x")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--debian", action="store_true", help="also the gcc build on Debian")
    opts = ap.parse_args()
    if os.geteuid() != 0:
        print("bench_build: needs root (skipped)")
        return 0
    work = tempfile.mkdtemp(prefix="bench-build-")
    os.chmod(work, 0o755)
    bh = bk.Buildah(work)
    try:
        layout = bk.base_layout(work)
        store = os.path.join(work, "store")
        kit.sh(*RUNNER, "pull", "--storage", store, "--name", bk.BASE, f"oci:{layout}:bb")
        bh.pull_base(layout)
        files = {"Dockerfile": BUSYBOX, "a.txt": "a\n"}
        for i in range(200):
            files[f"src/d{i % 10}/f{i}"] = f"{i}\n" * 50
        ctx = bk.write(os.path.join(work, "ctx"), files)
        compare("build: busybox base, 2 RUN + 2 COPY (200 files), 10 instructions", ctx, store, bh,
                opts.runs)
        if opts.debian:
            import grading_image
            sys.path.insert(0, str(REPO / "tests" / "integration"))
            from test_build_buildah import DEBIAN_DOCKERFILE, HELLO_C

            rootfs = grading_image.ensure()
            dl = bk.rootfs_layout(work, rootfs, "debian")
            kit.sh(*RUNNER, "pull", "--storage", store, "--name", "localhost/debian-gcc:latest",
                   f"oci:{dl}:debian")
            bh.pull_base(dl, "localhost/debian-gcc:latest", tag="debian")
            dctx = bk.write(os.path.join(work, "dctx"), {"Dockerfile": DEBIAN_DOCKERFILE,
                                                         "hello.c": HELLO_C})
            compare("build: Debian + gcc, multi-stage, compiles C", dctx, store, bh,
                    max(2, opts.runs // 2))
    finally:
        bh.destroy()
        with open("/proc/self/mountinfo") as f:
            for mp in sorted((ln.split()[4] for ln in f if work in ln.split()[4]), reverse=True):
                subprocess.run(["umount", "-l", mp])
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
