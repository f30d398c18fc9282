"""A private dockerd (Debian's docker.io 20.10) for the Docker tests and bench.

On private paths: --data-root, --exec-root, -H unix://…, --pidfile, a config file of its own (so
it neither reads /etc/docker/daemon.json nor writes /etc/docker/key.json), the containerd it
starts itself, and `--add-runtime runner=` the installed runner. /usr/local/bin/docker may be
an unrelated client: the paths are spelled out.

dockerd changes the network namespace it runs in (docker0, veths, iptables rules, ip_forward):
it runs in a network namespace made for it (`unshare --net`), with a mount namespace of its
own in which /sys is that namespace's sysfs (the host's cgroup mounts moved under it) and /run
is a tmpfs (containerd's shim sockets, dockerd's plugin dir). Everything it made there goes
when its last process exits."""
from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNER_BIN = os.path.join(REPO, ".venv", "bin", "runner")
DOCKERD = "/usr/sbin/dockerd"
DOCKER = "/usr/bin/docker"
IMAGE = "runner-docker-busybox:latest"
T = 60  # seconds: the bound on any one docker command

# Runs as `unshare --net --mount --propagation slave sh -c START sh BASE dockerd…`: loopback up,
# a sysfs of the new network namespace on /sys (libnetwork reads /sys/class/net) with the
# host's cgroup hierarchies moved back under it, a private /run, BASE/shared a shared mount
# (for volumes with rshared propagation, which docker wants on a shared mount), then dockerd.
START = r"""
set -e
base=$1; shift
ip link set lo up
mkdir -p "$base/cg"
mount --rbind /sys/fs/cgroup "$base/cg"
mount -t sysfs sysfs /sys
mount --move "$base/cg" /sys/fs/cgroup
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p "$base/shared"
mount --bind "$base/shared" "$base/shared"
mount --make-shared "$base/shared"
exec "$@"
"""


def sh(cmd, timeout=T, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    return subprocess.run(cmd, text=True, timeout=timeout, **kw)


class Dockerd:
    def __init__(self, base: str, extra_args: tuple = ()):
        self.base = base
        self.extra_args = list(extra_args)  # more dockerd flags
        self.sock = os.path.join(base, "docker.sock")
        self.data = os.path.join(base, "data")
        self.exec_root = os.path.join(base, "exec")
        self.shared = os.path.join(base, "shared")  # a shared mount in dockerd's namespace
        # every container's cgroup under one parent made for this run
        self.cgroup_name = "runner-docker-" + uuid.uuid4().hex[:8]
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        self.env.update(DOCKER_HOST="unix://" + self.sock,
                        DOCKER_CONFIG=os.path.join(base, "client"))
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid  # unshare and sh exec: it is dockerd's

    def runtime_path(self) -> str:
        if os.access(RUNNER_BIN, os.X_OK):
            return RUNNER_BIN
        # a bare checkout (no `make venv`): a launcher of the package as the other tests run it
        path = os.path.join(self.base, "runner")
        with open(path, "w") as f:
            f.write(f"#!/bin/sh\nPYTHONPATH={REPO} exec {shlex.quote(sys.executable)}"
                    " -m runner \"$@\"\n")
        os.chmod(path, 0o755)
        return path

    def start(self) -> None:
        conf = os.path.join(self.base, "daemon.json")
        with open(conf, "w") as f:
            json.dump({"deprecated-key-path": os.path.join(self.base, "key.json")}, f)
        cmd = ["unshare", "--net", "--mount", "--propagation", "slave", "sh", "-c", START, "sh",
               self.base, DOCKERD, "--config-file", conf, "--data-root", self.data,
               "--exec-root", self.exec_root, "-H", "unix://" + self.sock,
               "--pidfile", os.path.join(self.base, "docker.pid"),
               "--add-runtime", "runner=" + self.runtime_path(),
               "--cgroup-parent", "/" + self.cgroup_name, "--storage-driver", "overlay2",
               *self.extra_args]
        self.log = open(os.path.join(self.base, "dockerd.log"), "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + T
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"dockerd exited {self.proc.returncode}:\n{self.log_tail()}")
            if os.path.exists(self.sock) and self("version").returncode == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"dockerd did not answer in {T} s:\n{self.log_tail()}")

    def import_image(self, rootfs: str, name: str = IMAGE) -> None:
        """`docker import` of a rootfs directory: nothing is pulled."""
        tar = subprocess.Popen(["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        r = self("import", "-", name, stdin=tar.stdout)
        tar.stdout.close()
        tar.wait(timeout=T)
        assert r.returncode == 0, r.stderr

    def log_tail(self, n: int = 30) -> str:
        with open(os.path.join(self.base, "dockerd.log")) as f:
            return "".join(f.readlines()[-n:])

    def __call__(self, *args, timeout=T, **kw) -> subprocess.CompletedProcess:
        return sh([DOCKER] + list(args), timeout, env=self.env, **kw)

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        r = self(*args, **kw)
        assert r.returncode == 0, f"docker {args} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r

    def inspect(self, name: str, fmt: str) -> str:
        return self.ok("inspect", "--format", fmt, name).stdout.strip()

    def bundle(self, cid: str) -> str:
        """The OCI bundle containerd made for a container (config.json, rootfs)."""
        return os.path.join(self.exec_root, "containerd", "daemon",
                            "io.containerd.runtime.v2.task", "moby", cid)

    def mountpoints(self) -> set:
        """The mount points under the base directory in dockerd's mount namespace (where the
        containers' are; other daemons' mounts propagate into it from the host)."""
        with open(f"/proc/{self.pid}/mountinfo") as f:
            return {p for p in (line.split()[4] for line in f)
                    if p == self.base or p.startswith(self.base + "/")}

    def in_netns(self, *cmd, timeout=T) -> subprocess.CompletedProcess:
        """A host command in dockerd's network namespace (where -p ports are published)."""
        return sh(["nsenter", "-t", str(self.pid), "-n", *cmd], timeout)

    def state_dirs(self) -> list:
        """Containers' state kept by the runtimes (runc's and the runner's --root)."""
        root = os.path.join(self.exec_root, "runtime-runc", "moby")
        try:  # (not a warm server's socket: RUNNER_TEST_WARM=1)
            return [n for n in os.listdir(root) if n != ".warm.sock"]
        except FileNotFoundError:
            return []

    def stop(self) -> None:
        if self.proc is None:
            return
        ids = self("ps", "-aq").stdout.split()
        if ids:
            self("rm", "--force", *ids, timeout=120)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # containerd, shims and containers that outlived dockerd: all name the base
        for _ in range(3):
            left = pids_mentioning(self.base)
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)
        self.log.close()




def missing() -> list:
    """The programs a Dockerd needs that this host lacks."""
    return [p for p in (DOCKERD, DOCKER, "/usr/bin/containerd", "/usr/bin/runc",
                        "/usr/bin/containerd-shim-runc-v2") if not os.access(p, os.X_OK)]


def pids_mentioning(text: str) -> list:
    """Processes whose command line holds `text` (a Dockerd's or engine's base directory or
    socket)."""
    needle = text.encode()
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if needle in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids
