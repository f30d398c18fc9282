"""The container lifecycle: the parent's side of starting a plan, and running it."""
from __future__ import annotations

import os
import time

import _signal
import _socket

from . import namespaces, plan as planmod, shim, spec as specmod
from .errors import ExecNotFound, ExecNotPermitted, StartError
from .state import DEFAULT_ROOT, StateDir

FORWARDED_SIGNALS = (1, 2, 3, 10, 12, 15, 28)  # HUP INT QUIT USR1 USR2 TERM WINCH


class Started:
    """A child that has passed every setup step: `pid` is the container's init (host pid);
    `fds` holds what the child sent (op label → fd), e.g. the console's pty master."""

    def __init__(self, pid: int, fds: dict):
        self.pid = pid
        self.fds = fds


def start_plan(plan, *, stdio=None, before_go=None, on_fd=None) -> Started:
    """Clone the child and drive it through the plan until it execs (or, with a
    WAIT_START op, until it blocks on the exec fifo). On failure nothing of it is left."""
    spawned = shim.spawn(plan, stdio=stdio)
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, spawned.sock)
    init = spawned.pid
    fds: dict = {}
    try:
        while True:
            data, anc, _, _ = sock.recvmsg(shim.MSG_SIZE, _socket.CMSG_SPACE(4))
            if not data:
                break  # the socket closed on execve
            kind, op, err, pid = shim.decode(data)
            if kind == shim.MSG_USERNS:
                namespaces.write_id_maps(spawned.pid, plan)
                sock.send(b"g")
            elif kind == shim.MSG_CHILD:
                init = pid
                os.waitpid(spawned.pid, 0)
            elif kind == shim.MSG_WAITGO:
                if before_go is not None:
                    before_go(init)
                sock.send(b"g")
            elif kind == shim.MSG_FD:
                for level, typ, payload in anc:
                    if level == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS:
                        fd = int.from_bytes(payload[:4], "little")
                        fds[plan.label(op)] = fd
                        if on_fd is not None:
                            on_fd(plan.ops[op][0] if 0 <= op < len(plan.ops) else 0, fd)
            elif kind == shim.MSG_CREATED:
                break
            elif kind == shim.MSG_ERROR:
                raise _child_error(plan, op, err)
    except BaseException:
        _kill_and_reap(init, spawned.pid)
        for fd in fds.values():
            os.close(fd)
        raise
    finally:
        sock.close()
    return Started(init, fds)


def _child_error(plan, op: int, err: int) -> StartError:
    label = plan.label(op)
    if 0 <= op < len(plan.ops) and plan.ops[op][0] == planmod.EXEC:
        arg0 = plan.argv[0]
        if err == 2:
            where = "" if "/" in arg0 else " in $PATH"
            return ExecNotFound(f'exec: "{arg0}": executable file not found{where}', err, label)
        if err in (13, 8):
            return ExecNotPermitted(f'exec: "{arg0}": {os.strerror(err).lower()}', err, label)
    return StartError(f"{label}: {os.strerror(err)}", err, label)


def _kill_and_reap(*pids: int) -> None:
    for pid in dict.fromkeys(pids):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass


def exit_code(status: int) -> int:
    """A wait status as a shell reports it: the exit code, or 128+N for signal N."""
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


class _Forwarder:
    """Forward the runner's signals to the container's init. Installed before the clone so
    that a signal arriving during setup is delivered once the pid is known, not lost."""

    def __init__(self) -> None:
        self.pid = 0
        self.pending: list = []
        self.saved = {}

    def __enter__(self):
        for sig in FORWARDED_SIGNALS:
            self.saved[sig] = _signal.signal(sig, self._handle)
        return self

    def _handle(self, sig, frame) -> None:
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


def run(bundle: str, container_id: str, *, root: str = DEFAULT_ROOT, no_pivot: bool = False,
        keep_fds: int = 0, stdio=None, warn=None) -> int:
    """Run a container in the foreground and return its exit code (128+N if killed by
    signal N). When this returns, nothing of the container is left."""
    state = StateDir(root, container_id)
    spec = specmod.load(bundle)
    plan = planmod.make(spec, no_pivot=no_pivot, keep_fds=keep_fds, warn=warn)
    state.create()
    try:
        with _Forwarder() as fwd:
            started = start_plan(plan, stdio=stdio)
            fwd.attach(started.pid)
            state.write(_state_dict(spec, container_id, "running", started.pid))
            while True:
                try:
                    _, status = os.waitpid(started.pid, 0)
                    break
                except InterruptedError:
                    continue
            for fd in started.fds.values():
                os.close(fd)
            return exit_code(status)
    finally:
        state.remove()


def _state_dict(spec, container_id: str, status: str, pid: int) -> dict:
    return {
        "ociVersion": specmod.OCI_VERSION,
        "id": container_id,
        "status": status,
        "pid": pid,
        "bundle": spec.bundle,
        "annotations": spec.annotations,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
