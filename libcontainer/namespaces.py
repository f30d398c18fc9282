"""Namespaces: which to create, which to join, and the user namespace's id maps."""
from __future__ import annotations

import os

from .errors import ConfigError, StartError

FLAGS = {
    "mount": 0x00020000, "uts": 0x04000000, "ipc": 0x08000000, "user": 0x10000000,
    "pid": 0x20000000, "network": 0x40000000, "cgroup": 0x02000000, "time": 0x00000080,
}
# /proc/<pid>/ns/<name> for each type
PROC_NAMES = {"mount": "mnt", "uts": "uts", "ipc": "ipc", "user": "user", "pid": "pid",
              "network": "net", "cgroup": "cgroup", "time": "time"}


class NamespaceInfo:
    """What later planning stages need to know about the namespaces."""

    def __init__(self) -> None:
        self.new: set = set()
        self.joined: set = set()
        self.in_userns = False      # the container runs in a user namespace (new or joined)
        self.rootless = os.geteuid() != 0
        self.uid_mappings: tuple = ()
        self.gid_mappings: tuple = ()

    def has(self, kind: str) -> bool:
        return kind in self.new or kind in self.joined

    def host_uid(self, uid: int) -> int | None:
        return _map_id(self.uid_mappings, uid) if self.in_userns and self.uid_mappings else uid

    def host_gid(self, gid: int) -> int | None:
        return _map_id(self.gid_mappings, gid) if self.in_userns and self.gid_mappings else gid

    def gid_mapped(self, gid: int) -> bool:
        return not self.in_userns or not self.gid_mappings or _map_id(self.gid_mappings, gid) is not None


def _map_id(mappings, cid: int) -> int | None:
    for m in mappings:
        if m.container_id <= cid < m.container_id + m.size:
            return m.host_id + cid - m.container_id
    return None


def plan(spec, plan) -> NamespaceInfo:
    info = NamespaceInfo()
    lx = spec.linux
    joins = []
    for i, ns in enumerate(lx.namespaces):
        if ns.path:
            info.joined.add(ns.type)
            joins.append((0 if ns.type == "user" else 1, i, FLAGS[ns.type], ns.path))
        else:
            info.new.add(ns.type)
    # the user namespace is joined first: it decides what the others may do
    joins.sort()
    for k, (_, i, flag, path) in enumerate(joins):
        plan.joins.append((flag, path))
        plan.ns_labels[-1 - k] = f"linux.namespaces[{i}]: joining {path}"
    for kind in info.new:
        if kind == "time":
            plan.new_timens = True
        else:
            plan.clone_flags |= FLAGS[kind]
    plan.ns_labels.update({
        -100: "linux.namespaces: creating the user namespace",
        -101: "linux.namespaces: creating namespaces",
        -102: "linux.namespaces: creating the time namespace",
        -103: "linux.timeOffsets: writing /proc/self/timens_offsets",
        -104: "setting up stdio and closing inherited fds",
        -105: "joining the container's cgroups",
        -106: "linux.namespaces: entering the network namespace made ahead",
    })
    if lx.time_offsets:
        plan.time_offsets = "".join(f"{clock} {s} {ns}\n" for clock, (s, ns) in lx.time_offsets.items())
    info.in_userns = "user" in info.new or "user" in info.joined
    if info.rootless and not info.in_userns:
        raise ConfigError("linux.namespaces", "running as an unprivileged user needs a user namespace")
    if "user" in info.new:
        info.uid_mappings = lx.uid_mappings
        info.gid_mappings = lx.gid_mappings
        plan.uid_map = map_text(lx.uid_mappings)
        plan.gid_map = map_text(lx.gid_mappings)
        plan.deny_setgroups = info.rootless
    return info


def plan_join(spec, plan, init_pid: int) -> NamespaceInfo:
    """Join every namespace of the running container (for exec): /proc/<init>/ns/*."""
    info = NamespaceInfo()
    kinds = [ns.type for ns in spec.linux.namespaces]
    # the user namespace first; the others are then joined with its privileges
    kinds.sort(key=lambda k: k != "user")
    for k, kind in enumerate(kinds):
        path = f"/proc/{init_pid}/ns/{PROC_NAMES[kind]}"
        plan.joins.append((FLAGS[kind], path))
        plan.ns_labels[-1 - k] = f"joining the container's {kind} namespace ({path})"
        info.joined.add(kind)
    plan.ns_labels[-104] = "setting up stdio and closing inherited fds"
    plan.ns_labels[-105] = "joining the container's cgroups"
    info.in_userns = "user" in info.joined
    info.uid_mappings = spec.linux.uid_mappings
    info.gid_mappings = spec.linux.gid_mappings
    return info


def map_text(mappings) -> str:
    """IDMappings as uid_map/gid_map lines."""
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings)


def write_id_maps(pid: int, plan) -> None:
    """Give the child's new user namespace its maps (parent side). Root writes them
    directly; an unprivileged user may map only itself, unless newuidmap/newgidmap and
    /etc/subuid allow more."""
    if plan.deny_setgroups and _is_self_map(plan.uid_map, os.geteuid()) and \
            _is_self_map(plan.gid_map, os.getegid()):
        _write(f"/proc/{pid}/setgroups", "deny", "linux.gidMappings")
        _write(f"/proc/{pid}/uid_map", plan.uid_map, "linux.uidMappings")
        _write(f"/proc/{pid}/gid_map", plan.gid_map, "linux.gidMappings")
        return
    if os.geteuid() != 0:
        _helper("newuidmap", pid, plan.uid_map, "linux.uidMappings")
        _helper("newgidmap", pid, plan.gid_map, "linux.gidMappings")
        return
    _write(f"/proc/{pid}/uid_map", plan.uid_map, "linux.uidMappings")
    _write(f"/proc/{pid}/gid_map", plan.gid_map, "linux.gidMappings")


def _is_self_map(text: str, own: int) -> bool:
    parts = text.split()
    return len(parts) == 3 and parts[1] == str(own) and parts[2] == "1"


def _write(path: str, text: str, field: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise StartError(f"{field}: writing {path}: {e.strerror}", e.errno, field) from None


def _helper(tool: str, pid: int, text: str, field: str) -> None:
    import subprocess

    from .subids import SUBGID, SUBUID, helper

    exe = helper(tool)
    if exe is None:
        raise StartError(f"{field}: mapping more than your own id needs {tool} "
                         "(Debian: apt-get install uidmap)", 0, field)
    args = [exe, str(pid)] + text.split()
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        files = SUBUID if tool == "newuidmap" else SUBGID
        raise StartError(f"{field}: {tool} refused the map ({r.stderr.strip()}); every id but "
                         f"your own must be in your range in {files}", 0, field)
