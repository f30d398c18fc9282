"""exec: another process in a running (or created) container — runc's `exec`.

The new process joins every namespace of the container's init (so it shows in its pid
namespace) and its cgroup, or sub-cgroups of it; the plan is plan.make_exec's, launched as
the init was (launch.py). Loaded only by an exec."""
from __future__ import annotations

from . import jsonio, plan as planmod, spec as specmod
from .errors import InvalidArgument, WrongState
from .launch import (Forwarder, close_quietly, early_size, exit_code, setup_console,
                     start_plan, stdio_fds, wait_pid)
from .ops import CONSOLE, SECCOMP
from .state import write_atomic


def exec_in(c, proc: specmod.Process, *, stdio=None, console_socket: str = "",
            detach: bool = False, pid_file: str = "", keep_fds: int = 0,
            sub_cgroups: dict | None = None):
    """Start another process in the running (or created) container: every namespace of the init is
    joined (so it shows up in the container's pid namespace) and its cgroup too, or the
    existing sub-cgroups `sub_cgroups` names (runc's exec --cgroup: {controller or "":
    path}). In the foreground returns the exit code; detached, the pid."""
    status = c.status()
    # a created container's namespaces and rootfs are all there (its init only waits
    # for start): runc execs into it too
    if status not in ("running", "created"):
        raise WrongState(f"cannot exec in container {c.id!r}: it is {status}, not running")
    if proc.terminal and detach and not console_socket:
        raise InvalidArgument("cannot allocate a tty for a detached process without --console-socket")
    if console_socket:
        from .terminal import check_console_socket

        check_console_socket(console_socket)
    plan = planmod.make_exec(c.spec, proc, c.pid, keep_fds=keep_fds)
    cg = c._cgroups()
    dirs = None
    if sub_cgroups is not None:
        if cg is None:
            raise WrongState(f"--cgroup: container {c.id!r} has no cgroup")
        dirs = cg.sub_dirs(sub_cgroups)
    master = []
    exec_pid: list = []

    def before_go(pid):
        if cg is not None:
            cg.join(pid, dirs=dirs)
        exec_pid.append(pid)

    def on_fd(kind, fd):
        if kind == CONSOLE:
            master.append(fd)
            early_size(fd, proc)
        elif kind == SECCOMP:
            # SCMP_ACT_NOTIFY: the listener fd goes to the agent at listenerPath
            from .security import seccomp

            seccomp.send_listener(plan, fd, exec_pid[-1], jsonio.dumps(c.state()).encode())

    with Forwarder() as fwd:
        started = start_plan(plan, stdio=stdio_fds(stdio), before_go=before_go, on_fd=on_fd)
        try:
            if pid_file:
                write_atomic(pid_file, str(started.pid))
            if master:
                setup_console(master[0], proc, console_socket)
            if detach:
                return started.pid
            fwd.attach(started.pid)
            if master and not console_socket:
                fwd.master = master[0]
                from .terminal import relay

                return exit_code(relay(master[0], started.pid))
            return exit_code(wait_pid(started.pid))
        finally:
            for fd in started.fds.values():
                close_quietly(fd)
