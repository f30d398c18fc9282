"""The container's cgroup, through the kernel's files, on v1, v2 and hybrid hosts.

`detect()` reads the host's layout once per process. `Manager.create()` validates
`linux.resources`, creates the container's directory in every hierarchy and applies the
limits, all before the container's process exists; `clone_fd()` lets the shim clone the
init straight into the v2 cgroup (CLONE_INTO_CGROUP) and `join()` puts it into the v1 ones
before it runs any of the container's code. `Manager.state()` / `load()` carry the paths
between commands.

Each resource group is handled by v1 where its controller is mounted on v1, else by v2
where the unified hierarchy offers it (on this kind of hybrid host, hugetlb). The v2
directory is used for freeze and kill only where no v1 freezer exists, and for cgroup.kill
whenever the kernel has it (one write kills everything, race-free).

This face hands names on: the host's layout is `host`, what a `linux.resources` writes
where is `writes`, the directories themselves are `tree`, one container's cgroup is
`manager` (`update`, `unset`, `systemd`, `stats`, `events` as before).
"""
from __future__ import annotations

from .host import (DEFAULT_PREFIX, V1_CONTROLLERS, Host, _inner, check_path, container_dirs,
                   detect)
from .manager import KILL_TIMEOUT, V2_ENABLE, Manager
from .tree import frozen_elsewhere, remove_parent
from .writes import GROUP_FIELD, KEY_GROUPS, _assign, _plan_writes


def load(st: dict) -> Manager:
    """The manager a container's state names: a systemd unit's (--systemd-cgroup,
    systemd.py, loaded only then) or the cgroup files' own."""
    if "systemd" in st:
        from .systemd import SystemdManager

        return SystemdManager(st)
    return Manager(st)


__all__ = ["DEFAULT_PREFIX", "GROUP_FIELD", "KEY_GROUPS", "KILL_TIMEOUT", "V1_CONTROLLERS",
           "V2_ENABLE", "Host", "Manager", "check_path", "container_dirs", "detect",
           "frozen_elsewhere", "load", "remove_parent", "_assign", "_inner", "_plan_writes"]
