"""Spec → Plan: everything the child will do, decided up front as plain data.

A Plan can be printed and compared in unit tests without root. The shim executes `ops` in
order; when one fails the child reports its index and `labels[index]` says, in the config's
terms, what was being done.
"""
from __future__ import annotations

from . import namespaces, process, rootfs
from .errors import ConfigError
from .spec import Spec

# Op kinds: the numbers of enum rc_op_kind in csrc/shim.h.
MOUNT, MKDIR, MKNOD, SYMLINK, PIVOT, MASK, READONLY, WRITE = 1, 2, 3, 4, 5, 6, 7, 8
SETHOSTNAME, SETDOMAINNAME, RLIMIT, LOOPBACK_UP, ROOT_PROPAGATION = 9, 10, 11, 12, 13
ROOT_READONLY, CHDIR, USER, CAPS, NO_NEW_PRIVS, UMASK, SECCOMP, WAIT_START = 14, 15, 16, 17, 18, 19, 20, 21
EXEC, BIND_DEV, MKFILE, SETSID, CONSOLE, BOUNDING = 22, 23, 24, 25, 26, 27
SYNC, HOOK, KEYRING = 28, 29, 30
PERSONALITY, IOPRIO, SCHED, MEMPOLICY, AFFINITY = 31, 32, 33, 34, 35

KIND_NAMES = {v: k for k, v in globals().items() if k.isupper() and isinstance(v, int)}

_FIELDS = ("kind", "path", "src", "fstype", "data", "flags", "pflags", "a", "b", "c", "d", "e")


def op(kind: int, path=None, src=None, fstype=None, data=None, flags=0, pflags=0,
       a=0, b=0, c=0, d=0, e=0) -> tuple:
    """One step for the child; `data` may be bytes (a BPF program) or str."""
    return (kind, path, src, fstype, data, flags, pflags, a, b, c, d, e)


class Plan:
    """What the shim needs, and what the parent side needs to drive it."""

    def __init__(self) -> None:
        self.clone_flags = 0          # CLONE_NEW* to create
        self.new_timens = False
        self.time_offsets = ""        # timens_offsets text
        self.joins: list = []         # (CLONE_NEW*, path), user namespace first
        self.uid_map = ""             # written by the parent to /proc/<pid>/uid_map
        self.gid_map = ""
        self.deny_setgroups = False   # rootless: a gid map needs setgroups denied first
        self.ops: list = []
        self.labels: list = []
        self.argv: tuple = ()
        self.env: tuple = ()
        self.path_env: str | None = None
        self.gids: tuple = ()
        self.keep_fds = 0
        self.console = False          # the child sends a pty master
        self.seccomp_notify = False   # the child sends a seccomp listener fd
        self.seccomp_listener = ""    # where that fd goes (linux.seccomp.listenerPath)
        self.seccomp_metadata = ""
        self.ns_labels: dict = {}     # negative op index → label, for the namespace stage
        self.cgroup_files: list = []  # v1 `tasks` files the child joins itself
        # id-mapped bind mounts: (source, uid_map, gid_map, rbind, ridmap, label); a MOUNT
        # op's `e` is index + 1, and the parent makes that mount (shim.idmapped_mount)
        self.idmaps: list = []

    def add(self, label: str, *args, **kw) -> None:
        self.ops.append(op(*args, **kw))
        self.labels.append(label)

    def label(self, index: int) -> str:
        if 0 <= index < len(self.labels):
            return self.labels[index]
        return self.ns_labels.get(index, "setting up the container")

    @property
    def needs_fork(self) -> bool:
        """The shim forks a second time to enter a pid namespace it could not clone into."""
        return bool(self.joins) and (bool(self.clone_flags & namespaces.FLAGS["pid"]) or
                                     any(t == namespaces.FLAGS["pid"] for t, _ in self.joins))

    def describe(self) -> list:
        """Human-readable ops, for `runner plan` and tests."""
        out = []
        for label, o in zip(self.labels, self.ops):
            fields = {k: v for k, v in zip(_FIELDS[1:], o[1:]) if v not in (None, 0, "")}
            out.append((KIND_NAMES.get(o[0], str(o[0])), label, fields))
        return out


def make(spec: Spec, *, no_pivot: bool = False, keep_fds: int = 0,
         start_fifo_fd: int = -1, hooks: dict | None = None, new_keyring: bool = True,
         warn=None, listen_fds: int = 0) -> Plan:
    """Decide everything the container's init will do before it execs. With a
    `start_fifo_fd` the init blocks on that fifo (`create`) until `start` opens it."""
    if spec.process is None:
        raise ConfigError("process", "is required to start a container")
    if spec.linux.intel_rdt is not None:
        _refuse_intel_rdt()
    plan = Plan()
    ns = namespaces.plan(spec, plan)
    process.plan_early(spec, plan)
    if new_keyring:
        # a keyring of its own, so the container cannot reach the host session's keys
        plan.add("creating a session keyring (--no-new-keyring to skip)", KEYRING)
    rootfs.plan(spec, plan, ns, no_pivot=no_pivot)
    process.plan(spec, plan, ns, keep_fds=keep_fds, start_fifo_fd=start_fifo_fd, warn=warn,
                 listen_fds=listen_fds)
    if hooks:
        _plan_hooks(plan, hooks)
    return plan


RESCTRL = "/sys/fs/resctrl"


def _refuse_intel_rdt() -> None:
    """linux.intelRdt is not implemented. The spec requires an error when resctrl is not
    mounted; when it is, running without the asked-for cache and bandwidth limits would be
    a silent downgrade: refuse too, saying which case this host is."""
    f = "linux.intelRdt"
    mounted = False
    with open("/proc/self/mountinfo") as mi:
        for line in mi:
            parts = line.split()
            if parts[4] == RESCTRL and parts[parts.index("-") + 1] == "resctrl":
                mounted = True
    if mounted:
        raise ConfigError(f, f"resctrl is mounted at {RESCTRL}, but this runtime does not "
                             "implement Intel RDT; remove the field to run without it")
    with open("/proc/filesystems") as fs:
        known = any(line.split()[-1:] == ["resctrl"] for line in fs)
    why = (f"resctrl is not mounted on this host ({RESCTRL})" if known else
           "resctrl is not supported on this host (the kernel has no resctrl filesystem)")
    raise ConfigError(f, f"cannot apply Intel RDT settings: {why}, and this runtime does not "
                         "implement them; remove the field to run without it")


def _plan_hooks(plan: Plan, hooks: dict) -> None:
    from . import hooks as hookmod

    kinds = [o[0] for o in plan.ops]
    pivot = kinds.index(PIVOT)
    if hooks.get("prestart") or hooks.get("createRuntime"):
        # mounts are done, pivot_root is not: the parent runs its hooks now
        plan.ops.insert(pivot, op(SYNC))
        plan.labels.insert(pivot, "running the prestart and createRuntime hooks")
        pivot += 1
    hookmod.add_ops(plan, hooks.get("createContainer", ()), "createContainer", pivot)
    kinds = [o[0] for o in plan.ops]
    at = kinds.index(WAIT_START) + 1 if WAIT_START in kinds else kinds.index(EXEC)
    hookmod.add_ops(plan, hooks.get("startContainer", ()), "startContainer", at)


def make_exec(spec: Spec, proc, init_pid: int, *, keep_fds: int = 0, warn=None) -> Plan:
    """A plan for `exec`: join every namespace of the container's init, then become `proc`.
    Joining the mount namespace puts the process at the container's root already."""
    plan = Plan()
    info = namespaces.plan_join(spec, plan, init_pid)
    process.plan(spec, plan, info, keep_fds=keep_fds, warn=warn, proc=proc, for_exec=True)
    return plan
