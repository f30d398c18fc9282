"""What an unprivileged runner may use of the host's cgroups: only what was delegated to it.

A cgroup is delegated to a user (systemd's Delegate=, or by hand) when its directory and its
cgroup.procs, cgroup.subtree_control and cgroup.threads are theirs. On v2 the kernel also
wants the user's own process inside that subtree: moving a process (clone3 into a cgroup,
a write to cgroup.procs) needs write access to the common ancestor of where it is and where
it goes. Hierarchies that fail these checks are left out, as runc does; a limit that would
have needed one is an error naming its field (runc: "cannot set memory limit: container
could not join or create cgroup"): a limit silently not applied is worse than none asked."""
from __future__ import annotations

import os

from ..errors import ConfigError


def nearest_dir(path: str, mount: str) -> str:
    """`path` or its nearest existing ancestor (not above `mount`)."""
    d = path
    while not os.path.isdir(d) and d != mount and d != "/":
        d = os.path.dirname(d)
    return d


def writable(target: str, mount: str, own: str | None = None) -> str:
    """"" when this process may create (or reuse) the cgroup `target` in the hierarchy
    mounted at `mount` and move processes into it; else the file or directory that is not
    writable. `own` (v2 only): our own cgroup's directory."""
    d = nearest_dir(target, mount)
    if d == target:
        need = os.path.join(d, "cgroup.procs")
        if not os.access(need, os.W_OK):
            return need
    elif not os.access(d, os.W_OK | os.X_OK):
        return d
    if own is not None:
        common = os.path.commonpath([own, target])
        procs = os.path.join(common, "cgroup.procs")
        if not os.access(procs, os.W_OK):
            return procs
    return ""


def restrict(host, paths: dict, unified: str, groups: dict, plan: dict, cgroups_path: str):
    """(v1 paths, v2 directory) this user may use; raises for a limit or an explicit
    linux.cgroupsPath that would need what it may not use."""
    uid = os.geteuid()
    who = f"uid {uid}" if uid else "root of a user namespace"  # not the host's root
    blocked = {}
    keep = {}
    for ctrl, path in paths.items():
        why = writable(path, host.v1[ctrl])
        if why:
            blocked[ctrl] = why
        else:
            keep[ctrl] = path
    uni = unified
    if unified:
        own = os.path.normpath(host.unified + host.own.get("", "/"))
        why = writable(unified, host.unified, own)
        if why:
            blocked["unified"] = why
            uni = ""
    hint = "; delegate a cgroup v2 subtree to this user (see README, Rootless), or run as root"
    no_v2 = (f"cannot be applied: the runner runs as {who} and no cgroup v2 subtree is "
             f"delegated to it ({blocked.get('unified', 'no cgroup2 mount')} is not writable)"
             + hint)
    from .writes import GROUP_FIELD

    for g, where in sorted(groups.items()):
        if g not in plan:
            continue
        if where == "v1" and g not in keep:
            raise ConfigError(f"linux.resources.{GROUP_FIELD[g]}",
                              f"cannot be applied: the runner runs as {who} and the {g} "
                              f"cgroup is not delegated to it ({blocked[g]} is not writable)"
                              + hint)
        if where == "v2" and not uni:
            raise ConfigError(f"linux.resources.{GROUP_FIELD[g]}", no_v2)
    if any(k.startswith("unified:") for k in plan) and not uni:
        raise ConfigError("linux.resources.unified", no_v2)
    if cgroups_path and not keep and not uni:
        first = next(iter(blocked.values()), "no cgroup hierarchy")
        raise ConfigError("linux.cgroupsPath",
                          f"{cgroups_path}: the runner runs as {who} and may not create it "
                          f"({first} is not writable){hint}")
    return keep, uni
