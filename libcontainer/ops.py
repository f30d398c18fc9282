"""The Plan: what the container's init will do, as plain data.

The bottom of the planning layers: it imports nothing from the package, so the planners
(`namespaces`, `rootfs`, `process`, `hooks`, `security.confine`) and `plan`, which drives them,
all build on it without an import loop. The shim executes `ops` in order; when one fails the
child reports its index and `labels[index]` says, in the config's terms, what was being done.
"""
from __future__ import annotations

# Op kinds: the numbers of enum rc_op_kind in csrc/shim.h.
MOUNT, MKDIR, MKNOD, SYMLINK, PIVOT, MASK, READONLY, WRITE = 1, 2, 3, 4, 5, 6, 7, 8
SETHOSTNAME, SETDOMAINNAME, RLIMIT, LOOPBACK_UP, ROOT_PROPAGATION = 9, 10, 11, 12, 13
ROOT_READONLY, CHDIR, USER, CAPS, NO_NEW_PRIVS, UMASK, SECCOMP, WAIT_START = 14, 15, 16, 17, 18, 19, 20, 21
EXEC, BIND_DEV, MKFILE, SETSID, CONSOLE, BOUNDING = 22, 23, 24, 25, 26, 27
SYNC, HOOK, KEYRING = 28, 29, 30
PERSONALITY, IOPRIO, SCHED, MEMPOLICY, AFFINITY = 31, 32, 33, 34, 35
TRAMPOLINE = 36

KIND_NAMES = {v: k for k, v in globals().items() if k.isupper() and isinstance(v, int)}

CLONE_NEWPID = 0x20000000  # namespaces.FLAGS["pid"], spelled out: ops imports nothing
# flags of a WRITE that leads the ops: done first of all, while the init still has the
# runner's credentials and is dumpable (its /proc/self files are its own)
WRITE_EARLY = 1  # shim.h RC_WRITE_EARLY

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
        self.netns_fd = -1            # a network namespace made ahead (netpool), for NEWNET
        # binds the parent makes: (source, uid_map, gid_map, rbind, ridmap, label); a MOUNT
        # op's `e` is index + 1 (shim.idmapped_mount); no maps: a plain bind whose source
        # the container's user namespace may not reach
        self.idmaps: list = []
        # no mount namespace: the rootfs whose mounts are made in the runtime's namespace
        # and detached by delete (hostmounts.py)
        self.host_mounts = ""
        # device nodes the runtime makes on the host for a user namespace, where mknod is
        # refused: (host path, mode, dev, host uid, host gid); each is bound in by the
        # parent (an `idmaps` entry without maps), so the node works (rootfs.make_nodes)
        self.host_nodes: list = []
        # the ops of each `type: cgroup` mount, which name the container's own cgroup:
        # (start, end, what rootfs plans them from); plancache.py plans them again per container
        self.cgroup_mounts: list = []

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
        return bool(self.joins) and (bool(self.clone_flags & CLONE_NEWPID) or
                                     any(t == CLONE_NEWPID for t, _ in self.joins))

    def describe(self) -> list:
        """Human-readable ops, for `runner plan` and tests."""
        out = []
        for label, o in zip(self.labels, self.ops):
            fields = {k: v for k, v in zip(_FIELDS[1:], o[1:]) if v not in (None, 0, "")}
            out.append((KIND_NAMES.get(o[0], str(o[0])), label, fields))
        return out
