"""`make soak`: the embedding process does not leak.

One Python process runs many containers through the library — libcontainer.run, and
create + start + wait + delete, a quarter of them failing on purpose (a config error, an
executable that does not exist, a createRuntime hook that fails, a created container
deleted with force) — and then has the same number of open fds, threads and child
processes, and an RSS within 2 MiB of where it was after the first 10 runs.

    .venv/bin/python tests/soak/soak.py [--runs N]     # SOAK_RUNS, default 1000

Progress on a terminal, quiet in a pipe; exit status 1 when something leaked.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)

import libcontainer  # noqa: E402
from libcontainer.default_spec import default_config  # noqa: E402

RSS_SLACK_KIB = 2048
BASELINE_AFTER = 10


def status_field(name: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise KeyError(name)


def children() -> list:
    me = str(os.getpid())
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    data = f.read()
            except OSError:
                continue
            if data[data.rindex(b")") + 2:].split()[1].decode() == me:
                out.append(int(pid))
    return out


def open_fds() -> tuple:
    """(fds open, network namespaces among them). The namespaces are netpool.py's, made
    ahead by its worker: 0 to SIZE kept, one more while it makes one, so their count at
    two moments differs without a leak (a CI run under load read 7 then 8 fds); they are
    counted apart and checked against that bound (netns_fds_bounded)."""
    netns = other = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # listdir's own, closed since
        if link.startswith("net:["):
            netns += 1
        else:
            other += 1
    return other, netns


def netns_fds_bounded(m: dict) -> bool:
    from libcontainer import netpool

    return m["netns_fds"] <= netpool.SIZE + 1


def measure() -> dict:
    fds, netns = open_fds()
    return {"fds": fds, "netns_fds": netns, "threads": status_field("Threads"),
            "children": len(children()), "rss_kib": status_field("VmRSS")}


def bundle(base: str, name: str, args: list, **extra) -> str:
    path = os.path.join(base, name)
    os.makedirs(path)
    config = default_config(terminal=False)
    config["root"]["path"] = os.path.join(base, "rootfs")  # one rootfs for all (read-only)
    config["process"]["args"] = args
    config.update(extra)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=int(os.environ.get("SOAK_RUNS", "1000")))
    opts = ap.parse_args()
    rootfs = os.path.join(REPO, "build", "bundle", "rootfs")
    if not os.path.exists(os.path.join(rootfs, "bin", "busybox")):
        sys.exit("soak: no busybox rootfs: run `make rootfs`")
    tty = sys.stderr.isatty()
    base = tempfile.mkdtemp(prefix="runner-soak-")
    os.chmod(base, 0o755)
    subprocess.run(["cp", "-a", rootfs, os.path.join(base, "rootfs")], check=True)
    root = os.path.join(base, "state")
    ok = bundle(base, "ok", ["true"])
    sleeper = bundle(base, "sleeper", ["sleep", "1000"])
    bad = bundle(base, "bad", ["true"])
    with open(os.path.join(bad, "config.json")) as f:
        c = json.load(f)
    c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]
    with open(os.path.join(bad, "config.json"), "w") as f:
        json.dump(c, f)
    missing = bundle(base, "missing", ["/no/such/program"])
    hook = bundle(base, "hook", ["true"], hooks={"createRuntime": [{"path": "/bin/false"}]})
    null = open(os.devnull, "w+")
    stdio = (null, null, null)
    expected_errors = (libcontainer.ConfigError, libcontainer.ExecNotFound,
                       libcontainer.StartError)
    base_m = None
    counts = {"ok": 0, "refused": 0}
    try:
        for i in range(opts.runs):
            cid = f"soak-{uuid.uuid4().hex[:10]}"
            kind = i % 8
            try:
                if kind in (0, 1, 2):
                    assert libcontainer.run(ok, cid, root=root, stdio=stdio) == 0
                elif kind in (3, 4):
                    c = libcontainer.create(ok, cid, root=root, stdio=stdio)
                    c.start()
                    assert c.wait() == 0
                    c.delete()
                elif kind == 5:
                    c = libcontainer.create(sleeper, cid, root=root, stdio=stdio)
                    c.delete(force=True)  # a created container, killed
                else:
                    which = (bad, missing, hook)[(i // 8) % 3]
                    libcontainer.run(which, cid, root=root, stdio=stdio)
                    raise AssertionError(f"{which} did not fail")
                counts["ok"] += 1
            except expected_errors:
                counts["refused"] += 1
            if i + 1 == BASELINE_AFTER:
                base_m = measure()
            if tty and (i + 1) % 10 == 0:
                sys.stderr.write(f"\rsoak: {i + 1}/{opts.runs} {measure()}   ")
        if tty:
            sys.stderr.write("\n")
        end = measure()
        left = os.listdir(root) if os.path.isdir(root) else []
    finally:
        null.close()
        shutil.rmtree(base, ignore_errors=True)
    base_m = base_m or end
    print(f"soak: {opts.runs} containers ({counts['ok']} ran, {counts['refused']} refused on "
          f"purpose); after {BASELINE_AFTER}: {base_m}; at the end: {end}")
    problems = [f"{k} {base_m[k]} -> {end[k]}" for k in ("fds", "threads", "children")
                if end[k] != base_m[k]]
    if not netns_fds_bounded(end):
        problems.append(f"{end['netns_fds']} network namespace fds held")
    if end["rss_kib"] - base_m["rss_kib"] > RSS_SLACK_KIB:
        problems.append(f"RSS grew {end['rss_kib'] - base_m['rss_kib']} KiB "
                        f"(more than {RSS_SLACK_KIB})")
    if left:
        problems.append(f"state entries left: {left}")
    if problems:
        print("soak: LEAK: " + "; ".join(problems))
        return 1
    print("soak: no leak")
    return 0


if __name__ == "__main__":
    sys.exit(main())
