"""The container's process: hostname, rlimits, terminal, user, capabilities, umask, cwd,
no_new_privs, and the exec itself — as plan ops, in the order the kernel needs them."""
from __future__ import annotations

import os

from . import ops as P
from .errors import ConfigError, InvalidArgument
from .security import capabilities

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
RLIM_INFINITY = (1 << 64) - 1
CAP_SYS_RESOURCE = 24


def plan_early(spec, plan) -> None:
    """Steps that use the host's /proc, first of all (before the namespaces are made)."""
    proc = spec.process
    if proc is not None and proc.oom_score_adj is not None:
        label = f"process.oomScoreAdj: writing {proc.oom_score_adj}"
        with open("/proc/self/oom_score_adj") as f:
            current = int(f.read())
        if proc.oom_score_adj < current and not _has_effective_cap(CAP_SYS_RESOURCE):
            # the kernel refuses with a bare EACCES: say why
            label += (f" (lowering it below the runner's own {current} needs CAP_SYS_RESOURCE, "
                      "which this runtime does not have)")
        # EARLY: in a new user namespace, once the init is non-dumpable its /proc/self files
        # belong to the host's root, which the namespace's root may not write (EACCES);
        # runc writes the score before it makes the namespaces, too
        plan.add(label, P.WRITE, path="/proc/self/oom_score_adj", data=str(proc.oom_score_adj),
                 flags=P.WRITE_EARLY)


def needs_confine(spec, proc, for_exec: bool = False) -> bool:
    """Whether `proc` asks for what security.confine plans (LSM labels, personality,
    ioPriority, scheduler, memoryPolicy, execCPUAffinity, seccomp)."""
    lx = spec.linux
    return bool(proc.apparmor_profile or proc.selinux_label or proc.io_priority is not None or
                proc.scheduler is not None or lx.personality is not None or
                lx.seccomp is not None or lx.memory_policy is not None or lx.mount_label or
                (for_exec and proc.exec_cpu_affinity is not None))


def plan(spec, plan, ns, keep_fds: int = 0, start_fifo_fd: int = -1, warn=None,
         proc=None, for_exec: bool = False, listen_fds: int = 0) -> None:
    """`proc` overrides spec.process (exec); `for_exec` skips what belongs to the container
    as a whole (hostname, domainname), which the joined namespaces already have."""
    proc = proc or spec.process
    conf = None
    if needs_confine(spec, proc, for_exec):
        # LSM, personality, ioPriority, scheduler, memoryPolicy, execCPUAffinity, seccomp:
        # checked (and the filter compiled) here, before anything runs; imported only for
        # configs that ask
        from .security import confine

        conf = confine.prepare(spec, proc, warn, for_exec=for_exec)
    # The init leaves execCPUAffinity alone: config.md, "not applicable to the container's
    # init process" (runc too). The config's value is for `exec`, which inherits it.
    # hostname and domainname are set in the container's uts namespace, a new one or one
    # joined by path (config.md); never in the runtime's own
    if spec.hostname and not for_exec:
        if not ns.has("uts"):
            raise ConfigError("hostname", "needs a uts namespace (a new one or one joined by path)")
        plan.add(f"hostname: setting {spec.hostname!r}", P.SETHOSTNAME, data=spec.hostname)
    if spec.domainname and not for_exec:
        if not ns.has("uts"):
            raise ConfigError("domainname", "needs a uts namespace (a new one or one joined by path)")
        plan.add(f"domainname: setting {spec.domainname!r}", P.SETDOMAINNAME, data=spec.domainname)
    _plan_rlimits(proc, plan)

    if proc.terminal:
        plan.console = True
        # c: an exec'd process gets a pty of its own but leaves /dev/console alone: it is
        # the init's (a bind mount then, which cannot be replaced), as runc leaves it
        plan.add("process.terminal: creating the console", P.CONSOLE,
                 a=proc.user.uid, b=proc.user.gid, c=int(for_exec))
    else:
        plan.add("making the process a session leader", P.SETSID)

    masks = capabilities.plan_masks(proc.capabilities, ns.in_userns, warn)
    # cwd: tried first with the runtime's privileges (a cwd only root may reach), again
    # after the uid switch if that was refused (one only the process's user may reach)
    plan.add(f"process.cwd: chdir to {proc.cwd}", P.CHDIR, path=proc.cwd, a=1)
    # caps: the sets the CAPS op sets (with CAP_SYS_ADMIN held for a seccomp filter to come)
    caps = confine.add_early(conf, plan, masks, proc.no_new_privileges) if conf else masks
    plan.add("process.capabilities.bounding: dropping the rest of the bounding set",
             P.BOUNDING, a=masks["bounding"])
    user = proc.user
    if ns.in_userns and ns.uid_mappings and ns.host_uid(user.uid) is None:
        raise ConfigError("process.user.uid", f"{user.uid} is not mapped in linux.uidMappings")
    if not ns.gid_mapped(user.gid):
        raise ConfigError("process.user.gid", f"{user.gid} is not mapped in linux.gidMappings")
    plan.gids = user.additional_gids
    plan.add(f"process.user: switching to uid {user.uid} gid {user.gid}", P.USER,
             a=user.uid, b=user.gid)
    plan.add("process.capabilities: setting the capability sets", P.CAPS,
             b=caps["effective"], c=caps["permitted"], d=caps["inheritable"], e=caps["ambient"])
    if user.umask is not None:
        plan.add("process.user.umask", P.UMASK, a=user.umask)
    plan.add(f"process.cwd: chdir to {proc.cwd} as uid {user.uid}", P.CHDIR, path=proc.cwd, a=2)
    if proc.no_new_privileges:
        plan.add("process.noNewPrivileges", P.NO_NEW_PRIVS)
    # the exec trampoline's sealed copy (CVE-2019-5736), made before any seccomp filter:
    # a profile refusing memfd_create must not leave the direct exec as the only way
    plan.add("exec: the sealed exec trampoline (CVE-2019-5736), without which the container "
             "does not start: linux.seccomp (and the host) must allow memfd_create, and "
             "execveat or an execve of /proc/self/fd", P.TRAMPOLINE)
    if conf:
        confine.add_seccomp(conf, plan, before_start=True)
    if start_fifo_fd >= 0:
        plan.add("waiting for start", P.WAIT_START, a=start_fifo_fd)

    env = list(proc.env)
    if listen_fds:
        # socket activation (sd_listen_fds): the runner's fds 3.. go on as the process's,
        # and it is told so; pid 1 is the process in its own pid namespace
        env = [e for e in env if not e.startswith(("LISTEN_FDS=", "LISTEN_PID="))]
        env += [f"LISTEN_FDS={listen_fds}", "LISTEN_PID=1"]
    keys = {e.split("=", 1)[0] for e in env}
    if "HOME" not in keys:
        env.append("HOME=" + _home(spec.root_path, user.uid))
    path_env = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    plan.argv = proc.args
    plan.env = tuple(env)
    plan.path_env = path_env
    for fd in range(3, 3 + listen_fds + keep_fds):
        # an fd that is not open would be taken by the runner's own (the sync socket) and
        # leak into the container: refuse
        try:
            os.fstat(fd)
        except OSError:
            what = "LISTEN_FDS" if fd < 3 + listen_fds else "--preserve-fds"
            raise InvalidArgument(f"{what}: fd {fd} is not open") from None
    plan.keep_fds = listen_fds + keep_fds
    if conf:
        confine.add_seccomp(conf, plan, before_start=False)
    plan.add(f'exec: "{proc.args[0]}"', P.EXEC)
    if conf:
        confine.add_affinity(conf, plan)


def _rlimits() -> dict:
    from ._shim import lib

    return {name: getattr(lib, name) for name in dir(lib) if name.startswith("RLIMIT_")}


RLIMITS = _rlimits()


def _plan_rlimits(proc, plan) -> None:
    can_raise = None  # asked only of a limit above the host's (/proc/self/status is dear)
    for i, r in enumerate(proc.rlimits):
        field = f"process.rlimits[{i}]"
        num = RLIMITS.get(r.type)
        if num is None:
            raise ConfigError(f"{field}.type", f"unknown rlimit {r.type!r}")
        host_hard = _host_hard_limit(num)
        if r.hard > host_hard and can_raise is None:
            can_raise = _has_effective_cap(CAP_SYS_RESOURCE)
        if r.hard > host_hard and not can_raise:
            raise ConfigError(field, f"{r.type} hard limit {r.hard} is above the host's hard "
                                     f"limit {host_hard}; raising it needs CAP_SYS_RESOURCE, "
                                     "which this runtime does not have")
        plan.add(f"{field}: setting {r.type} to {r.soft}/{r.hard}", P.RLIMIT,
                 a=num, b=r.soft, c=r.hard)


def _host_hard_limit(num: int) -> int:
    from ._shim import ffi, lib

    rl = ffi.new("struct rlimit *")
    lib.getrlimit(num, rl)
    return RLIM_INFINITY if rl.rlim_max == lib.RLIM_INFINITY else rl.rlim_max


def _has_effective_cap(cap: int) -> bool:
    return bool(capabilities.own_sets().get("CapEff", 0) >> cap & 1)


def _home(root: str, uid: int) -> str:
    """HOME from the container's /etc/passwd, as runc sets it; "/" if there is none."""
    path = os.path.join(root, "etc/passwd")
    real = os.path.realpath(path)
    if not real.startswith(os.path.realpath(root) + "/"):
        return "/"
    try:
        with open(real) as f:
            for line in f:
                parts = line.split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"
