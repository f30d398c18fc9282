"""The daemons of the daemon tests, each on private paths: `runner daemon` and Debian's
dockerd (with its own containerd, runc), started by a test and removed after; a busybox
image as a docker-archive (docker save's format) both load the same way."""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time

from hostpaths import PODMAN_HOST_PATHS, HostPaths
from netnskit import Netns

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOTFS = os.path.join(REPO, "build", "bundle", "rootfs")
DOCKER = "/usr/bin/docker"  # Debian's docker.io 20.10 (not /usr/local/bin/docker)
DOCKERD = "/usr/sbin/dockerd"
IMAGE = "runner-test/busybox:latest"


def busybox_archive(path: str, tag: str = IMAGE, extra: dict | None = None,
                    config: dict | None = None) -> str:
    """A one-layer image of the busybox rootfs (+ `extra` files {path: bytes}) in docker
    save's format."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        for root, dirs, files in os.walk(ROOTFS):
            dirs.sort()
            for n in sorted(dirs) + sorted(files):
                full = os.path.join(root, n)
                rel = os.path.relpath(full, ROOTFS)
                ti = t.gettarinfo(full, rel)
                ti.mtime = 1700000000
                if ti.isreg():
                    with open(full, "rb") as f:
                        t.addfile(ti, f)
                else:
                    t.addfile(ti)
        for p, data in (extra or {}).items():
            ti = tarfile.TarInfo(p.lstrip("/"))
            ti.size = len(data)
            ti.mode = 0o755
            ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
        for d in ("tmp", "etc", "root", "home", "var", "data"):
            if not os.path.exists(os.path.join(ROOTFS, d)):
                ti = tarfile.TarInfo(d)
                ti.type = tarfile.DIRTYPE
                ti.mode = 0o1777 if d == "tmp" else 0o755
                t.addfile(ti)
    raw = layer.getvalue()
    diff = "sha256:" + hashlib.sha256(raw).hexdigest()
    cfg = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
           "config": dict({"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                           "Cmd": ["sh"]}, **(config or {})),
           "rootfs": {"type": "layers", "diff_ids": [diff]},
           "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "busybox rootfs"}]}
    cbytes = json.dumps(cfg).encode()
    cid = hashlib.sha256(cbytes).hexdigest()
    with tarfile.open(path, "w") as t:
        for name, data in ((f"{cid}.json", cbytes), (f"{diff[7:]}/layer.tar", raw),
                           ("manifest.json", json.dumps([{"Config": f"{cid}.json", "RepoTags": [tag],
                                                          "Layers": [f"{diff[7:]}/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    return path


def _wait_socket(path: str, proc, timeout: float = 30.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the daemon exited ({proc.returncode})")
        if os.path.exists(path):
            r = subprocess.run([DOCKER, "-H", f"unix://{path}", "version", "--format", "{{.Server.APIVersion}}"],
                               capture_output=True, text=True)
            if r.returncode == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the daemon did not answer on {path}")


class Daemon:
    """Common: a private directory, a socket, the docker CLI and docker-py pointed at it."""
    kind = ""

    def __init__(self, base: str, netns: str = ""):
        """netns: the path of a network namespace to run the daemon in (netnskit.Netns)."""
        self.base = base
        self.netns = netns
        self.sock = os.path.join(base, "docker.sock")
        self.proc = None
        os.makedirs(base, exist_ok=True)

    @property
    def host(self) -> str:
        return f"unix://{self.sock}"

    def docker(self, *args, input=None, timeout=120, check=False) -> subprocess.CompletedProcess:
        env = dict(os.environ, DOCKER_HOST=self.host, DOCKER_CONFIG=os.path.join(self.base, "cli"))
        env.pop("DOCKER_API_VERSION", None)
        r = subprocess.run([DOCKER, *map(str, args)], capture_output=True, text=True, env=env,
                           input=input, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker {args}: {r.returncode}: {r.stderr}{r.stdout}")
        return r

    def client(self):
        import docker

        return docker.DockerClient(base_url=self.host, version="auto", timeout=120)

    def _ns(self) -> list:
        # nsenter, not `ip netns exec`: that remounts /sys, hiding the cgroup hierarchies
        return ["nsenter", f"--net={self.netns}"] if self.netns else []

    def stop(self, grace: float = 30) -> None:
        """SIGTERM; after `grace` s SIGKILL (to its process group where it leads one, with
        what it started)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                if os.getpgid(self.proc.pid) == self.proc.pid:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
                self.proc.wait()
        self.proc = None

    def remove_all(self, networks: bool = True) -> None:
        """Every container (force) and, with `networks`, every user-defined network."""
        ids = self.docker("ps", "-aq").stdout.split()
        if ids:
            self.docker("rm", "-f", *ids)
        if networks:
            for n in self.docker("network", "ls", "-q", "--filter", "type=custom").stdout.split():
                self.docker("network", "rm", n)


class RunnerDaemon(Daemon):
    kind = "runner"

    def start(self, extra=()) -> "RunnerDaemon":
        self.data = os.path.join(self.base, "data")
        self.log = open(os.path.join(self.base, "daemon.log"), "ab")
        self.proc = subprocess.Popen(self._ns() + [sys.executable, "-m", "runner", "daemon", "-H", self.host,
                                                   "--data-root", self.data, *extra],
                                     stdout=self.log, stderr=self.log, cwd=REPO)
        _wait_socket(self.sock, self.proc)
        return self

    def stop(self, grace: float = 20) -> None:
        super().stop(grace)

    def kill(self) -> None:
        if self.proc:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def cleanup(self) -> None:
        """Every container (force), then the daemon, then the directory."""
        if self.proc is None:
            self.start()
        self.remove_all()
        self.stop()
        _umount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        remove_cgroup_parents()


class Dockerd(Daemon):
    """Debian's dockerd with its own containerd, on private --data-root/--exec-root/-H."""
    kind = "dockerd"

    def start(self, extra=()) -> "Dockerd":
        b = self.base
        # its own config file: neither /etc/docker/daemon.json read nor /etc/docker/key.json
        # written; and a cgroup parent of its own, not the host's /docker
        conf = os.path.join(b, "daemon.json")
        with open(conf, "w") as f:
            json.dump({"deprecated-key-path": os.path.join(b, "key.json")}, f)
        self.log = open(os.path.join(b, "dockerd.log"), "ab")
        self.proc = subprocess.Popen(self._ns() + [
            DOCKERD, "--config-file", conf, "--cgroup-parent", "/" + self.cgroup_parent,
            "-H", self.host, "--data-root", os.path.join(b, "data"),
            "--exec-root", os.path.join(b, "exec"), "--pidfile", os.path.join(b, "dockerd.pid"),
            "--containerd-namespace", "daemon-test", "--containerd-plugins-namespace", "daemon-test-p",
            # in its own network namespace it may write its rules there; never on the host
            *(["--iptables=false", "--bridge=none"] if not self.netns else ["--iptables=true"]),
            "--ip6tables=false",
            "--userland-proxy=false", "--storage-driver", "overlay2", "--live-restore",
            "--log-level", "warn", *extra], stdout=self.log, stderr=self.log, start_new_session=True)
        _wait_socket(self.sock, self.proc, 60)
        return self

    @property
    def cgroup_parent(self) -> str:
        return "daemon-dockerd-" + os.path.basename(self.base)

    def cleanup(self) -> None:
        if self.proc is not None:
            self.remove_all()
        self.stop()
        _umount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        remove_cgroup_parents(self.cgroup_parent)


def remove_cgroup_parents(name: str = "runner-daemon") -> None:
    """A daemon's cgroup parent (runner daemon's /runner-daemon, kept by the library for the
    next container, as dockerd keeps its own), where nothing uses it any more."""
    root = "/sys/fs/cgroup"
    if not os.path.isdir(root):
        return
    for ctl in os.listdir(root):
        d = os.path.join(root, ctl, name)
        if os.path.isdir(d):
            try:
                os.rmdir(d)
            except OSError:
                pass  # in use (another daemon's containers) or not ours to empty
    try:
        os.rmdir(os.path.join(root, name))
    except OSError:
        pass


def _umount_under(base: str) -> None:
    base = os.path.realpath(base)
    with open("/proc/self/mountinfo") as f:
        points = [ln.split()[4] for ln in f]
    for p in sorted((p for p in points if p == base or p.startswith(base + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def daemon_netns() -> Netns:
    """A throw-away network namespace for a daemon's bridges, held for as long as a test
    module with a daemon may run."""
    return Netns(hold=3600, lo_up=True)


@contextlib.contextmanager
def loaded_daemon(cls, base: str, archive: str, netns: bool = True):
    """A `cls` daemon on private `base` — in a throw-away network namespace, or the host's
    (to reach a registry on its loopback) — with `archive` loaded; all of it gone after."""
    ns = daemon_netns() if netns else None
    d = cls(base, netns=ns.path if ns else "").start()
    try:
        d.docker("load", "-i", archive, check=True)
        yield d
    finally:
        d.cleanup()
        if ns:
            ns.close()
    assert not os.path.exists(base)


class PodmanService(Daemon):
    """`podman system service` (podman 4.3's Docker-compatible API) on private --root,
    --runroot, --tmpdir, with runc (podman refuses crun on this hybrid host) and cgroupfs;
    containers.conf caps the default rlimits the host cannot give (no CAP_SYS_RESOURCE)."""
    kind = "podman"

    def start(self) -> "PodmanService":
        import resource

        b = self.base
        self.host_paths = HostPaths(PODMAN_HOST_PATHS)
        def hard(res, cap):
            h = resource.getrlimit(res)[1]
            return cap if h == resource.RLIM_INFINITY else min(h, cap)
        nofile, nproc = hard(resource.RLIMIT_NOFILE, 1024), hard(resource.RLIMIT_NPROC, 4096)
        conf = os.path.join(b, "containers.conf")
        with open(conf, "w") as f:
            f.write("[containers]\n"
                    f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
                    "[engine]\n"
                    'cgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n'
                    f'events_logfile_path = "{b}/events.log"\n'
                    "[network]\n"
                    f'network_config_dir = "{b}/networks"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.flags = ["--root", f"{b}/root", "--runroot", f"{b}/runroot", "--tmpdir", f"{b}/tmp",
                      "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
        self.log = open(os.path.join(b, "podman.log"), "ab")
        self.proc = subprocess.Popen(self._ns() + ["podman", *self.flags, "system", "service",
                                                   "--time=0", self.host],
                                     stdout=self.log, stderr=self.log, env=self.env,
                                     start_new_session=True)
        _wait_socket(self.sock, self.proc, 60)
        return self

    def cleanup(self) -> None:
        if self.proc is not None:
            self.remove_all(networks=False)  # `system reset` below takes them
        self.stop()
        subprocess.run(["podman", *self.flags, "system", "reset", "--force"], env=self.env,
                       capture_output=True, timeout=120)
        _umount_under(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        self.host_paths.remove()
