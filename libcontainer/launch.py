"""The parent's side of starting a plan: clone the child through the shim and drive it over
the sync socket (id maps, cgroups and state at wait-for-go, hooks at a SYNC op, the fds it
sends) until it execs or blocks on the exec fifo; then forward signals and wait for it.

`container.py` decides what to start and keeps the state; this module only launches."""
from __future__ import annotations

import os

import _signal

from . import namespaces, shim
from .errors import ExecNotFound, ExecNotPermitted, StartError
from .ops import CONSOLE, EXEC, HOOK, MOUNT, SYNC, WAIT_START
from .state import crash_point

FORWARDED_SIGNALS = (1, 2, 3, 10, 12, 15, 28)  # HUP INT QUIT USR1 USR2 TERM WINCH
# Seconds the child may go without a word during its setup, on top of the timeouts of the
# hooks it runs itself: one stopped or frozen by someone must not hold the create (and the
# container's lock) forever.
SETUP_TIMEOUT = 30.0


class OwnChildren:
    """Who clones the child and waits for it: this process (the plain path). A warm
    server's worker serving a create/run sets PARENT to its caller's (runner/warm_spawn.py),
    whose process must be the init's parent."""

    spawn = staticmethod(shim.spawn)
    waitpid = staticmethod(os.waitpid)

    @staticmethod
    def wait_foreground(pid: int) -> int:
        return os.waitpid(pid, 0)[1]


PARENT = OwnChildren


class Started:
    """A child that has passed every setup step: `pid` is the container's init (host pid);
    `fds` holds what the child sent (op label → fd), e.g. the console's pty master."""

    def __init__(self, pid: int, fds: dict):
        self.pid = pid
        self.fds = fds


def start_plan(plan, *, stdio=None, before_go=None, on_fd=None, on_sync=None,
               cgroup_fd: int = -1, no_go: bool = False) -> Started:
    """Clone the child and drive it through the plan until it execs (or, with a
    WAIT_START op, until it blocks on the exec fifo). On failure nothing of it is left.

    before_go(pid) runs once the final process exists (cgroups, state) and may return bytes
    (the state JSON) that the child keeps for its hooks; on_sync(pid) runs at a SYNC op;
    on_fd(op_kind, fd) gets each fd the child sends.

    no_go: the caller has nothing to do before the execve (before_go is not called). A plan
    that needs the parent for nothing either (see needs_parent) is then cloned sharing this
    process's memory, this thread waiting until the execve: no copy of the interpreter."""
    share = no_go and not needs_parent(plan)
    spawned = PARENT.spawn(plan, stdio=stdio, cgroup_fd=cgroup_fd, share_memory=share)
    sock = spawned.sock
    init = spawned.pid
    fds: dict = {}
    # With a fork in the shim (a pid namespace entered after a setns), the forked init's
    # first message can overtake the one its parent sends with the init's pid: its go
    # waits for that pid, or the cgroups and the state would get the parent's.
    go_pending = False
    bound = SETUP_TIMEOUT + sum(o[9] for o in plan.ops if o[0] == HOOK)
    try:
        crash_point("launch: child cloned")
        while True:
            try:
                data, fd = shim.recv(sock, bound)
            except TimeoutError:
                raise StartError(f"the container's init (pid {init}) did not go on with its "
                                 f"setup for {bound:g} s (stopped or frozen?)", 0,
                                 "setup") from None
            if not data:
                break  # the socket closed on execve
            kind, op, err, pid = shim.decode(data)
            if kind == shim.MSG_USERNS:
                namespaces.write_id_maps(spawned.pid, plan)
                os.write(sock, b"g")
            elif kind == shim.MSG_CHILD:
                init = pid
                PARENT.waitpid(spawned.pid, 0)
                crash_point("launch: init forked")
                if go_pending:
                    go_pending = False
                    payload = before_go(init) if before_go is not None else None
                    os.write(sock, payload or b"g")
            elif kind == shim.MSG_WAITGO:
                if plan.needs_fork and init == spawned.pid:
                    go_pending = True
                    continue
                payload = before_go(init) if before_go is not None else None
                os.write(sock, payload or b"g")
            elif kind == shim.MSG_SYNC:
                payload = on_sync(init) if on_sync is not None else None
                os.write(sock, payload or b"g")
            elif kind == shim.MSG_FD:
                if fd >= 0:
                    op_kind = plan.ops[op][0] if 0 <= op < len(plan.ops) else 0
                    if op_kind == MOUNT:  # an id-mapped bind's target
                        try:
                            shim.idmapped_mount(init, plan, op, fd)
                        finally:
                            os.close(fd)
                    else:
                        fds[plan.label(op)] = fd
                        if on_fd is not None:
                            on_fd(op_kind, fd)
                # the child waits until the fd is dealt with: the seccomp listener is with
                # its agent, the pty has its size
                os.write(sock, b"g")
            elif kind == shim.MSG_CREATED:
                break
            elif kind == shim.MSG_ERROR:
                raise _child_error(plan, op, err)
    except BaseException:
        kill_and_reap(init, spawned.pid)
        for fd in fds.values():
            close_quietly(fd)
        raise
    finally:
        os.close(sock)
    return Started(init, fds)


# ops after which the child waits for, or sends to, the parent
_TALKING_OPS = frozenset((WAIT_START, SYNC, HOOK, CONSOLE))


def needs_parent(plan) -> bool:
    """Whether the child of `plan` needs this process before its execve: id maps to be
    written, namespaces to join (a second fork), fds to hand over, hooks, an id-mapped
    mount, the exec fifo; or a time namespace (made on unshare, effective in the memory
    of the next exec, which must then not be shared)."""
    if plan.joins or plan.clone_flags & namespaces.FLAGS["user"] or plan.new_timens:
        return True
    if plan.console or plan.seccomp_notify or plan.idmaps:
        return True
    return any(o[0] in _TALKING_OPS for o in plan.ops)


def _child_error(plan, op: int, err: int) -> StartError:
    label = plan.label(op)
    kind = plan.ops[op][0] if 0 <= op < len(plan.ops) else 0
    if kind == EXEC:
        arg0 = plan.argv[0]
        if err == 2:
            # runc's words, which engines match: podman turns "executable file not found
            # in" and "no such file or directory" into exit status 127
            if "/" in arg0:
                return ExecNotFound(f'exec: "{arg0}": stat {arg0}: no such file or directory',
                                    err, label)
            return ExecNotFound(f'exec: "{arg0}": executable file not found in $PATH', err, label)
        if err in (13, 8):
            return ExecNotPermitted(f'exec: "{arg0}": {os.strerror(err).lower()}', err, label)
    if kind == HOOK:
        from .hooks import describe_failure

        return StartError(f"{label}: {describe_failure(err)}", 0, label)
    return StartError(f"{label}: {os.strerror(err)}", err, label)


def stdio_fds(stdio):
    """(stdin, stdout, stderr) as files, pipes or fds → fds (-1: this process's own);
    None keeps all three of the caller's."""
    if stdio is None:
        return None
    return [-1 if f is None else f if isinstance(f, int) else f.fileno() for f in stdio]


def kill_and_reap(*pids: int, timeout: float = 5.0) -> None:
    """SIGKILL our children and reap them; a bounded wait: one frozen by someone else's
    freezer dies only once thawed (then init reaps it, or the next wait of ours)."""
    import time

    for pid in dict.fromkeys(pids):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    deadline = None
    delay = 0.0002
    for pid in dict.fromkeys(pids):
        while True:
            try:
                if PARENT.waitpid(pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            deadline = deadline or time.monotonic() + timeout
            if time.monotonic() > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class Forwarder:
    """Forward the runner's signals to a process. Installed before the clone so that a
    signal arriving during setup is delivered once the pid is known, not lost."""

    def __init__(self, master: int = -1) -> None:
        self.pid = 0
        self.master = master
        self.pending: list = []
        self.saved: dict = {}

    def __enter__(self):
        for sig in FORWARDED_SIGNALS:
            try:
                self.saved[sig] = _signal.signal(sig, self._handle)
            except ValueError:
                # not the main thread (a program running containers from threads, e.g.
                # libcontainer.run_many): handlers are the main thread's to set
                break
        return self

    def _handle(self, sig, frame) -> None:
        if sig == 28 and self.master >= 0:
            from .terminal import copy_size

            copy_size(0, self.master)  # the pty's size follows the runner's terminal
        if self.pid:
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass
        elif sig != 28:
            self.pending.append(sig)

    def attach(self, pid: int) -> None:
        self.pid = pid
        for sig in self.pending:
            os.kill(pid, sig)

    def __exit__(self, *exc) -> None:
        for sig, old in self.saved.items():
            _signal.signal(sig, old)


def wait_pid(pid: int) -> int:
    """The wait status of `pid`, retried across signals (the forwarder interrupts waitpid)."""
    while True:
        try:
            return PARENT.wait_foreground(pid)
        except InterruptedError:
            continue


def early_size(master: int, proc) -> None:
    """Size the pty as soon as its master arrives, while the child is still setting up:
    after the exec it would race with the process's first look at it (`stty size`)."""
    if proc.console_size:
        from . import terminal

        terminal.set_size(master, *proc.console_size)


def setup_console(master: int, proc, console_socket: str) -> None:
    from . import terminal

    if proc.console_size:
        terminal.set_size(master, *proc.console_size)
    if console_socket:
        terminal.send_to_socket(console_socket, master)
