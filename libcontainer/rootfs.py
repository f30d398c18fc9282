"""The container's filesystem: mounts, devices, pivot_root, masked and read-only paths,
sysctls — all turned into plan ops. Destinations are resolved by the shim inside the rootfs
(openat2 RESOLVE_IN_ROOT), so nothing here follows the rootfs's symlinks."""
from __future__ import annotations

import os
import stat

from . import ops as P
from .errors import ConfigError
from .namespaces import map_text
from .userns import in_user_namespace, rootless

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_SYNCHRONOUS = 1, 2, 4, 8, 16
MS_REMOUNT, MS_MANDLOCK, MS_DIRSYNC, MS_NOSYMFOLLOW = 32, 64, 128, 256
MS_NOATIME, MS_NODIRATIME, MS_BIND, MS_MOVE, MS_REC = 1024, 2048, 4096, 8192, 16384
MS_SILENT, MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED = 32768, 1 << 17, 1 << 18, 1 << 19, 1 << 20
MS_RELATIME, MS_STRICTATIME, MS_LAZYTIME = 1 << 21, 1 << 24, 1 << 25

# option → (clear, set)
FLAG_OPTIONS = {
    "defaults": (0, 0), "ro": (0, MS_RDONLY), "rw": (MS_RDONLY, 0),
    "nosuid": (0, MS_NOSUID), "suid": (MS_NOSUID, 0), "nodev": (0, MS_NODEV), "dev": (MS_NODEV, 0),
    "noexec": (0, MS_NOEXEC), "exec": (MS_NOEXEC, 0), "sync": (0, MS_SYNCHRONOUS),
    "async": (MS_SYNCHRONOUS, 0), "dirsync": (0, MS_DIRSYNC), "remount": (0, MS_REMOUNT),
    "mand": (0, MS_MANDLOCK), "nomand": (MS_MANDLOCK, 0), "atime": (MS_NOATIME, 0),
    "noatime": (0, MS_NOATIME), "diratime": (MS_NODIRATIME, 0), "nodiratime": (0, MS_NODIRATIME),
    "relatime": (0, MS_RELATIME), "norelatime": (MS_RELATIME, 0),
    "strictatime": (0, MS_STRICTATIME), "nostrictatime": (MS_STRICTATIME, 0),
    "lazytime": (0, MS_LAZYTIME), "nolazytime": (MS_LAZYTIME, 0),
    "silent": (0, MS_SILENT), "loud": (MS_SILENT, 0), "nosymfollow": (0, MS_NOSYMFOLLOW),
    "symfollow": (MS_NOSYMFOLLOW, 0), "bind": (0, MS_BIND), "rbind": (0, MS_BIND | MS_REC),
}
PROPAGATION = {
    "private": MS_PRIVATE, "rprivate": MS_PRIVATE | MS_REC, "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC, "slave": MS_SLAVE, "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE, "runbindable": MS_UNBINDABLE | MS_REC,
}
# mount_setattr(2) attributes for the recursive options: option → (set, clear)
ATTR_RDONLY, ATTR_NOSUID, ATTR_NODEV, ATTR_NOEXEC = 1, 2, 4, 8
ATTR_ATIME_MASK, ATTR_NOATIME, ATTR_STRICTATIME, ATTR_NODIRATIME, ATTR_NOSYMFOLLOW = 0x70, 0x10, 0x20, 0x80, 0x200000
RECURSIVE_OPTIONS = {
    "rro": (ATTR_RDONLY, 0), "rrw": (0, ATTR_RDONLY), "rnosuid": (ATTR_NOSUID, 0),
    "rsuid": (0, ATTR_NOSUID), "rnodev": (ATTR_NODEV, 0), "rdev": (0, ATTR_NODEV),
    "rnoexec": (ATTR_NOEXEC, 0), "rexec": (0, ATTR_NOEXEC), "rnodiratime": (ATTR_NODIRATIME, 0),
    "rdiratime": (0, ATTR_NODIRATIME), "rrelatime": (0, ATTR_ATIME_MASK),
    "rnorelatime": (0, 0), "rnoatime": (ATTR_NOATIME, ATTR_ATIME_MASK),
    "ratime": (0, ATTR_NOATIME), "rstrictatime": (ATTR_STRICTATIME, ATTR_ATIME_MASK),
    "rnostrictatime": (0, ATTR_STRICTATIME), "rnosymfollow": (ATTR_NOSYMFOLLOW, 0),
    "rsymfollow": (0, ATTR_NOSYMFOLLOW),
}
UNSUPPORTED_OPTIONS = {"copy-symlink"}
# id-mapped bind mounts: the mount's uidMappings/gidMappings, or the container's own
IDMAP_OPTIONS = {"idmap", "ridmap"}
# runc's extension (podman sets it on its tmpfs mounts, e.g. for --read-only and --tmpfs):
# the new tmpfs starts with a copy of what the directory it covers held
COPYUP_OPTIONS = {"tmpcopyup"}

DEFAULT_DEVICES = (  # path, major, minor
    ("/dev/null", 1, 3), ("/dev/zero", 1, 5), ("/dev/full", 1, 7),
    ("/dev/random", 1, 8), ("/dev/urandom", 1, 9), ("/dev/tty", 5, 0),
)
DEV_LINKS = (("/dev/fd", "/proc/self/fd"), ("/dev/stdin", "/proc/self/fd/0"),
             ("/dev/stdout", "/proc/self/fd/1"), ("/dev/stderr", "/proc/self/fd/2"))
S_IFMT = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


class MountOptions:
    __slots__ = ("flags", "propagation", "attr_set", "attr_clr", "data", "copyup", "idmap")

    def __init__(self) -> None:
        self.flags = 0
        self.propagation = 0
        self.attr_set = 0
        self.attr_clr = 0
        self.data: list = []
        self.copyup = False
        self.idmap = ""  # "idmap" or "ridmap"


def parse_options(options, field: str) -> MountOptions:
    mo = MountOptions()
    for i, opt in enumerate(options):
        if opt in FLAG_OPTIONS:
            clr, st = FLAG_OPTIONS[opt]
            mo.flags = (mo.flags & ~clr) | st
        elif opt in PROPAGATION:
            mo.propagation |= PROPAGATION[opt]
        elif opt in RECURSIVE_OPTIONS:
            st, clr = RECURSIVE_OPTIONS[opt]
            mo.attr_set = (mo.attr_set & ~clr) | st
            mo.attr_clr |= clr
        elif opt in COPYUP_OPTIONS:
            mo.copyup = True
        elif opt in IDMAP_OPTIONS:
            if mo.idmap and mo.idmap != opt:
                raise ConfigError(f"{field}[{i}]", "idmap and ridmap exclude each other")
            mo.idmap = opt
        elif opt in UNSUPPORTED_OPTIONS:
            raise ConfigError(f"{field}[{i}]", f"mount option {opt!r} is not supported")
        else:
            mo.data.append(opt)
    return mo


def root_propagation(prop: int) -> tuple:
    """(for "/" of the new mount namespace, for the mount the rootfs is on, for the
    container's "/" once pivoted) for linux.rootfsPropagation `prop` (0: not set), as runc
    does it (rootfs_linux.go: prepareRoot, rootfsParentMountPropagation, and the flags
    applied after pivot_root).

    "/" gets the requested propagation itself: made a slave first, a host volume bound
    with rshared would land in a new peer group (shared:N master:M) and a mount made in
    the container would never reach the host (critest's rshared test). The mount the
    rootfs sits on is made private (a slave, for [r]slave) so that binding the rootfs on
    itself neither propagates to the host nor leaves pivot_root a shared parent. Shared
    and unbindable are applied to the container's "/" at the end; private and slave are
    had already from the rootfs's parent.

    Not set: "/" an rslave, as runc; nothing is shared, so the rootfs's parent needs
    nothing. Unbindable, r or not: runc 1.1 makes "/" unbindable first and then cannot
    bind the rootfs on itself (EINVAL; it fails every such config), and a volume from the
    host's root could not be bound either: here "/" is made rprivate, and the container's
    "/" unbindable at the end."""
    if not prop:
        return MS_SLAVE | MS_REC, 0, 0
    if prop & MS_UNBINDABLE:
        return MS_PRIVATE | MS_REC, 0, prop
    parent = MS_SLAVE if prop & MS_SLAVE else MS_PRIVATE
    after = 0 if prop & (MS_PRIVATE | MS_SLAVE) else prop
    return prop, parent, after


def plan(spec, plan, ns, no_pivot: bool = False, cgroup=None, node_dir: str = "") -> None:
    lx = spec.linux
    root_prop = PROPAGATION[lx.rootfs_propagation] if lx.rootfs_propagation else 0
    if no_pivot and root_prop & MS_PRIVATE:
        # as runc: the old root stays mounted under the moved one, and a private copy of
        # the host's mounts would keep what the host unmounts busy
        raise ConfigError("linux.rootfsPropagation", f"{lx.rootfs_propagation!r} is not safe "
                          "without pivot_root (--no-pivot)")
    base, parent, after = root_propagation(root_prop)
    # no mount namespace: the runtime's is the container's (hostmounts.py); its "/" is left
    # alone, the rootfs is bound on itself there and chrooted into
    in_host = not ns.has("mount")
    plan.host_mounts = spec.root_path if in_host else ""
    plan.add("linux.namespaces: no mount namespace, mounting in the runtime's" if in_host else
             "linux.rootfsPropagation: preparing the mount namespace", P.ROOT_PROPAGATION,
             path=spec.root_path, flags=0 if in_host else base, a=0 if in_host else parent)

    dev_from_host = False
    late: list = []
    for i, m in enumerate(spec.mounts):
        field = f"mounts[{i}]"
        if m.destination == "/dev" and _is_bind(m):
            dev_from_host = True
        _plan_mount(spec, plan, ns, m, field, late, cgroup)

    if not dev_from_host:
        _plan_devices(spec, plan, ns, node_dir)
    # A read-only tmpfs is mounted read-write and made read-only only now, as runc does:
    # later mounts may need mount points created in it (podman's --tmpfs /etc:ro gets
    # /etc/hostname bound in), and tmpcopyup fills it first.
    if spec.process and spec.process.terminal and any(dest == "/dev" for _, dest, _ in late):
        # the console is bound on /dev/console later: its mount point must exist before
        # /dev turns read-only (runc makes it before its read-only remounts too)
        plan.add("process.terminal: creating /dev/console before /dev turns read-only",
                 P.MKFILE, path="/dev/console")
    for field, dest, flags in late:
        plan.add(f"{field}: making the tmpfs on {dest} read-only", P.MOUNT, path=dest,
                 flags=flags | MS_REMOUNT)
    if "network" in ns.new:
        plan.add("linux.namespaces: bringing up lo in the new network namespace", P.LOOPBACK_UP)
    cwd = spec.process.cwd if spec.process else "/"
    if cwd != "/":
        plan.add(f"process.cwd: creating {cwd}", P.MKDIR, path=cwd, a=0o755)
    if in_host:
        plan.add("root.path: chroot into " + spec.root_path + " (no mount namespace)",
                 P.PIVOT, flags=2)
    else:
        plan.add("root.path: pivot_root into " + spec.root_path +
                 (" (no pivot)" if no_pivot else ""), P.PIVOT, flags=1 if no_pivot else 0)
    for key, value in lx.sysctl.items():
        _check_sysctl(key, ns)
        plan.add(f"linux.sysctl.{key}: writing {value!r}", P.WRITE,
                 path="/proc/sys/" + key.replace(".", "/"), data=value, a=1)
    # read-only paths first, then the masks (runc's order: a mask under a read-only path is
    # mounted on it, not copied into its bind)
    for i, p in enumerate(lx.readonly_paths):
        plan.add(f"linux.readonlyPaths[{i}]: making {p} read-only", P.READONLY, path=p)
    for i, p in enumerate(lx.masked_paths):
        plan.add(f"linux.maskedPaths[{i}]: masking {p}", P.MASK, path=p)
    if after and not in_host:
        # after the masks and read-only paths, which are binds (a bind from an unbindable
        # tree fails)
        plan.add("linux.rootfsPropagation", P.MOUNT, path="/", pflags=after)
    if spec.root_readonly:
        plan.add("root.readonly: remounting / read-only", P.ROOT_READONLY)


def _is_bind(m) -> bool:
    return m.type == "bind" or "bind" in m.options or "rbind" in m.options


def _plan_mount(spec, plan, ns, m, field: str, late: list, cgroup=None) -> None:
    mo = parse_options(m.options, f"{field}.options")
    data = mo.data
    src = m.source
    fstype = m.type
    target_is_file = 0
    if _is_bind(m):
        mo.flags |= MS_BIND
        fstype = None
        if not src:
            raise ConfigError(f"{field}.source", "a bind mount needs a source")
        if not src.startswith("/"):
            src = os.path.join(spec.bundle, src)
        try:
            st = os.stat(src)
        except OSError as e:
            raise ConfigError(f"{field}.source", f"{src}: {e.strerror}") from None
        target_is_file = 0 if stat.S_ISDIR(st.st_mode) else 1
        data = []
    elif fstype == "cgroup":
        start = len(plan.ops)
        _plan_cgroup_mount(plan, ns, m, mo, field, cgroup)
        plan.cgroup_mounts.append((start, len(plan.ops), (ns, m, mo, field)))
        return
    elif not fstype:
        raise ConfigError(f"{field}.type", "is required for a mount that is not a bind mount")
    else:
        _check_proc_sys_destination(spec, m, field)
    if fstype == "sysfs" and ns.in_userns and "network" not in ns.new:
        # sysfs can only be mounted by the owner of the network namespace: bind the host's
        fstype, src, mo.flags = None, "/sys", mo.flags | MS_BIND | MS_REC
    if fstype == "devpts" and ns.in_userns:
        data = [d for d in data if not (d.startswith("gid=") and not ns.gid_mapped(int(d[4:] or 0)))]
    if mo.copyup and fstype != "tmpfs":
        raise ConfigError(f"{field}.options", "tmpcopyup is only for tmpfs mounts")
    idmap = _plan_idmap(spec, plan, ns, m, mo, field, src,
                        fstype is None and bool(mo.flags & MS_BIND))
    if fstype == "tmpfs" and mo.flags & MS_RDONLY:
        late.append((field, m.destination, mo.flags))
        mo.flags &= ~MS_RDONLY
    plan.add(f"{field}: mounting {m.source or m.type} on {m.destination}"
             + (" (with a copy of what it covers)" if mo.copyup else ""), P.MOUNT,
             path=m.destination, src=src or m.type, fstype=fstype, data=",".join(data) or None,
             flags=mo.flags, pflags=mo.propagation, a=target_is_file, b=mo.attr_set, c=mo.attr_clr,
             d=1 if mo.copyup else 0, e=idmap)


def _check_proc_sys_destination(spec, m, field: str) -> None:
    """procfs and sysfs only on an ordinary directory, as runc insists: mounted through a
    symlink in the rootfs they would land wherever the image points (CVE-2019-19921).
    The shim checks again when it mounts; this says it in the config's terms first."""
    if m.type not in ("proc", "sysfs"):
        return
    path = os.path.join(spec.root_path, m.destination.lstrip("/"))
    try:
        st = os.lstat(path)
    except OSError:
        return  # missing: the shim creates the directory
    if stat.S_ISDIR(st.st_mode):
        return
    what = (f"a symlink to {os.readlink(path)!r}" if stat.S_ISLNK(st.st_mode)
            else "not a directory")
    raise ConfigError(f"{field}.destination", f"{m.destination} in the rootfs is {what}: "
                      f"{m.type} must be mounted on an ordinary directory")


def _plan_idmap(spec, plan, ns, m, mo, field: str, src: str, is_bind: bool) -> int:
    """An idmapped bind (idmap, ridmap, or mappings on the mount): its maps are the mount's
    own, else the container's (config.md allows that; without a user namespace there is
    nothing to use). → the MOUNT op's `e` (0: a plain mount).

    A plain bind in a user namespace is made by the parent too, when the runtime is root:
    the container's root is an unprivileged uid on the host, which may not reach the
    source (a volume under a mode-700 directory); runc opens such sources in its parent."""
    kind = mo.idmap or ("idmap" if m.uid_mappings else "")
    if not kind:
        if is_bind and ns.in_userns and os.geteuid() == 0:
            plan.idmaps.append((src, "", "", bool(mo.flags & MS_REC), False,
                                f"{field}: mounting {src} on {m.destination}"))
            return len(plan.idmaps)
        return 0
    if not is_bind:
        raise ConfigError(f"{field}.options", f"{kind}: id mappings are only for bind mounts")
    if rootless():
        raise ConfigError(f"{field}.options", f"{kind}: id-mapped mounts need a runtime running "
                          "as root (the kernel wants CAP_SYS_ADMIN over the source's filesystem)")
    uid_maps, gid_maps = m.uid_mappings, m.gid_mappings
    if not uid_maps:
        uid_maps, gid_maps = spec.linux.uid_mappings, spec.linux.gid_mappings
        if not uid_maps:
            raise ConfigError(f"{field}.options", f"{kind}: the mount has no uidMappings/"
                              "gidMappings and the container no user namespace mappings")
    label = f"{field}: mounting an id-mapped copy of {src} on {m.destination}"
    plan.idmaps.append((src, map_text(uid_maps), map_text(gid_maps), bool(mo.flags & MS_REC),
                        kind == "ridmap", label))
    return len(plan.idmaps)


def _plan_cgroup_mount(plan, ns, m, mo, field: str, cgroup) -> None:
    """`type: cgroup` means "the container's cgroups": each hierarchy shows the container's
    own cgroup at its root. With a cgroup namespace (and no user namespace) that is a fresh
    mount of each hierarchy; otherwise the container's directories are bound (as runc does
    on v1; on v2 too, where runc and crun would show the whole tree). On a v1 or hybrid host
    a tmpfs holds one directory per hierarchy, and links for co-mounted controllers."""
    from .cgroups import container_dirs, detect

    host = detect()
    dirs = container_dirs(cgroup, host)
    flags, dest = mo.flags, m.destination
    fresh = "cgroup" in ns.new and not ns.in_userns and not in_user_namespace()
    if host.mode == "v2":
        if "cgroup" in ns.new:
            plan.add(f"{field}: mounting cgroup2 on {dest}", P.MOUNT, path=dest,
                     src="cgroup2", fstype="cgroup2", flags=flags, pflags=mo.propagation)
        else:
            plan.add(f"{field}: binding the container's cgroup {dirs[host.unified]} on {dest}",
                     P.MOUNT, path=dest, src=dirs[host.unified], flags=flags | MS_BIND | MS_REC,
                     pflags=mo.propagation)
        return
    plan.add(f"{field}: mounting tmpfs on {dest}", P.MOUNT, path=dest,
             src="tmpfs", fstype="tmpfs", data="mode=755", flags=(flags & ~MS_RDONLY))
    names = []
    for mnt, own in dirs.items():
        name = os.path.basename(mnt)
        names.append(name)
        if fresh:
            fstype, opts = _hierarchy(mnt)
            plan.add(f"{field}: mounting the {name} cgroup hierarchy", P.MOUNT,
                     path=f"{dest}/{name}", src="cgroup", fstype=fstype, data=opts, flags=flags)
        else:
            plan.add(f"{field}: binding the container's {name} cgroup {own}", P.MOUNT,
                     path=f"{dest}/{name}", src=own, flags=flags | MS_BIND | MS_REC)
    for name in names:  # cpu -> cpu,cpuacct, as the host has them (and runc makes them)
        for part in name.split(",") if "," in name else ():
            if part not in names:
                plan.add(f"{field}: linking {dest}/{part} to {name}", P.SYMLINK,
                         path=f"{dest}/{part}", src=name)
    if flags & MS_RDONLY:
        plan.add(f"{field}: remounting {dest} read-only", P.MOUNT, path=dest,
                 flags=(flags & ~MS_BIND) | MS_REMOUNT | MS_RDONLY)


def _hierarchy(path: str):
    with open("/proc/self/mountinfo") as f:
        for line in f:
            parts = line.split()
            if parts[4] == path:
                sep = parts.index("-")
                fstype, opts = parts[sep + 1], parts[sep + 3]
                keep = [o for o in opts.split(",") if o not in ("rw", "ro")]
                return fstype, ",".join(keep) if fstype == "cgroup" else None
    return "cgroup", None


def _plan_devices(spec, plan, ns, node_dir: str = "") -> None:
    configured = {d.path for d in spec.linux.devices}
    for path, major, minor in DEFAULT_DEVICES:
        if path not in configured:
            _plan_device(plan, ns, path, stat.S_IFCHR | 0o666, major, minor, 0, 0,
                         f"creating the default device {path}")
    for i, d in enumerate(spec.linux.devices):
        _plan_device(plan, ns, d.path, S_IFMT[d.type] | (d.file_mode & 0o7777), d.major,
                     d.minor, d.uid, d.gid, f"linux.devices[{i}]: creating {d.path}",
                     field=f"linux.devices[{i}]", node_dir=node_dir)
    for link, target in DEV_LINKS:
        plan.add(f"creating the link {link} -> {target}", P.SYMLINK, path=link, src=target)
    if not any(m.destination == "/dev/ptmx" for m in spec.mounts):
        plan.add("creating the link /dev/ptmx -> pts/ptmx", P.SYMLINK, path="/dev/ptmx", src="pts/ptmx")


def _plan_device(plan, ns, path, mode, major, minor, uid, gid, label, field=None,
                 node_dir: str = "") -> None:
    if ns.in_userns and not stat.S_ISFIFO(mode) and field and node_dir and not rootless():
        # mknod is refused in a user namespace, and a node on a filesystem the namespace
        # mounted would not open: the runtime makes it on the host, owned by the host ids
        # of uid/gid, and binds it in from the host's side (as crun precreates them)
        host_uid, host_gid = ns.host_uid(uid), ns.host_gid(gid)
        if host_uid is None:
            raise ConfigError(f"{field}.uid", f"{uid} is not mapped in linux.uidMappings")
        if host_gid is None:
            raise ConfigError(f"{field}.gid", f"{gid} is not mapped in linux.gidMappings")
        node = os.path.join(node_dir, f"device-{len(plan.host_nodes)}")
        plan.host_nodes.append((node, mode, os.makedev(major, minor), host_uid, host_gid))
        plan.idmaps.append((node, "", "", False, False, label))
        plan.add(label + " (made by the runtime, bound in)", P.MOUNT, path=path, src=node,
                 flags=MS_BIND, a=1, e=len(plan.idmaps))
        return
    if (ns.in_userns or in_user_namespace()) and not stat.S_ISFIFO(mode):
        # mknod is not allowed in a user namespace (the container's, or the one the runtime
        # itself runs in, as under rootless podman): bind the host's node (never chown it)
        try:
            st = os.stat(path)
        except OSError:
            if field is None:
                return  # a default device this host lacks
            raise ConfigError(f"{field}.path", f"{path} does not exist on the host; in a user "
                                               "namespace devices are bind-mounted from the host") from None
        if field is not None and (stat.S_IFMT(st.st_mode) != stat.S_IFMT(mode) or
                                  st.st_rdev != os.makedev(major, minor)):
            raise ConfigError(field, f"the host's {path} is {os.major(st.st_rdev)}:"
                                     f"{os.minor(st.st_rdev)}, not {major}:{minor}; in a user "
                                     "namespace the host's node is bind-mounted as it is")
        plan.add(label + " (bind from the host)", P.BIND_DEV, path=path, src=path)
        return
    dev = os.makedev(major, minor)
    plan.add(label, P.MKNOD, path=path, a=mode, b=dev, c=uid, d=gid)


# Sysctls that a namespace isolates, as runc allows them.
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
                "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


def _check_sysctl(key: str, ns) -> None:
    field = f"linux.sysctl.{key}"
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if not ns.has("ipc"):
            raise ConfigError(field, "needs an ipc namespace")
    elif key.startswith("net."):
        if not ns.has("network"):
            raise ConfigError(field, "needs a network namespace")
    elif key == "kernel.hostname":
        # the OCI `hostname` field says it; a second way that may disagree is refused (runc,
        # crun), with or without a uts namespace
        raise ConfigError(field, "conflicts with the OCI hostname field: use hostname")
    elif key == "kernel.domainname":
        if not ns.has("uts"):
            raise ConfigError(field, "needs a uts namespace")
    else:
        raise ConfigError(field, "is not namespaced: it would change the host")


def make_nodes(plan) -> None:
    """Parent side, before the init runs: make the device nodes planned in `host_nodes`
    (files of the container's state dir, removed with it)."""
    for path, mode, dev, uid, gid in plan.host_nodes:
        os.mknod(path, mode, dev)
        os.chown(path, uid, gid)
        os.chmod(path, mode & 0o7777)  # exactly fileMode: mknod's is cut by the umask
