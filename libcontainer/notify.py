"""NOTIFY_SOCKET: relaying a container's sd_notify(3) readiness to the host, as runc does.

Loaded only when the caller passes a notify socket (the CLI: NOTIFY_SOCKET in its
environment). What runc does, and so this module:
- the container gets a directory of the state dir, `<state>/notify`, bind-mounted read-only
  (nosuid, noexec, nodev) at /run/notify, and NOTIFY_SOCKET=/run/notify/notify.sock;
- the runtime binds a datagram socket there (mode 0777: any user of the container may send)
  when the container's process is about to run: at `run`, or at `start` for a created one;
- it waits until the container sends a datagram that starts with READY=, then sends the
  host's socket that line, then MAINPID=<pid> (the container's init; in a foreground run
  the runtime's own pid, the process systemd should watch), then BARRIER=1 with a pipe
  and waits (at most BARRIER_TIMEOUT s) until the host closes it (sd_notify_barrier).
  `start` and a detached `run` return only then; a foreground run relays in the background
  while it waits for the container.
Where this differs from runc: a NOTIFY_SOCKET that is not an absolute path or an abstract
"@name", or that no socket listens on, is refused before anything is made (runc ignores it
in a foreground run, or fails after the container started); and a foreground run does not
hang when the container exits without READY (runc 1.1 does)."""
from __future__ import annotations

import os
import socket

from .errors import InvalidArgument, WrongState

DIR = "notify"                  # in the container's state dir
SOCKET = "notify.sock"
IN_CONTAINER = "/run/notify"    # where the container sees DIR (runc's place)
MOUNT_OPTIONS = ("bind", "nosuid", "noexec", "nodev", "ro")
BARRIER_TIMEOUT = 30.0          # runc's: a host that ignores BARRIER=1 costs this once
POLL_MS = 100                   # how often a wait checks that the container still lives


def _address(host: str):
    """NOTIFY_SOCKET → a socket address: an absolute path, or "@name" (abstract), as
    sd_notify(3) takes it."""
    if host.startswith("@") and len(host) > 1:
        return "\0" + host[1:]
    if not host.startswith("/"):
        raise InvalidArgument(f"NOTIFY_SOCKET: {host!r} is not an absolute path or an "
                              "abstract socket (@name)")
    return host


class Relay:
    """One container's notify socket. Connects to the host's socket at once, so that a bad
    NOTIFY_SOCKET fails before anything is made."""

    def __init__(self, host: str, state_dir: str):
        self.host = host
        self.dir = os.path.join(state_dir, DIR)
        self.path = os.path.join(self.dir, SOCKET)
        self.sock = None
        self._thread = None
        self._stop = False
        client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            client.connect(_address(host))
        except OSError as e:
            client.close()
            raise InvalidArgument(f"NOTIFY_SOCKET: cannot connect to {host}: "
                                  f"{e.strerror or e}") from None
        except BaseException:
            client.close()
            raise
        self.client = client

    # -- create: what the container gets --
    def spec(self, spec):
        """The spec with the socket's directory mounted and NOTIFY_SOCKET set for the
        process (replacing one the config has: the container's socket is the runtime's)."""
        from .spec import Mount, Process, Spec

        fields = {k: getattr(spec, k) for k in Spec.__slots__}
        fields["mounts"] = spec.mounts + (Mount(IN_CONTAINER, "bind", self.dir, MOUNT_OPTIONS),)
        proc = spec.process
        if proc is not None:
            env = [e for e in proc.env if not e.startswith("NOTIFY_SOCKET=")]
            env.append(f"NOTIFY_SOCKET={IN_CONTAINER}/{SOCKET}")
            pfields = {k: getattr(proc, k) for k in Process.__slots__}
            pfields["env"] = tuple(env)
            fields["process"] = Process(**pfields)
        return Spec(**fields)

    def prepare(self, bind: bool) -> None:
        """Make the directory (before the container's mounts); bind the socket too when the
        process runs at once (`run`), else `start` does."""
        os.mkdir(self.dir, 0o755)
        os.chmod(self.dir, 0o755)  # whatever the umask: the container's user must enter it
        if bind:
            self.bind()

    # -- start / run: the relay --
    def bind(self) -> None:
        if not os.path.isdir(self.dir):
            raise WrongState("NOTIFY_SOCKET is set, but the container was created without "
                             "it: its process has no notify socket (create it with "
                             "NOTIFY_SOCKET set)")
        try:
            os.unlink(self.path)  # a failed start's: the container is still created
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        d = os.open(self.dir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            # through the directory's fd: a deep --root makes a path longer than a socket
            # address holds (108 bytes; runc then fails with EINVAL)
            s.bind(f"/proc/self/fd/{d}/{SOCKET}")
            os.chmod(self.path, 0o777)  # as runc: any uid of the container may notify
        except BaseException:
            s.close()
            raise
        finally:
            os.close(d)
        self.sock = s

    def wait_ready(self, pid: int, start_time, main_pid: int, warn=None) -> bool:
        """Wait until the container says READY=…, then tell the host (with MAINPID=main_pid).
        False if the container's init (`pid`, started at `start_time`) exited first."""
        import select

        from .state import alive

        p = select.poll()
        p.register(self.sock.fileno(), select.POLLIN)
        while True:
            if not p.poll(POLL_MS):
                if not self._stop and alive(pid, start_time):
                    continue
                if not p.poll(0):  # a last look: what it sent just before it exited
                    return False
            try:
                data = self.sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            # sd_notify sends one datagram of NAME=value lines; READY= is the one relayed
            ready = next((line for line in data.split(b"\n") if line.startswith(b"READY=")),
                         None)
            if ready is not None:
                self._notify_host(ready, main_pid, warn)
                return True

    def _notify_host(self, ready: bytes, main_pid: int, warn) -> None:
        try:
            self.client.send(ready + b"\n")
            self.client.send(f"MAINPID={main_pid}\n".encode())
            self._barrier(warn)
        except OSError as e:
            raise WrongState(f"NOTIFY_SOCKET: cannot notify {self.host}: "
                             f"{e.strerror or e}") from None

    def _barrier(self, warn) -> None:
        """sd_notify_barrier: BARRIER=1 with a pipe's write end; the host has handled what
        came before once it closes its copy."""
        import array
        import select

        r, w = os.pipe2(os.O_CLOEXEC)
        try:
            try:
                self.client.sendmsg([b"BARRIER=1"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                      array.array("i", [w]))])
            finally:
                os.close(w)
            p = select.poll()
            p.register(r, select.POLLIN)
            if not p.poll(int(BARRIER_TIMEOUT * 1000)):
                if warn:
                    warn(f"NOTIFY_SOCKET: {self.host} did not close the BARRIER=1 pipe "
                         f"within {BARRIER_TIMEOUT:g} s; going on")
                return
            if os.read(r, 1):
                raise OSError(0, "unexpected data on the BARRIER=1 pipe")
        finally:
            os.close(r)

    def relay_in_background(self, pid: int, start_time, main_pid: int, warn=None) -> None:
        """A foreground run: relay READY while the caller waits for the container."""
        import threading

        def relay():
            try:
                self.wait_ready(pid, start_time, main_pid, warn)
            except Exception as e:  # the container runs on; the host just hears nothing
                if warn:
                    warn(str(e))

        self._thread = threading.Thread(target=relay, name="notify-relay", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop relaying; the socket file goes (the directory goes with the state dir)."""
        self._stop = True
        if self._thread is not None:
            self._thread.join(BARRIER_TIMEOUT + 1)
            self._thread = None
        for s in (self.sock, self.client):
            if s is not None:
                s.close()
        self.sock = self.client = None
        try:
            os.unlink(self.path)
        except OSError:
            pass
