"""The warm server's security boundary (runner/warm.py): whether a caller may be served, and
making the forked worker that serves it into the caller — as far as a process can become
another without being it.

Served only: a caller of the server's own uid (SO_PEERCRED: the launcher checks the
server's too), in the same user, mount, pid, network, cgroup, ipc, uts and time namespaces
and root directory, with the same capabilities, no_new_privs, no seccomp filter and the
same LSM label. The rest is adopted by the worker before it does any work: gid and
groups, umask, every rlimit, cgroups, oom_score_adj, nice, CPU affinity (and the
environment, working directory and stdio, from the request). What the worker cannot
adopt (a hard rlimit above its own, a cgroup it may not join, a lower oom_score_adj) is a
refusal: the launcher then runs the call itself, on the plain path. The caller's pid is
held by a pidfd (SO_PEERPIDFD) from before its /proc files are read until after, so the
files read are the caller's, not those of a process that took its pid."""
from __future__ import annotations

import os
import resource
import select
import socket

SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)
NAMESPACES = ("user", "mnt", "pid", "pid_for_children", "net", "cgroup", "ipc", "uts",
              "time", "time_for_children")
# /proc/PID/status fields that must be the server's (the credentials it cannot take on)
SAME = ("Uid", "CapBnd", "CapInh", "CapAmb", "CapPrm", "CapEff", "NoNewPrivs", "Seccomp")
RLIMITS = tuple(getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_"))


class Refused(Exception):
    """Why this caller is not served (the launcher goes the plain way)."""


def identity(pid: int | str = "self") -> dict:
    """What must match between the server and a caller."""
    out: dict = {}
    for ns in NAMESPACES:
        try:
            # "user:[4026531837]": the namespace's inode on nsfs, as stat() would give it
            # (one filesystem), at less than half the cost of a stat (~6 µs each)
            out[ns] = os.readlink(f"/proc/{pid}/ns/{ns}")
        except FileNotFoundError:
            out[ns] = None  # a kernel without it: the same for both
    st = os.stat(f"/proc/{pid}/root/")
    out["root"] = (st.st_dev, st.st_ino)
    try:
        out["lsm"] = read(f"/proc/{pid}/attr/current")
    except OSError:
        out["lsm"] = None
    out["status"] = status(pid)
    return out


def read(path: str) -> bytes:
    """A small /proc file in one read (no file object: this is on every call's path)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def status(pid) -> dict:
    text = read(f"/proc/{pid}/status").decode()
    return dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)


def peer_pidfd(conn: socket.socket, pid: int) -> int:
    """A pidfd of the process at the other end, as it was when it connected (the one
    SO_PEERCRED's pid names: the kernel keeps one reference to it for both)."""
    try:
        return conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError:
        return os.pidfd_open(pid)  # a kernel before 6.5: the pid, held from now on


def alive(pidfd: int) -> bool:
    """Whether the process has not exited (a pidfd reads as ready once it has)."""
    return not select.select([pidfd], [], [], 0)[0]


def check(own: dict, pid: int, uid: int) -> dict:
    """The caller's identity, if it may be served; else Refused saying why."""
    if uid != os.geteuid():
        raise Refused(f"uid {uid} is not the server's {os.geteuid()}")
    peer = identity(pid)
    for ns in NAMESPACES:
        if peer[ns] != own[ns]:
            raise Refused(f"another {ns} namespace")
    if peer["root"] != own["root"]:
        raise Refused("another root directory (chroot)")
    if peer["lsm"] != own["lsm"]:
        raise Refused("another LSM label")
    mine, theirs = own["status"], peer["status"]
    for key in SAME:
        if mine.get(key) != theirs.get(key):
            raise Refused(f"another {key} ({theirs.get(key)})")
    if theirs.get("Seccomp", "0") != "0":
        raise Refused("a seccomp filter")
    return peer


def adopt(peer: dict, pid: int) -> None:
    """Make this (forked, about to serve) process into the caller as far as it goes."""
    st = peer["status"]
    gids = [int(x) for x in st["Gid"].split()]
    groups = [int(x) for x in st.get("Groups", "").split()]
    try:
        if sorted(os.getgroups()) != sorted(groups):
            os.setgroups(groups)
        if list(os.getresgid()) != gids[:3]:
            os.setresgid(*gids[:3])
    except OSError as e:
        raise Refused(f"cannot take on gid/groups: {e.strerror}") from None
    os.umask(int(st.get("Umask", "0022"), 8))
    for res in RLIMITS:
        want = resource.prlimit(pid, res)
        if resource.getrlimit(res) != want:
            try:
                resource.setrlimit(res, want)
            except (OSError, ValueError) as e:
                raise Refused(f"cannot take on rlimit {res} {want}: {e}") from None
    _join_cgroups(pid)
    oom = read(f"/proc/{pid}/oom_score_adj").strip()
    if read("/proc/self/oom_score_adj").strip() != oom:
        try:
            fd = os.open("/proc/self/oom_score_adj", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, oom)
            finally:
                os.close(fd)
        except OSError as e:
            raise Refused(f"cannot take on oom_score_adj {oom.decode()}: {e.strerror}") \
                from None
    try:
        nice = os.getpriority(os.PRIO_PROCESS, pid)
        if os.getpriority(os.PRIO_PROCESS, 0) != nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        cpus = os.sched_getaffinity(pid)
        if os.sched_getaffinity(0) != cpus:
            os.sched_setaffinity(0, cpus)
    except OSError as e:
        raise Refused(f"cannot take on nice or CPU affinity: {e.strerror}") from None


def _join_cgroups(pid: int) -> None:
    """Into the caller's cgroup in every hierarchy (where runc's default cgroup path is
    relative to, and where a hook it runs goes)."""
    if read(f"/proc/{pid}/cgroup") == read("/proc/self/cgroup"):
        return  # the common case: started where its callers run
    from libcontainer.cgroups import host

    mine = host.container_dirs(None, host.detect())
    theirs = host.container_dirs(None, host.detect(cgroup=f"/proc/{pid}/cgroup"))
    for mnt, path in theirs.items():
        if mine.get(mnt) == path:
            continue
        try:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError as e:
            raise Refused(f"cannot join cgroup {path}: {e.strerror}") from None
        if mnt in mine:
            _joined.append(mine[mnt])
    host._host = None  # this process's own cgroups are the caller's now


_joined: list = []  # the server's cgroups this worker left for the caller's


def leave_cgroups() -> None:
    """Back into the server's cgroups, before the reply: the caller's are empty once it
    exits, as on the plain path (its rmdir of them must not find this worker there)."""
    for path in _joined:
        try:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        except OSError:
            pass
