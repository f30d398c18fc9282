"""A sandboxed run as an OCI config: the runtime's defaults made strict (no capabilities,
no new privileges, the engines' default seccomp profile, masked paths, only `lo`), the
limits as linux.resources and rlimits, the workdir bound in, /tmp a sized tmpfs."""
from __future__ import annotations

import math
import os

from ..default_spec import MASKED_PATHS, READONLY_PATHS
from ..spec import OCI_VERSION

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
HOSTNAME = "sandbox"
# the v1 cgroup hierarchies a run joins: its limits (memory, pids), its CPU time (cpuacct)
# and the device rules; not cpu, cpuset, blkio, freezer, net_cls, perf_event, name=systemd,
# which hold nothing of a sandbox's (a run is killed through its pid namespace, not the
# freezer): each one was a mkdir, a join and an rmdir per run, ~0.1 ms of CPU (10 on a
# hybrid host: 1.0 ms more CPU than none, 4: 0.4 ms)
CGROUP_CONTROLLERS = ("memory", "pids", "cpuacct", "devices")
_seccomp: list = []


def seccomp_profile() -> dict:
    """The default profile for a process with no capabilities (built once)."""
    if not _seccomp:
        from ..security.seccomp_default import default_profile

        _seccomp.append(default_profile(()))
    return _seccomp[0]


def swap_controllable() -> bool:
    """Whether the host can keep a cgroup off swap: v1 needs memory.memsw.* (swapaccount),
    v2 memory.swap.max."""
    from .. import cgroups

    host = cgroups.detect()
    mem = host.v1.get("memory")
    if mem:
        return os.path.exists(os.path.join(mem, "memory.memsw.limit_in_bytes"))
    return True


_swap: list = []


def make(*, args: list, env: list, cwd: str, uid: int, gid: int, groups: list, rootfs: str,
         readonly: bool, workdir_src: str, workdir_dst: str, limits, network: bool,
         rootless: bool = False, id_maps: tuple = (), cgroup: bool = True,
         copy_workdir: bool = False) -> dict:
    """`id_maps`: (uid mappings, gid mappings) for a user namespace (rootless).
    `cgroup`: False when the limits are to hold through rlimits alone (no cgroup).
    `copy_workdir`: the workdir is a sized tmpfs that starts with a copy of `workdir_src`
    (rootless, where no tmpfs can be mounted on the host)."""
    user = {"uid": uid, "gid": gid}
    if groups:
        user["additionalGids"] = list(groups)
    rlimits = [{"type": "RLIMIT_CORE", "hard": 0, "soft": 0}]
    if limits.open_files is not None:
        rlimits.append({"type": "RLIMIT_NOFILE", "hard": limits.open_files,
                        "soft": limits.open_files})
    if limits.cpu_time is not None:
        # per process, a backstop behind the cgroup's whole-run accounting: SIGXCPU a
        # second late, SIGKILL a second after that (without a cgroup, the limit itself)
        soft = math.ceil(limits.cpu_time) + (1 if cgroup else 0)
        rlimits.append({"type": "RLIMIT_CPU", "hard": soft + 1, "soft": soft})
    if rootless and limits.disk is not None:
        # the host directories an unprivileged Sandbox binds have no size of their own
        rlimits.append({"type": "RLIMIT_FSIZE", "hard": limits.disk, "soft": limits.disk})
    if not cgroup:
        if limits.memory is not None:
            rlimits.append({"type": "RLIMIT_AS", "hard": limits.memory, "soft": limits.memory})
        if limits.pids is not None:
            rlimits.append({"type": "RLIMIT_NPROC", "hard": limits.pids, "soft": limits.pids})
    tmp_opts = ["nosuid", "nodev", "mode=1777"]
    if limits.disk is not None:
        tmp_opts.append(f"size={limits.disk}")
    shm = min(limits.disk or 64 << 20, 64 << 20)
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]
         + ([] if rootless else ["gid=5"])},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
         "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "ro"]},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": tmp_opts},
        {"destination": workdir_dst, "type": "bind", "source": workdir_src,
         "options": ["rbind", "nosuid", "nodev", "rw"]},
    ]
    if copy_workdir:
        opts = ["nosuid", "nodev", "mode=755", f"uid={uid}", f"gid={gid}", "tmpcopyup"]
        if limits.disk is not None:
            opts.append(f"size={limits.disk}")
        mounts.append({"destination": workdir_dst, "type": "tmpfs", "source": "tmpfs",
                       "options": opts})
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    if not network:
        namespaces.append({"type": "network"})
    linux: dict = {"namespaces": namespaces, "maskedPaths": list(MASKED_PATHS),
                   "readonlyPaths": list(READONLY_PATHS), "seccomp": seccomp_profile()}
    if rootless:
        namespaces.insert(0, {"type": "user"})
        linux["uidMappings"], linux["gidMappings"] = id_maps
    if cgroup:
        res: dict = {}
        if limits.memory is not None:
            res["memory"] = {"limit": limits.memory}
            if not _swap:
                _swap.append(swap_controllable())
            if _swap[0]:
                res["memory"]["swap"] = limits.memory  # memory + swap: no swap at all
        if limits.pids is not None:
            res["pids"] = {"limit": limits.pids}
        if res:
            linux["resources"] = res
    return {
        "ociVersion": OCI_VERSION,
        "process": {
            "terminal": False, "user": user, "args": list(args), "env": list(env),
            "cwd": cwd, "capabilities": {k: [] for k in ("bounding", "effective",
                                                          "permitted", "inheritable",
                                                          "ambient")},
            "rlimits": rlimits, "noNewPrivileges": True,
        },
        "root": {"path": rootfs, "readonly": readonly},
        "hostname": HOSTNAME,
        "mounts": mounts,
        "linux": linux,
    }
