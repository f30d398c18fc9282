"""Why the container's init could not be made: a clone that failed with EAGAIN hit a
process limit, and the message names the ones that apply here (as runc names the fork it
could not make): the pids cgroups the new process is counted in, RLIMIT_NPROC, and the
kernel's kernel.pid_max and kernel.threads-max. Imported only when a clone failed."""
from __future__ import annotations

import os

from . import fileio
from .errors import StartError


def clone_failed(errno: int, container_cgroup: str = "", borrowed: int = 0) -> StartError:
    """The error for a failed clone of the init. `container_cgroup`: the v2 directory the
    init was cloned into (CLONE_INTO_CGROUP), whose pids limits count it too. `borrowed`:
    processes in this one's cgroups that the caller's count would not have (a warm
    server's worker, which took on the caller's cgroups to serve it)."""
    what = "cannot make the container's init process: clone3: " + os.strerror(errno)
    if errno != 11:  # EAGAIN
        return StartError(what, errno, "clone")
    return StartError(f"{what} (a process limit is reached; the limits that apply: "
                      f"{'; '.join(limits(container_cgroup, borrowed))})", errno, "clone")


def limits(container_cgroup: str = "", borrowed: int = 0) -> list:
    """One phrase per limit a new process of this one is counted against."""
    out = [f"pids cgroup {d}: {cur} processes of pids.max {mx}"
           for d, cur, mx in _pids_cgroups(container_cgroup, borrowed)]
    if not out:
        out.append("no pids cgroup limit")
    out.append(_nproc())
    out.append(_kernel())
    return out


def _pids_cgroups(container_cgroup: str, borrowed: int = 0) -> list:
    """(directory, pids.current, pids.max) of every pids cgroup with a limit that a child
    of this process is counted in: this process's own (v1 pids, v2) and their ancestors,
    and the container's v2 directory and its ancestors."""
    from .cgroups import detect

    host = detect()
    starts = []
    if "pids" in host.v1:
        starts.append((host.v1["pids"], host.own.get("pids", "/")))
    v2 = host.unified and "pids" in host.v2_controllers
    if v2:
        starts.append((host.unified, host.own.get("", "/")))
    own = len(starts)  # (this process's, then the container's)
    if v2 and container_cgroup.startswith(host.unified + "/"):
        starts.append((host.unified, container_cgroup[len(host.unified):]))
    seen, out = set(), []
    for i, (mnt, path) in enumerate(starts):
        d = os.path.normpath(mnt + "/" + path.lstrip("/"))
        while True:
            if d not in seen:
                seen.add(d)
                mx = fileio.text(os.path.join(d, "pids.max"))
                if mx and mx != "max":
                    cur = fileio.text(os.path.join(d, "pids.current")) or "?"
                    if i < own and borrowed and cur.isdigit():  # (this one's cgroups)
                        cur = str(max(int(cur) - borrowed, 0))
                    out.append((d, cur, mx))
            if d == mnt or len(d) <= len(mnt):
                break
            d = os.path.dirname(d)
    return out


def _nproc() -> str:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    limit = "unlimited" if soft == resource.RLIM_INFINITY else str(soft)
    who = f"uid {os.getuid()}"
    if os.geteuid() == 0:
        return f"RLIMIT_NPROC {limit} of {who} (root is exempt)"
    return f"RLIMIT_NPROC {limit} processes of {who}"


def _kernel() -> str:
    pid_max = fileio.text("/proc/sys/kernel/pid_max") or "?"
    threads_max = fileio.text("/proc/sys/kernel/threads-max") or "?"
    now = (fileio.text("/proc/loadavg") or "").split()
    total = now[3].partition("/")[2] if len(now) > 3 else "?"
    return f"kernel.pid_max {pid_max} and kernel.threads-max {threads_max} ({total} threads now)"
