"""Spec → Plan: the planning. It asks each planner (namespaces, rootfs, process, hooks) to
add its ops to a `ops.Plan` — plain data that can be printed and compared in unit tests
without root."""
from __future__ import annotations

from . import namespaces, process, rootfs
from .errors import ConfigError
from .ops import EXEC, KEYRING, PIVOT, SYNC, WAIT_START, Plan, op
from .spec import Process, Spec


def make(spec: Spec, *, no_pivot: bool = False, keep_fds: int = 0,
         start_fifo_fd: int = -1, hooks: dict | None = None, new_keyring: bool = True,
         warn=None, listen_fds: int = 0, cgroup=None, node_dir: str = "") -> Plan:
    """Decide everything the container's init will do before it execs. With a
    `start_fifo_fd` the init blocks on that fifo (`create`) until `start` opens it.
    `cgroup` (a cgroups.Manager) is where the init will be: what a `type: cgroup` mount
    shows; without one, the runner's own cgroups. `node_dir`: where the runtime may make
    the device nodes of a user namespace (without one, the host's own nodes are bound)."""
    proc = spec.process
    if proc is None:
        if start_fifo_fd < 0:
            raise ConfigError("process", "is required to start a container")
        # config.md: process is REQUIRED only when `start` is called. `create` sets the
        # container up with an init that holds it and never execs: `start` refuses
        proc = _HOLDER
    if spec.linux.intel_rdt is not None:
        _refuse_intel_rdt()
    plan = Plan()
    process.plan_early(spec, plan)  # leading ops: the shim runs them before the namespaces
    ns = namespaces.plan(spec, plan)
    if new_keyring:
        # a keyring of its own, so the container cannot reach the host session's keys
        plan.add("creating a session keyring (--no-new-keyring to skip)", KEYRING)
    rootfs.plan(spec, plan, ns, no_pivot=no_pivot, cgroup=cgroup, node_dir=node_dir)
    process.plan(spec, plan, ns, keep_fds=keep_fds, start_fifo_fd=start_fifo_fd, warn=warn,
                 listen_fds=listen_fds, proc=proc)
    if proc is _HOLDER:
        # no exec: past the fifo the init would only fail (ENOEXEC); `start` never lets it
        at = [o[0] for o in plan.ops].index(EXEC)
        del plan.ops[at], plan.labels[at]
    if hooks:
        _plan_hooks(plan, hooks)
    return plan


def use_init(plan: Plan, status_fd: int = -1) -> None:
    """The process is started by the shim's init (csrc/trampoline.c), which stays pid 1;
    it writes the process's wait status to `status_fd` (if >= 0) before it exits."""
    for i, o in enumerate(plan.ops):
        if o[0] == EXEC:
            plan.ops[i] = o[:7] + (1, status_fd + 1) + o[9:]


# the init of a container created without process: root, no capabilities, in "/"
_HOLDER = Process(args=("(no process)",))


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
    if not info.has("mount"):
        # the container is in the runtime's mount namespace, chrooted: so is the process
        plan.add("chroot into the container's root (no mount namespace)", PIVOT,
                 path=f"/proc/{init_pid}/root", flags=2)
    process.plan(spec, plan, info, keep_fds=keep_fds, warn=warn, proc=proc, for_exec=True)
    return plan
