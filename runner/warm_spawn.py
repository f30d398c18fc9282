"""`create` and `run` served by the warm server, with the container's init still the
caller's child: the worker's half (the caller's is csrc/warm_spawn.c).

Why split there: an engine's shim (containerd's, conmon) is a child subreaper that must
see the init exit, and a foreground `run` is the parent that waits; a process can only
clone its own children. Everything else is the plain path's code, run by the worker that
took the call (runner/warm.py): runner's main parses, libcontainer plans, makes the state
and cgroups, and launch.start_plan drives the child over its sync socket (id maps,
cgroups, state, hooks, fds). Only the two things that must be the caller's own are asked
of it (launch.PARENT, set here to a Caller):

- the clone: the packed plan (pack() below: the shim's rc_plan with offsets for
  pointers) and the fds it names go to warm-spawn, which rc_spawn()s it with the shim's
  own C and sends back the pid and the sync socket;
- the waits: the intermediate process of a setns'd pid namespace, a failed child's reap,
  a foreground run's init (warm-spawn forwards the caller's signals to it meanwhile, as
  launch.Forwarder does for the plain path).

The first clone asks the launcher to exec warm-spawn (the 'P' reply, with the channel's
other end); a call that fails before it never execs anything. What this path cannot do as
the plain path does is refused before the call is accepted (servable()), and the launcher
runs the plain path: fds the caller passes on (--preserve-fds, LISTEN_FDS), a foreground
run's terminal (the pty relay is the parent's), NOTIFY_SOCKET (MAINPID is the parent's)."""
from __future__ import annotations

import os
import socket
import struct

from .warm_peer import Refused

HELPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm-spawn")
SPAWNING = frozenset(("create", "run"))


class PlainPath(Refused):
    """A call this path does not serve as the plain path would: the launcher runs it."""


def available() -> bool:
    return os.access(HELPER, os.X_OK)


def servable(args: list, env: list) -> str:
    """'' if this create/run can be served (`env`: the caller's entries, bytes); else why
    not (the plain path runs it)."""
    if not available():
        return f"no {HELPER}"
    if any(e.startswith((b"LISTEN_FDS=", b"NOTIFY_SOCKET=")) for e in env):
        return "LISTEN_FDS or NOTIFY_SOCKET"
    from .args import parse
    from .cli import _takes_value
    from .lifecycle import CREATE_FLAGS, RUN_FLAGS

    i = next((i for i, a in enumerate(args) if not a.startswith("-") and
              (i == 0 or not _takes_value(args[i - 1]))), len(args))
    verb = args[i] if i < len(args) else ""
    try:
        opts, _ = parse(args[i + 1:], RUN_FLAGS if verb == "run" else CREATE_FLAGS)
    except Exception:
        return ""  # its error, as the plain path reports it
    if opts["preserve_fds"] not in ("", "0"):
        return "--preserve-fds"
    if verb == "run" and not opts["detach"] and not opts["help"]:
        if opts["image"]:
            return "run --image"
        if _terminal(opts["bundle"]):
            return "a foreground run with a terminal"
    return ""


def _terminal(bundle: str) -> bool:
    """process.terminal of the bundle's config (unreadable: not served, to be sure)."""
    from libcontainer import jsonio

    try:
        with open(os.path.join(bundle or ".", "config.json"), "rb") as f:
            proc = jsonio.loads(f.read()).get("process")
        return not isinstance(proc, dict) or bool(proc.get("terminal"))
    except Exception:
        return True


class Caller:
    """launch.PARENT in a worker serving create/run: the caller's process clones and
    waits (over the channel to warm-spawn), this one drives."""

    def __init__(self, conn: socket.socket, forward: bool):
        self.conn, self.forward = conn, forward
        self.chan = None

    def _channel(self) -> socket.socket:
        if self.chan is None:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
            path = os.fsencode(HELPER)
            try:
                head = struct.pack("<cB2xi", b"P", int(self.forward), len(path))
                socket.send_fds(self.conn, [head + path], [theirs.fileno()])
            finally:
                theirs.close()
            self.chan = ours
        return self.chan

    def spawn(self, plan, stdio=None, cgroup_fd: int = -1, share_memory: bool = False):
        from libcontainer.shim import Spawned, spawn_error

        blob, fds = pack(plan, stdio, cgroup_fd, share_memory)
        chan = self._channel()
        head = struct.pack(f"<4sI{len(fds)}i", b"C\0\0\0", len(fds), *fds)
        head += b"\0" * (-len(head) % 8)
        socket.send_fds(chan, [head + blob], fds)
        data, got, _, _ = socket.recv_fds(chan, 4, 1, socket.MSG_CMSG_CLOEXEC)
        if len(data) != 4:
            for fd in got:
                os.close(fd)
            _caller_gone()
        pid = struct.unpack("<i", data)[0]
        if pid < 0 or len(got) != 1:
            for fd in got:
                os.close(fd)
            # (this worker is in the caller's cgroups: one process its count would not have)
            raise spawn_error(-pid if pid < 0 else 5, cgroup_fd, borrowed=1)
        return Spawned(pid, got[0])

    def waitpid(self, pid: int, options: int, forward: bool = False):
        chan = self._channel()
        chan.send(struct.pack("<4siii", b"W\0\0\0", pid, options, int(forward)))
        data = chan.recv(8)
        if len(data) != 8:
            _caller_gone()
        got, status = struct.unpack("<ii", data)
        if got < 0:
            raise OSError(-got, os.strerror(-got))  # (ECHILD: ChildProcessError)
        return got, status

    def wait_foreground(self, pid: int) -> int:
        return self.waitpid(pid, 0, forward=self.forward)[1]

    def close(self) -> None:
        if self.chan is not None:
            self.chan.close()  # warm-spawn goes on to read the reply


def _caller_gone():
    """warm-spawn is the caller's process: gone, it takes this worker along, as its
    hang-up does (warm._die_with: the SIGIO is on its way; this is in case it is not)."""
    import signal

    os.kill(os.getpid(), signal.SIGIO)
    raise OSError(32, "the caller went away", "warm-spawn")


# ---- the packed plan (csrc/warm_spawn.c: unpack) ----

def pack(plan, stdio, cgroup_fd: int, share_memory: bool):
    """(the plan as bytes, the fds it names): int64 header fields, then the joins, the
    cgroup files, the ops (struct rc_op, pointers as 1 + offsets into the string table),
    argv, envp, gids, the string table."""
    from libcontainer.ops import EXEC, WAIT_START
    from libcontainer.shim import _OP

    if _OP is None:
        raise OSError(22, "struct rc_op's layout is not the packed one", "clone")
    table = bytearray()
    offsets: dict = {}

    def s(value) -> int:
        if value is None:
            return 0
        b = value.encode() if isinstance(value, str) else bytes(value)
        off = offsets.get(b)
        if off is None:
            off = offsets[b] = len(table) + 1
            table.extend(b + b"\0")
        return off

    fds: list = []

    def fd(n: int) -> int:
        if n >= 0 and n not in fds:
            fds.append(n)
        return n

    out = bytearray()
    for flag, path in plan.joins:
        out += struct.pack("<qq", flag, s(path))
    for f in plan.cgroup_files:
        out += struct.pack("<q", s(f))
    raw = bytearray(_OP.size * len(plan.ops))
    for i, (kind, path, src, fstype, data, flags, pflags, a, b, c, d, e) in enumerate(plan.ops):
        n = len(data) if isinstance(data, bytes) else 0
        if kind == WAIT_START:
            fd(a)
        elif kind == EXEC and b > 0:
            fd(b - 1)
        _OP.pack_into(raw, i * _OP.size, kind, s(path), s(src), s(fstype), s(data), flags,
                      pflags, a, b, c, d, e, n)
    out += raw
    for items in (plan.argv, plan.env):
        out += struct.pack(f"<{len(items) + 1}q", *[s(x) for x in items], 0)
    out += struct.pack(f"<{len(plan.gids)}q", *plan.gids)
    stdio = list(stdio) if stdio is not None else None
    for n in stdio or ():
        fd(n)
    head = struct.pack(
        "<20q", plan.clone_flags, 1 if plan.new_timens else 0, s(plan.time_offsets or None),
        len(plan.joins), fd(cgroup_fd), len(plan.cgroup_files), len(plan.ops), len(plan.argv),
        len(plan.env), s(plan.path_env), len(plan.gids), plan.keep_fds,
        1 if stdio is not None else 0, *(stdio or (-1, -1, -1)), 1 if share_memory else 0,
        fd(plan.netns_fd), _OP.size, len(table))
    return bytes(head + out + table), fds
