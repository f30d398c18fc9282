"""The host's cgroup layout: which hierarchies are mounted where (v1, v2 or hybrid),
where this process sits in each, and where a container's cgroup goes in them."""
from __future__ import annotations

import os

from . import v2
from ..errors import ConfigError

# The default cgroup (no linux.cgroupsPath) is `runner-<id>` (placed as _inner says): flat,
# as runc's `<id>`, rather than below a shared `runner/` parent, whose mkdir and rmdir with
# every container cost 22 syscalls on a hybrid host; the prefix keeps `delete --force` of
# an id from touching a cgroup that is not ours.
DEFAULT_PREFIX = "runner-"
V1_CONTROLLERS = frozenset(("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "net_cls",
                            "net_prio", "blkio", "perf_event", "hugetlb", "pids", "rdma", "misc",
                            "debug"))


class Host:
    """Where the hierarchies are mounted and where this process sits in them."""

    def __init__(self, v1_mounts: dict, unified: str, own: dict):
        self.v1 = v1_mounts          # controller (or "name=systemd") → mount point
        self.unified = unified       # cgroup2 mount point, "" if none
        self.own = own               # controller → our cgroup in it; "" → v2
        if unified and not any(not c.startswith("name=") for c in v1_mounts):
            self.mode = "v2"
        elif unified:
            self.mode = "hybrid"
        else:
            self.mode = "v1"
        self._v2_ctrls = None

    @property
    def v2_controllers(self) -> set:
        if self._v2_ctrls is None:
            self._v2_ctrls = v2.controllers(self.unified) if self.unified else set()
        return self._v2_ctrls


_host: Host | None = None


def detect(mountinfo: str = "/proc/self/mountinfo", cgroup: str = "/proc/self/cgroup") -> Host:
    """The host's cgroup layout (cached for the default files): the hierarchies that are
    mounted and can be reached. A mount covered by a later one (the cgroup2 mount point of
    a hybrid host under a plain tmpfs, as crun is run there) is not there for us."""
    global _host
    # another process's cgroups (the warm server's caller: cgroup=/proc/PID/cgroup) in our
    # mounts: not cached
    ours = mountinfo == "/proc/self/mountinfo"
    default = ours and cgroup == "/proc/self/cgroup"
    if default and _host is not None:
        return _host
    own, v1_mounts, unified = {}, {}, ""
    with open(cgroup) as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else ("",):
                own[c] = path
    with open(mountinfo) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype, _, superopts = right.split()[:3]
            if fstype not in ("cgroup", "cgroup2"):
                continue
            fields = left.split()
            root, mnt = fields[3], fields[4].replace("\\040", " ")
            if ours and not _shows(mnt, fields[2]):
                continue
            if fstype == "cgroup2":
                if not unified:
                    unified = mnt
                    own[""] = _below(own.get("", "/"), root)
                continue
            for opt in superopts.split(","):
                if opt not in V1_CONTROLLERS and not opt.startswith("name="):
                    continue  # a mount option (xattr, noprefix, release_agent=…)
                if opt not in v1_mounts:
                    v1_mounts[opt] = mnt
                    own[opt] = _below(own.get(opt, "/"), root)
    host = Host(v1_mounts, unified, own)
    if default:
        _host = host
    return host


def container_dirs(manager, host: Host | None = None) -> dict:
    """{hierarchy mount point: the container's directory in it}, one entry per mounted
    hierarchy (co-mounted controllers share one), the cgroup2 one last. `manager` is a
    `manager.Manager` (not imported here: it imports this); without one (None: no cgroup
    of its own) the container's init stays in this process's cgroups."""
    host = host or detect()
    out: dict = {}
    for ctrl, mnt in host.v1.items():
        if mnt not in out:
            own = manager.paths.get(ctrl) if manager is not None else None
            out[mnt] = own or os.path.normpath(mnt + host.own.get(ctrl, "/"))
    if host.unified:
        own = manager.unified if manager is not None else ""
        out[host.unified] = own or os.path.normpath(host.unified + host.own.get("", "/"))
    return out


def _shows(mnt: str, dev: str) -> bool:
    """Whether the path `mnt` leads to the mount of device `dev` ("major:minor"), i.e.
    nothing is mounted over it."""
    try:
        st = os.stat(mnt)
    except OSError:
        return False
    major, _, minor = dev.partition(":")
    return st.st_dev == os.makedev(int(major), int(minor))


def _below(path: str, root: str) -> str:
    """Our cgroup as seen inside a mount of the hierarchy's subtree `root`."""
    if root != "/" and (path == root or path.startswith(root + "/")):
        return path[len(root):] or "/"
    return path


def _inner(cgroups_path: str, container_id: str, own: str, v2_parent: bool) -> str:
    """The container's cgroup within one hierarchy. Absolute paths are the config's;
    relative ones (and the default `runner-<id>`) are below our own cgroup, on v2 below
    its parent, which (unlike ours) has no processes and so may enable controllers."""
    p = cgroups_path or DEFAULT_PREFIX + container_id
    if p.startswith("/"):
        return os.path.normpath(p)
    base = os.path.dirname(own) if v2_parent else own
    return os.path.normpath(os.path.join(base or "/", p))


def check_path(cgroups_path: str) -> None:
    field = "linux.cgroupsPath"
    if ":" in cgroups_path:
        raise ConfigError(field, f"{cgroups_path!r}: systemd cgroup paths (slice:prefix:name) "
                                 "are not supported; use a path")
    parts = [p for p in cgroups_path.split("/") if p]
    if cgroups_path and not parts:
        raise ConfigError(field, f"{cgroups_path!r} names the root cgroup")
    if ".." in parts or "\0" in cgroups_path:
        raise ConfigError(field, f"{cgroups_path!r} must not contain '..'")
