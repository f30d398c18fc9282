"""docker exec: another process in a running container (libcontainer's exec), its stdio as
pipes or a pty the API layer relays; records kept in memory (as dockerd, they do not
outlive the daemon)."""
from __future__ import annotations

import os
import socket
import threading

from .errors import BadRequest, Conflict, NotFound
from .records import new_id


class Exec:
    def __init__(self, cid: str, cfg: dict):
        self.id = new_id()
        self.cid = cid
        self.cfg = cfg
        self.running = False
        self.exit_code = None
        self.pid = 0
        self.master = -1
        self.done = threading.Event()
        self.on_done: list = []  # called (in the reaping thread) after done is set
        self.forced_code = None  # the exit code to report whatever the process's was

    def inspect(self) -> dict:
        c = self.cfg
        return {"ID": self.id, "Running": self.running, "ExitCode": self.exit_code,
                "ProcessConfig": {"tty": bool(c.get("Tty")), "entrypoint": c["Cmd"][0],
                                  "arguments": c["Cmd"][1:], "privileged": bool(c.get("Privileged")),
                                  "user": c.get("User") or ""},
                "OpenStdin": bool(c.get("AttachStdin")), "OpenStderr": bool(c.get("AttachStderr")),
                "OpenStdout": bool(c.get("AttachStdout")), "CanRemove": False,
                "ContainerID": self.cid, "DetachKeys": c.get("DetachKeys") or "", "Pid": self.pid}


# the fields of the Engine API's ExecConfig
FIELDS = ("AttachStdin", "AttachStdout", "AttachStderr", "ConsoleSize", "DetachKeys", "Tty",
          "Env", "Cmd", "Privileged", "User", "WorkingDir")


def create(engine, ref: str, cfg: dict) -> Exec:
    rec = engine.get(ref)
    if rec["State"]["Status"] == "paused":
        raise Conflict(f"Container {rec['Id']} is paused, unpause the container before exec")
    if rec["State"]["Status"] != "running":
        raise Conflict(f"Container {rec['Id']} is not running")
    cmd = cfg.get("Cmd")
    if not cmd or not isinstance(cmd, list):
        raise BadRequest("No exec command specified")
    ex = Exec(rec["Id"], cfg)
    engine.execs[ex.id] = ex
    with engine.lock:
        rec["ExecIDs"] = (rec.get("ExecIDs") or []) + [ex.id]
    engine.events.emit("container", f"exec_create: {' '.join(cmd)}", rec["Id"], engine._attrs(rec))
    return ex


def get(engine, eid: str) -> Exec:
    ex = engine.execs.get(eid)
    if ex is None:
        raise NotFound(f"No such exec instance: {eid}")
    return ex


def _process(engine, rec: dict, cfg: dict):
    import libcontainer
    from ..images.bundle import resolve_user
    from ..spec import Capabilities, Process, User

    c = libcontainer.load(rec["Id"], engine.runtime_root)
    base = c.spec.process
    user = base.user
    if cfg.get("User"):
        try:
            u = resolve_user(os.path.join(engine._dir(rec["Id"]), "bundle", "rootfs"), cfg["User"])
        except Exception as e:
            raise BadRequest(str(e)) from None
        user = User(u["uid"], u["gid"], None, tuple(u.get("additionalGids") or ()))
    caps = base.capabilities
    if cfg.get("Privileged"):
        from .oci import capabilities as all_caps

        allc = tuple(all_caps({"Privileged": True}))
        caps = Capabilities(allc, allc, allc, (), ())
    env: dict = {}
    for e in tuple(base.env) + tuple(cfg.get("Env") or ()):
        if "=" not in e:
            raise BadRequest(f"Env: {e!r} is not KEY=VALUE")
        env[e.split("=", 1)[0]] = e
    cwd = cfg.get("WorkingDir") or base.cwd
    if not cwd.startswith("/"):
        raise BadRequest(f"WorkingDir: {cwd!r} is not absolute")
    size = cfg.get("ConsoleSize")
    return c, Process(args=cfg["Cmd"], env=tuple(env.values()), cwd=cwd, user=user,
                      terminal=bool(cfg.get("Tty")), capabilities=caps, rlimits=base.rlimits,
                      no_new_privileges=base.no_new_privileges,
                      console_size=tuple(size) if size and all(size) else None)


def start(engine, ex: Exec) -> tuple:
    """Start the process; → (stdin fd or -1, stdout fd, stderr fd or -1) for the relay (a
    pty's master three times over for a tty). A thread then waits for its exit."""
    if ex.running or ex.exit_code is not None:
        raise Conflict(f"Error: Exec command {ex.id} has already run")
    rec = engine.get(ex.cid)
    if rec["State"]["Status"] != "running":
        raise Conflict(f"Container {rec['Id']} is not running")
    c, proc = _process(engine, rec, ex.cfg)
    cfg = ex.cfg
    if proc.terminal:
        import shutil
        import tempfile

        short = tempfile.mkdtemp(prefix="rd-")  # a unix socket's path must be short
        path = os.path.join(short, "c.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        try:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                pid = c.exec(proc, stdio=(null, null, null), console_socket=path, detach=True)
            finally:
                os.close(null)
            conn, _ = srv.accept()
            with conn:
                _, anc, _, _ = conn.recvmsg(16, socket.CMSG_SPACE(4))
            master = int.from_bytes(anc[0][2][:4], "little")
        except Exception as e:
            raise _exec_error(e) from None
        finally:
            srv.close()
            shutil.rmtree(short, ignore_errors=True)
        fds = (master, master, -1)
        mine: list = []
        ex.master = master
    else:
        in_r, in_w = os.pipe() if cfg.get("AttachStdin") else (os.open(os.devnull, os.O_RDONLY), -1)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            pid = c.exec(proc, stdio=(in_r, out_w, err_w), detach=True)
        except Exception as e:
            for fd in (in_r, in_w, out_r, out_w, err_r, err_w):
                if fd >= 0:
                    os.close(fd)
            raise _exec_error(e) from None
        finally:
            pass
        mine = [in_r, out_w, err_w]
        for fd in mine:
            os.close(fd)
        fds = (in_w, out_r, err_r)
    ex.pid = pid
    ex.running = True
    engine.events.emit("container", f"exec_start: {' '.join(cfg['Cmd'])}", ex.cid, engine._attrs(rec))

    def reap():
        from ..launch import exit_code, wait_pid

        code = exit_code(wait_pid(pid))
        code = ex.forced_code if ex.forced_code is not None else code
        ex.exit_code = code
        ex.running = False
        ex.done.set()
        for cb in ex.on_done:
            cb()
        engine.events.emit("container", "exec_die", ex.cid, dict(engine._attrs(rec), execID=ex.id,
                                                                 exitCode=str(code)))
        engine.on_change("exec:" + ex.id)
    threading.Thread(target=reap, daemon=True).start()
    return fds


def _exec_error(e: Exception):
    from .errors import EngineError

    msg = str(e)
    if "not found" in msg or "No such file" in msg or "executable" in msg:
        # dockerd: OCI runtime exec failed … executable file not found (exit 126/127 in CLI)
        return EngineError(f"OCI runtime exec failed: exec failed: {msg}: unknown")
    return EngineError(msg)


def abort(ex: Exec, code: int) -> None:
    """Kill the exec's process and record `code` as its exit code; return once reaped."""
    import signal

    ex.forced_code = code
    if ex.running and ex.pid:
        try:
            os.kill(ex.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    ex.done.wait(10)


def resize(ex: Exec, h: int, w: int) -> None:
    if ex.master >= 0:
        from ..terminal import set_size

        try:
            set_size(ex.master, h, w)
        except OSError:
            pass
