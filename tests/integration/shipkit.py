"""Peers for the ship tests (push, save/load, login, search): podman with runc on a private
store, Debian's dockerd (docker.io 20.10: /usr/bin/docker, /usr/sbin/dockerd — never the
unrelated /usr/local/bin/docker) on private paths in a network namespace of its own, a
docker-registry with htpasswd auth, and a runner of images from our store."""
from __future__ import annotations

import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import uuid

import imagekit as kit
from hostpaths import PODMAN_HOST_PATHS, HostPaths
from netnskit import Netns

T = 120
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
PORTS = range(23000, 23500)  # this suite's TCP ports


def port() -> int:
    """A free port of the range given to these tests."""
    start = (os.getpid() * 7) % len(PORTS)
    for i in range(len(PORTS)):
        p = PORTS[(start + i) % len(PORTS)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    raise AssertionError("no free port in 23000-23499")


def registry(work: str, htpasswd: str = "") -> kit.Registry:
    return kit.Registry(work, htpasswd=htpasswd, port=port())


def htpasswd_file(path: str, user: str, password: str) -> str:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    with open(path, "w") as f:
        f.write(f"{user}:" + crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)) + "\n")
    return path


def run(cmd, timeout=T, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=timeout, **kw)


class Recorder:
    """A progress sink: what each layer line ended with."""

    def __init__(self):
        self.notes: list = []

    def layer(self, digest, total):
        return _Line(self, digest)

    def message(self, text):
        pass


class _Line:
    def __init__(self, owner, digest):
        self.owner, self.digest = owner, digest

    def update(self, n):
        pass

    def done(self, note=""):
        self.owner.notes.append(note)


# ---- podman (runc, a private store) ----------------------------------------------------------

def _hard(res: int, cap: int) -> int:
    hard = resource.getrlimit(res)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


class Podman:
    def __init__(self):
        self.host_paths = HostPaths(PODMAN_HOST_PATHS)
        self.base = tempfile.mkdtemp(prefix="ship-podman-", dir="/tmp")
        conf = os.path.join(self.base, "containers.conf")
        nofile, nproc = _hard(resource.RLIMIT_NOFILE, 1024), _hard(resource.RLIMIT_NPROC, 4096)
        with open(conf, "w") as f:
            # podman's default rlimits (1048576) need CAP_SYS_RESOURCE, which this host lacks
            f.write("[containers]\n"
                    f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
                    "[engine]\n"
                    'cgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n'
                    f'events_logfile_path = "{self.base}/events.log"\n'
                    "[network]\n"
                    f'network_config_dir = "{self.base}/networks"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=conf,
                        REGISTRY_AUTH_FILE=os.path.join(self.base, "auth.json"))
        with open(self.env["REGISTRY_AUTH_FILE"], "w") as f:
            f.write('{"auths": {}}')
        self.flags = ["--root", f"{self.base}/root", "--runroot", f"{self.base}/runroot",
                      "--tmpdir", f"{self.base}/tmp", "--storage-driver", "vfs",
                      "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
        self.cgroup = "ship-podman-" + uuid.uuid4().hex[:8]

    def __call__(self, *args, timeout=T, env=None) -> subprocess.CompletedProcess:
        return run(["podman", *self.flags, *args], timeout=timeout, env=env or self.env)

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        r = self(*args, **kw)
        assert r.returncode == 0, f"podman {args}: {r.stderr}"
        return r

    def run_image(self, image: str, *args) -> str:
        """`/bin/sh ARGS…` in a container of the image."""
        return self.ok("run", "--rm", "--network", "none", "--cgroup-parent", "/" + self.cgroup,
                       "--entrypoint", "/bin/sh", image, *args).stdout

    def stop(self) -> None:
        self("rm", "--all", "--force", "--time", "0")
        self("rmi", "--all", "--force")
        run(["umount", "-R", f"{self.base}/root"], timeout=30)
        shutil.rmtree(self.base, ignore_errors=True)
        self.host_paths.remove()
        remove_cgroup(self.cgroup)


def remove_cgroup(name: str) -> None:
    """Remove the cgroup `name` (and what is under it) in every v1 hierarchy and cgroup2."""
    for ctl in os.listdir("/sys/fs/cgroup") if os.path.isdir("/sys/fs/cgroup") else []:
        d = os.path.join("/sys/fs/cgroup", ctl, name)
        if os.path.isdir(d):
            for sub, _, _ in sorted(os.walk(d), key=lambda w: -len(w[0])):
                try:
                    os.rmdir(sub)
                except OSError:
                    pass


# ---- dockerd (Debian's docker.io) on private paths, in a network namespace of its own ----------

class Dockerd:
    def __init__(self):
        if not (os.path.exists(DOCKERD) and os.path.exists(DOCKER)):
            raise FileNotFoundError("docker.io (dockerd) is not installed")
        self.base = tempfile.mkdtemp(prefix="ship-dockerd-", dir="/tmp")
        self.netns = Netns(hold=3600, lo_up=True)
        self.cgroup = "ship-docker-" + uuid.uuid4().hex[:8]
        self.sock = os.path.join(self.base, "docker.sock")
        with open(os.path.join(self.base, "daemon.json"), "w") as f:
            n = _hard(resource.RLIMIT_NOFILE, 1024)
            # deprecated-key-path: dockerd 20.10 writes its key.json there, not in /etc/docker
            f.write('{"default-ulimits": {"nofile": {"Name": "nofile", "Hard": %d, "Soft": %d}}, '
                    '"deprecated-key-path": "%s/key.json"}' % (n, n, self.base))
        self.log = open(os.path.join(self.base, "dockerd.log"), "w")
        self.proc = subprocess.Popen(
            [*self.netns.enter(), DOCKERD,
             "--data-root", f"{self.base}/data", "--exec-root", f"{self.base}/exec",
             "-H", f"unix://{self.sock}", "--pidfile", f"{self.base}/docker.pid",
             "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-masq=false",
             "--config-file", f"{self.base}/daemon.json", "--cgroup-parent", "/" + self.cgroup],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while run([DOCKER, "-H", f"unix://{self.sock}", "version"], timeout=30).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(os.path.join(self.base, "dockerd.log")) as f:
                    raise AssertionError(f"dockerd did not start: {f.read()[-3000:]}")
            time.sleep(0.3)

    def __call__(self, *args, timeout=T) -> subprocess.CompletedProcess:
        return run([DOCKER, "-H", f"unix://{self.sock}", *args], timeout=timeout,
                   env=dict(os.environ, DOCKER_CONFIG=os.path.join(self.base, "cli")))

    def ok(self, *args, **kw) -> subprocess.CompletedProcess:
        r = self(*args, **kw)
        assert r.returncode == 0, f"docker {args}: {r.stderr}"
        return r

    def stop(self) -> None:
        if self.proc.poll() is None:
            left = self("ps", "-aq").stdout.split()
            if left:
                self("rm", "-f", *left)
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        # containerd-shims dockerd started (they outlive it by design) and its mounts
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if self.base.encode() in f.read():
                            os.kill(int(pid), 9)
                except OSError:
                    pass
        with open("/proc/self/mountinfo") as f:
            mounts = [line.split()[4] for line in f if self.base in line.split()[4]]
        for m in sorted(mounts, key=len, reverse=True):
            run(["umount", "-l", m], timeout=30)
        self.netns.close()
        shutil.rmtree(self.base, ignore_errors=True)
        remove_cgroup(self.cgroup)


# ---- the runner's side ---------------------------------------------------------------------

def run_from_store(store: str, image: str, tmp: str, script: str) -> str:
    """Run `sh -c script` in a container of `image` from our store; → its stdout."""
    from conftest import new_id

    bundle = os.path.join(tmp, "bundle-" + uuid.uuid4().hex[:8])
    r = kit.runner("bundle", "--storage", store, "--entrypoint", "/bin/sh", image, bundle, "-c", script)
    assert r.returncode == 0, r.stderr
    try:
        r = kit.runner("--root", os.path.join(tmp, "state"), "run", "--bundle", bundle, new_id())
        assert r.returncode == 0, r.stderr
        return r.stdout
    finally:
        assert kit.runner("bundle", "--storage", store, "--remove", bundle).returncode == 0
