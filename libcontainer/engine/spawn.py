"""The first half of a container's monitor: `python -m libcontainer.engine.spawn JSON`.

Run by the daemon in a new session, it makes the container's stdio (pipes, or a pty through
a console socket), its attach socket, creates and starts the container through libcontainer
— so the container's init is this process's child — then tells the daemon the pid on the
status fd and execs runner-monitor (csrc/monitor.c), which stays the init's parent: it
outlives the daemon, writes the log and records the exit. Python lives only for the start.

JSON: {"dir", "bundle", "id", "root", "tty", "stdin", "max_size", "max_file", "hold",
"status_fd"}"""
from __future__ import annotations

import json
import os
import socket
import sys

MONITOR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "runner-monitor")


def _listen(path: str) -> socket.socket:
    """Bound from inside its directory: a unix socket path is limited to 108 bytes, a data
    root's is not (this process is single-threaded, chdir is safe here)."""
    d, name = os.path.split(path)
    cwd = os.open(".", os.O_PATH)
    try:
        os.chdir(d)
        try:
            os.unlink(name)
        except FileNotFoundError:
            pass
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(name)
        os.chmod(name, 0o600)
        s.listen(16)
    finally:
        os.fchdir(cwd)
        os.close(cwd)
    return s


def _recv_fd(s: socket.socket) -> int:
    conn, _ = s.accept()
    with conn:
        msg, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(4))
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                return int.from_bytes(data[:4], "little")
    raise OSError("the console socket got no pty master")


def main(args: dict) -> int:
    import libcontainer

    status = args["status_fd"]
    d = args["dir"]
    made: list = []
    c = None
    try:
        if not os.access(MONITOR, os.X_OK):
            raise OSError(f"{MONITOR} is missing: reinstall the package (pip install .) to build it")
        attach = _listen(os.path.join(d, "attach.sock"))
        if args["tty"]:
            import shutil
            import tempfile

            short = tempfile.mkdtemp(prefix="rd-")  # the console socket's path must be short
            try:
                console = _listen(os.path.join(short, "c.sock"))
                c = libcontainer.create(args["bundle"], args["id"], root=args["root"],
                                        console_socket=os.path.join(short, "c.sock"),
                                        stdio=(os.open(os.devnull, os.O_RDWR),) * 3)
                master = _recv_fd(console)
                console.close()
            finally:
                shutil.rmtree(short, ignore_errors=True)
            out, err, inp = master, -1, master
        else:
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            if args["stdin"]:
                in_r, in_w = os.pipe()
            else:
                in_r, in_w = os.open(os.devnull, os.O_RDONLY), -1
            made += [out_w, err_w, in_r]
            c = libcontainer.create(args["bundle"], args["id"], root=args["root"],
                                    stdio=(in_r, out_w, err_w))
            for fd in made:
                os.close(fd)
            out, err, inp = out_r, err_r, in_w
        c.start()
        fds = [f for f in (out, err, inp, attach.fileno()) if f >= 0]
        for f in fds:
            os.set_inheritable(f, True)
        # where the next daemon finds this monitor if the daemon dies before it records the
        # start (written before the status: then a dead reader means nobody will)
        from .monitor import MONITOR_FILE, proc_start_time
        from .records import write_json

        write_json(os.path.join(d, MONITOR_FILE), {"pid": os.getpid(),
                                                   "start": proc_start_time(os.getpid())}, sync=False)
        # a daemon killed meanwhile closed the pipe: EPIPE, and the container goes (below)
        os.write(status, json.dumps({"pid": c.pid, "monitor": os.getpid()}).encode())
        os.close(status)
        argv = [MONITOR, d, str(c.pid), str(out), str(err), str(inp), "1" if args["tty"] else "0",
                str(args.get("max_size", 0)), str(args.get("max_file", 1)),
                str(attach.fileno()), "1" if args.get("hold") else "0"]
        os.execv(MONITOR, argv)
    except BaseException as e:  # the daemon reads the reason; nothing is left behind
        if c is not None:
            try:
                c.delete(force=True)
            except Exception:
                pass
        try:
            os.unlink(os.path.join(d, "monitor.json"))
        except OSError:
            pass
        msg = str(e) or type(e).__name__
        try:
            os.write(status, json.dumps({"error": msg}).encode())
        except OSError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    _args = json.loads(sys.argv[1])
    # the monitor must be nobody's child but init's: the daemon waits for this first process
    if os.fork() > 0:
        os._exit(0)
    sys.exit(main(_args))
