"""The grading bench's image: Debian bookworm (minbase) with gcc, libc6-dev and python3,
made by debootstrap once (under a lock, so concurrent makers wait and reuse it) from the
mirror the host's apt sources name."""
from __future__ import annotations

import fcntl
import glob
import os
import shutil
import subprocess
import sys

PACKAGES = "gcc,libc6-dev,python3"


def default_path() -> str:
    if os.environ.get("SANDBOX_BENCH_IMAGE"):
        return os.environ["SANDBOX_BENCH_IMAGE"]
    if os.path.isdir("/work/ext"):
        return "/work/ext/debian-gcc-python3"
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(repo, "build", "debian-gcc-python3")


def mirror() -> str:
    """The first http(s) URI of the host's Debian sources (deb822 or one-line form)."""
    files = glob.glob("/etc/apt/sources.list.d/*.sources") + \
        glob.glob("/etc/apt/sources.list.d/*.list") + ["/etc/apt/sources.list"]
    for path in files:
        try:
            with open(path) as f:
                for line in f:
                    words = line.split()
                    if words[:1] == ["URIs:"] or words[:1] == ["deb"]:
                        for w in words[1:]:
                            if w.startswith("http") and "debian" in w and "security" not in w:
                                return w
        except OSError:
            continue
    return "http://deb.debian.org/debian"


def ready(path: str) -> bool:
    return all(os.path.exists(os.path.join(path, p)) for p in
               ("usr/bin/gcc", "usr/bin/python3", "usr/include/stdio.h"))


def ensure(path: str | None = None, quiet: bool = False) -> str:
    path = path or default_path()
    if ready(path):
        return path
    if shutil.which("debootstrap") is None:
        raise SystemExit("the grading bench needs debootstrap (apt-get install debootstrap)")
    lock_path = (os.path.join(os.path.dirname(path), "debootstrap.lock")
                 if os.path.dirname(path) == "/work/ext" else path + ".lock")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another maker: wait, then reuse its image
        if ready(path):
            return path
        tmp = path + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        if not quiet:
            print(f"making {path} with debootstrap (a few minutes)...", file=sys.stderr)
        with open(path + ".log", "w") as log:
            subprocess.run(["debootstrap", "--variant=minbase", f"--include={PACKAGES}",
                            "bookworm", tmp, mirror()], check=True, stdout=log, stderr=log)
        shutil.rmtree(os.path.join(tmp, "var/cache/apt/archives"), ignore_errors=True)
        os.makedirs(os.path.join(tmp, "var/cache/apt/archives/partial"), exist_ok=True)
        os.rename(tmp, path)
    return path


if __name__ == "__main__":
    print(ensure(sys.argv[1] if len(sys.argv) > 1 else None))
