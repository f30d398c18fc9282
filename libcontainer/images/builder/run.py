"""RUN: the command in a container of our own runtime (libcontainer, in this process) whose
rootfs is the stage's overlay mount; what it changes lands in the mount's upper dir, which
becomes the layer. No network unless asked (`host`): the container gets a network
namespace with only `lo`. The mount points the runtime makes (/proc, /sys, /dev when the
image has none) are removed again, so they are not part of the layer."""
from __future__ import annotations

import json
import os
import threading
import uuid

from ..bundle import resolve_user
from .dockerfile import BuildError

_TAIL = 64 * 1024
# what buildah's and podman's RUN get (containers.conf default_capabilities): package
# managers chown, setuid and write files they do not own
CAPABILITIES = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
                "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
                "CAP_SETUID", "CAP_SYS_CHROOT"]
_MOUNT_POINTS = ("proc", "sys", "dev")


class Output:
    """The command's output: passed to the progress callback as it comes, and the last
    64 KiB kept for the error message of a failing RUN."""

    def __init__(self, emit):
        self.emit = emit
        self.tail = b""
        self.r, self.w = os.pipe()
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while True:
            try:
                data = os.read(self.r, 65536)
            except OSError:
                break
            if not data:
                break
            self.tail = (self.tail + data)[-_TAIL:]
            if self.emit is not None:
                self.emit(data)
        os.close(self.r)

    def close(self) -> str:
        if self.w >= 0:
            os.close(self.w)
            self.w = -1
        self.thread.join()
        return self.tail.decode("utf-8", "replace")


def config(rootfs: str, argv: list, env: list, cwd: str, user: str, network: str) -> dict:
    from ...default_spec import default_config

    cfg = default_config(terminal=False)
    u = resolve_user(rootfs, user or "0")  # root by name: its home and groups too
    proc = cfg["process"]
    proc["args"] = argv
    proc["env"] = list(env)
    if not any(e.startswith("HOME=") for e in env):  # as docker's and buildah's RUN
        proc["env"].append(f"HOME={u['home'] or '/'}")
    proc["cwd"] = cwd or "/"
    proc["user"] = {k: u[k] for k in ("uid", "gid", "additionalGids") if k in u}
    # a build step runs the image's tools as they expect: no_new_privs off (setuid
    # helpers work), as buildah's and docker's RUN do
    proc["noNewPrivileges"] = False
    proc["capabilities"] = {k: list(CAPABILITIES) for k in ("bounding", "effective", "permitted")}
    cfg["root"] = {"path": rootfs, "readonly": False}
    cfg["hostname"] = "runner-build"
    linux = cfg["linux"]
    if network == "host":
        linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
        for name in ("resolv.conf", "hosts"):
            if os.path.exists(os.path.join(rootfs, "etc", name)) and \
                    not os.path.islink(os.path.join(rootfs, "etc", name)):
                cfg["mounts"].append({"destination": f"/etc/{name}", "type": "bind",
                                      "source": f"/etc/{name}", "options": ["rbind", "ro"]})
    return cfg


def run(workdir: str, rootfs: str, argv: list, env: list, cwd: str, user: str,
        network: str, emit, ins) -> None:
    """Run one RUN; a non-zero exit raises a BuildError with the output's tail."""
    import libcontainer

    try:
        cfg = config(rootfs, argv, env, cwd, user, network)
    except Exception as e:  # the user's name is not in the image, …
        raise ins.error(str(e)) from None
    absent = [m for m in _MOUNT_POINTS if not os.path.lexists(os.path.join(rootfs, m))]
    bundle = os.path.join(workdir, "bundle")
    os.makedirs(bundle, exist_ok=True)
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(cfg, f)
    out = Output(emit)
    cid = "build-" + uuid.uuid4().hex[:16]
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    c = None
    try:
        # create + start + wait rather than run(): run() forwards SIGINT to the container,
        # whose init (a shell as pid 1) ignores it; an interrupted build must stop the step
        c = libcontainer.create(bundle, cid, root=os.path.join(workdir, "state"),
                                stdio=(null, out.w, out.w))
        c.start()
        code = c.wait()
    except libcontainer.ContainerError as e:
        raise ins.error(f"cannot start the container: {e}") from None
    finally:
        os.close(null)
        if c is not None:
            try:
                c.delete(force=True)
            except Exception:
                from ...recovery import force_delete

                force_delete(cid, root=os.path.join(workdir, "state"))
        tail = out.close()
        for m in absent:
            try:
                os.rmdir(os.path.join(rootfs, m))
            except OSError:
                pass
    if code != 0:
        shown = "\n".join(tail.rstrip("\n").splitlines()[-40:])
        err = BuildError(f"{ins.file}:{ins.line}: RUN: the command {json.dumps(argv)} exited "
                         f"with code {code}" + (f"; its output ended with:\n{shown}" if shown else
                                                " (no output)"))
        err.argv, err.code = list(argv), code  # for those who word it their way (the daemon)
        raise err
