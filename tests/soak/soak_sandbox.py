"""`make soak` (sandbox part): one process runs many sandboxed commands and leaks nothing.

One Sandbox runs SOAK_RUNS (default 10 000) commands — most `true`, and every 10th one
that fails in a different way (a non-zero exit, a command that does not exist, a memory
bomb, a CPU loop, output past the cap, files in the workdir, a workdir() of its own) —
then compares with where it was after the first 50 runs: the same open fds, threads and
child processes, no mount or cgroup or container state of its own left, and an RSS
within 4 MiB. After close(), its directory is gone.

    .venv/bin/python tests/soak/soak_sandbox.py [--runs N] [--image DIR]

Progress on a terminal, quiet in a pipe; exit status 1 when something leaked."""
from __future__ import annotations

import argparse
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from soak import children, netns_fds_bounded, open_fds, status_field  # noqa: E402

RSS_SLACK_KIB = 4096
BASELINE_AFTER = 50


def mounts_under(path: str) -> list:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def cgroups_named(prefix: str) -> int:
    n = 0
    for _, dirnames, _ in os.walk("/sys/fs/cgroup"):
        n += sum(1 for d in dirnames if prefix in d)
    return n


def measure(box) -> dict:
    box.flush()
    fds, netns = open_fds()
    return {"fds": fds, "netns_fds": netns, "threads": status_field("Threads"),
            "children": len(children()), "rss_kib": status_field("VmRSS"),
            # the base's own mount and each ready slot's two: anything more is a leak
            "mounts": len(mounts_under(box.path)) - 1 - 2 * len(box._ready),
            "slots": box._slots, "states": len(os.listdir(box._state)),
            "cgroups": cgroups_named(f"sbx{os.getpid()}-")}


def one(box, i: int, sandbox) -> str:
    kind = (i // 10) % 7 if i % 10 == 9 else -1
    if kind == -1:
        r = box.run(["true"])
        want = "OK"
    elif kind == 0:
        r, want = box.run("exit 3"), "RE"
    elif kind == 1:
        r, want = box.run(["/does/not/exist"]), "RE"
    elif kind == 2:
        r, want = box.run(["tail", "/dev/zero"]), "ML"
    elif kind == 3:
        r, want = box.run(["sh", "-c", "while :; do :; done"],
                          limits=box.limits.but(cpu_time=0.05, wall_time=10)), "TO"
    elif kind == 4:
        r, want = box.run(["sh", "-c", "yes | head -c 200000"]), "OK"
        assert r.output_truncated, r
    elif kind == 5:
        r, want = box.run(["sh", "-c", "cat a b > c && cat c"],
                          files={"a": b"1\n", "b": b"2\n"}), "OK"
        assert r.stdout == b"1\n2\n", r
    else:
        with box.workdir() as wd:
            box.run(["sh", "-c", "echo x > f"], workdir=wd)
            r, want = box.run(["cat", "f"], workdir=wd), "OK"
            assert wd.read("f") == b"x\n"
    if r.status != want:
        raise AssertionError(f"run {i}: want {want}, got {r}")
    return r.status


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=int(os.environ.get("SOAK_RUNS", "10000")))
    ap.add_argument("--image", default=os.path.join(REPO, "build", "bundle", "rootfs"))
    args = ap.parse_args()
    from libcontainer import sandbox

    tty = sys.stderr.isatty()
    box = sandbox.Sandbox(args.image, sandbox.Limits(cpu_time=2, memory="32m", output="64k",
                                                    disk="8m"))
    start = time.monotonic()
    base = None
    for i in range(args.runs):
        one(box, i, sandbox)
        if i + 1 == min(BASELINE_AFTER, args.runs):
            base = measure(box)
        if tty and i % 50 == 0:
            rate = (i + 1) / (time.monotonic() - start)
            sys.stderr.write(f"\r{i + 1}/{args.runs} runs, {rate:.0f}/s ")
    end = measure(box)
    elapsed = time.monotonic() - start
    path = box.path
    box.close()
    if tty:
        sys.stderr.write("\n")
    print(f"sandbox soak: {args.runs} runs in {elapsed:.1f} s ({args.runs / elapsed:.0f}/s); "
          f"after {BASELINE_AFTER}: {base}; at the end: {end}")
    bad = [k for k in ("fds", "threads", "children", "mounts", "states", "cgroups")
           if end[k] != base[k]]
    if not netns_fds_bounded(end):
        bad.append("netns_fds")
    if end["slots"] > 2:
        bad.append(f"slots ({end['slots']} for serial runs)")
    if end["rss_kib"] - base["rss_kib"] > RSS_SLACK_KIB:
        bad.append("rss_kib")
    if os.path.exists(path) or mounts_under(path):
        bad.append("the Sandbox's directory or mounts after close()")
    if bad:
        print(f"LEAK: {', '.join(bad)}")
        return 1
    print("no leak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
