"""The daemon's side of the per-container monitor: spawn it (spawn.py, then runner-monitor),
find it again after a restart, read the exit it recorded."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .errors import EngineError
from .records import read_json


def proc_start_time(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    return int(data[data.rindex(b")") + 2:].split()[19])


class Zygote:
    """The daemon's end of zygote.py: one warm process that forks the spawners."""

    def __init__(self):
        import threading

        self.lock = threading.Lock()
        self.proc = None
        self.sock = None

    def _start(self) -> None:
        import socket

        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen([sys.executable, "-m", "libcontainer.engine.zygote"],
                                     stdin=subprocess.DEVNULL, close_fds=False,
                                     # fds are not inherited unless marked: only this one is
                                     preexec_fn=lambda: os.dup2(theirs.fileno(), 3),
                                     env=_child_env())
        theirs.close()
        self.sock = mine

    def warm(self) -> None:
        with self.lock:
            if self.proc is None or self.proc.poll() is not None:
                self._start()

    def send(self, args: dict, status_w: int) -> bool:
        import socket

        with self.lock:
            for _ in range(2):
                if self.proc is None or self.proc.poll() is not None:
                    self._start()
                try:
                    socket.send_fds(self.sock, [json.dumps(args).encode()], [status_w])
                    return True
                except OSError:
                    self.proc = None
            return False

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
        if self.proc is not None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


zygote = Zygote()


def spawn(cdir: str, bundle: str, cid: str, runtime_root: str, tty: bool, stdin: bool,
          max_size: int, max_file: int, hold: bool) -> dict:
    """Create and start the container under a new monitor; → {"pid", "monitor",
    "monitor_start"}. Blocking (a thread's work)."""
    r, w = os.pipe()
    args = {"dir": cdir, "bundle": bundle, "id": cid, "root": runtime_root, "tty": tty,
            "stdin": stdin, "max_size": max_size, "max_file": max_file, "hold": hold}
    for name in ("exit.json", "exit.json.tmp", MONITOR_FILE):
        try:
            os.unlink(os.path.join(cdir, name))
        except FileNotFoundError:
            pass
    if os.environ.get("RUNNER_DAEMON_NO_ZYGOTE") != "1":
        try:
            sent = zygote.send(args, w)
        finally:
            os.close(w)
        if not sent:
            os.close(r)
            raise EngineError("the spawner (libcontainer.engine.zygote) is not running")
        return _status(r, cdir)
    args["status_fd"] = w
    try:
        # the intermediate process forks the monitor off and exits: the monitor is nobody's
        # child but init's, so the daemon can die without taking it along
        with open(os.path.join(cdir, "spawn.log"), "ab") as log:
            p = subprocess.Popen([sys.executable, "-m", "libcontainer.engine.spawn", json.dumps(args)],
                                 pass_fds=(w,), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                 start_new_session=True, preexec_fn=None,
                                 env=_child_env())
    finally:
        os.close(w)
    p.wait()
    return _status(r, cdir)


def _status(r: int, cdir: str) -> dict:
    try:
        chunks = []
        while True:
            b = os.read(r, 65536)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(r)
    try:
        status = json.loads(b"".join(chunks) or b"{}")
    except ValueError:
        status = {}
    if "error" in status:
        raise EngineError(status["error"])
    if "pid" not in status:
        raise EngineError(f"the container's monitor failed to start (see {cdir}/spawn.log)")
    status["monitor_start"] = proc_start_time(status["monitor"])
    return status


def _child_env() -> dict:
    """The spawner's environment: the daemon's, with our modules on the path and without
    the crash-point trigger (a test's RUNNER_CRASH_AT is for the daemon's own count)."""
    env = dict(os.environ, PYTHONPATH=_pythonpath())
    env.pop("RUNNER_CRASH_AT", None)
    return env


def _pythonpath() -> str:
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    old = os.environ.get("PYTHONPATH", "")
    return here + (os.pathsep + old if old else "")


MONITOR_FILE = "monitor.json"


def orphan(cdir: str) -> dict | None:
    """The monitor a spawner made for a start the daemon never recorded (it died between
    the spawn and saving the record): {"pid", "start"} if it still runs."""
    mon = read_json(os.path.join(cdir, MONITOR_FILE)) or {}
    return mon if alive(mon.get("pid", 0), mon.get("start")) else None


def alive(pid: int, start: int | None) -> bool:
    """The monitor `pid` (started at `start`) still runs: a zombie waiting for init to reap
    it has exited."""
    if not pid or start is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    rest = data[data.rindex(b")") + 2:].split()
    return rest[0] not in (b"Z", b"X") and int(rest[19]) == start


def wait_gone(pid: int, start: int | None, timeout: float) -> bool:
    """Block until the monitor `pid` (started at `start`) has exited, or `timeout` passes;
    True if it is gone. A pidfd wakes us at its exit (no polling)."""
    import select

    if not alive(pid, start):
        return True
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return not alive(pid, start)
    try:
        if not alive(pid, start):  # the pid was reused between the check and the open
            return True
        p = select.poll()
        p.register(fd, select.POLLIN)
        p.poll(timeout * 1000)
    finally:
        os.close(fd)
    return not alive(pid, start)


def read_exit(cdir: str) -> dict | None:
    return read_json(os.path.join(cdir, "exit.json"))


def pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return -1


def release(cdir: str) -> None:
    """Tell a held monitor to start reading output (nobody is attaching)."""
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fd = os.open(cdir, os.O_PATH | os.O_DIRECTORY)
    try:
        s.connect(f"/proc/self/fd/{fd}/attach.sock")
        s.sendall(bytes([3, 0, 0, 0, 0, 0, 0, 0]))
    except OSError:
        pass
    finally:
        os.close(fd)
        s.close()
