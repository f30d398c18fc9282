"""The engines the grading bench compares, each with a workdir per submission, a compile
and a test run under the workload's limits:

- sandbox: libcontainer.sandbox, one warm Sandbox;
- epicbox: epicbox (PyPI) on a private dockerd (Debian's /usr/sbin/dockerd on private
  --data-root/--exec-root/-H/--pidfile, in a network namespace of its own);
- docker: a `docker run --rm` per step on that dockerd (Debian's /usr/bin/docker);
- podman: a `podman run --rm --runtime runc` per step, private --root/--runroot;
- bwrap: bubblewrap over the image directory (no cgroup: RLIMIT_AS for memory, so an
  allocation without end is a failing malloc, RE, not an OOM kill).

Everything is made under one private directory and removed by close()."""
from __future__ import annotations

import contextlib
import itertools
import os
import resource
import shutil
import signal
import subprocess
import threading
import time

from netnskit import Netns
from grading_workload import COMPILE_LIMITS, RUN_LIMITS, Outcome, from_exit

TAG = f"sbxbench{os.getpid()}"
IMAGE_TAG = "sbx-grader:bench"


def _write(d: str, name: str, data: bytes) -> None:
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


class _HostDirs:
    """Workdirs as host directories (for the CLI engines and bwrap)."""

    def __init__(self, top: str) -> None:
        self.top = top
        self._n = itertools.count(1)  # (threads take workdirs at once)

    @contextlib.contextmanager
    def workdir(self):
        d = os.path.join(self.top, f"wd{next(self._n)}")
        os.mkdir(d)
        os.chmod(d, 0o777)
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)


# ---- sandbox --------------------------------------------------------------------------

class SandboxEngine:
    name = "sandbox"

    def __init__(self, image: str, top: str) -> None:
        from libcontainer import sandbox

        self.sandbox = sandbox
        lim = sandbox.Limits
        self.run_limits = lim(cpu_time=RUN_LIMITS["cpu"], wall_time=RUN_LIMITS["wall"],
                              memory=RUN_LIMITS["memory_mb"] << 20, pids=RUN_LIMITS["pids"])
        self.compile_limits = lim(cpu_time=COMPILE_LIMITS["cpu"],
                                  wall_time=COMPILE_LIMITS["wall"],
                                  memory=COMPILE_LIMITS["memory_mb"] << 20,
                                  pids=COMPILE_LIMITS["pids"])
        self.box = sandbox.Sandbox(image, self.run_limits)
        # the CPU the runs themselves used (each run's cgroup: every process of it), to
        # tell the workload's own cost from the engine's
        self.cpu = 0.0
        self._cpu_lock = threading.Lock()

    def _count(self, r):
        with self._cpu_lock:
            self.cpu += r.cpu_time
        return r

    def workdir(self):
        return self.box.workdir()

    def compile(self, sub, wd) -> bool:
        r = self._count(self.box.run(sub.compile_cmd(), files={sub.filename: sub.source},
                                     workdir=wd, limits=self.compile_limits))
        return r.status == "OK"

    def test(self, sub, wd, stdin: bytes) -> Outcome:
        r = self._count(self.box.run(sub.run_cmd(), workdir=wd, stdin=stdin))
        v = {"OK": "OK", "TO": "TLE", "ML": "MLE"}.get(r.status, "RE")
        return Outcome(v, r.stdout)

    def trivial(self) -> None:
        assert self.box.run(["true"]).status == "OK"

    def close(self) -> None:
        self.box.close()


# ---- a private dockerd ------------------------------------------------------------------

class Dockerd:
    """/usr/sbin/dockerd on private paths, in a network namespace and a mount namespace of
    its own (nothing it mounts reaches the host's), cgroups under a parent of its own."""

    def __init__(self, top: str, image_dir: str) -> None:
        self.top = os.path.join(top, "docker")
        os.makedirs(self.top)
        self.sock = os.path.join(self.top, "docker.sock")
        self.netns = Netns(hold=7200)
        self.cgroup_parent = f"/{TAG}-docker"
        self.log = open(os.path.join(self.top, "dockerd.log"), "w")
        conf = os.path.join(self.top, "daemon.json")  # so /etc/docker/key.json is not written
        with open(conf, "w") as f:
            f.write('{"deprecated-key-path": "%s/key.json"}' % self.top)
        self.proc = subprocess.Popen(
            [*self.netns.enter(), "unshare", "-m", "--propagation",
             "private",
             "/usr/sbin/dockerd", "--config-file", conf, "--data-root", os.path.join(self.top, "data"),
             "--exec-root", os.path.join(self.top, "exec"), "-H", f"unix://{self.sock}",
             "--pidfile", os.path.join(self.top, "dockerd.pid"), "--bridge", "none",
             "--iptables=false", "--ip6tables=false", "--ip-masq=false",
             "--storage-driver", "overlay2", "--cgroup-parent", self.cgroup_parent,
             "--userland-proxy=false", "--log-level", "warn"],
            stdout=self.log, stderr=self.log, start_new_session=True)
        try:
            self._ready(image_dir)
        except BaseException:  # (an interrupt too) the daemon and its netns go
            self.close()
            raise

    def _ready(self, image_dir: str) -> None:
        deadline = time.monotonic() + 60
        while self.docker("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                with open(self.log.name) as f:
                    tail = f.read()[-1500:]
                raise SystemExit(f"dockerd did not start:\n{tail}")
            time.sleep(0.2)
        tar = subprocess.Popen(["tar", "-C", image_dir, "-c", "."], stdout=subprocess.PIPE)
        self.docker("import", "-", IMAGE_TAG, stdin=tar.stdout)
        tar.wait()

    def docker(self, *args, check=True, **kw):
        r = subprocess.run(["/usr/bin/docker", "-H", f"unix://{self.sock}", *args],
                           capture_output=True, **kw)
        if check and r.returncode != 0:
            raise SystemExit(f"docker {args[0]} failed: {r.stderr.decode()[-500:]}")
        return r

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()
        self.netns.close()
        _remove_cgroups(self.cgroup_parent)


def _remove_cgroups(parent: str) -> None:
    """The engine's cgroup parent in every hierarchy, deepest first."""
    for mnt in ("/sys/fs/cgroup/" + d for d in os.listdir("/sys/fs/cgroup")):
        top = mnt + parent
        if os.path.isdir(top):
            for d, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
                try:
                    os.rmdir(d)
                except OSError:
                    pass


class EpicboxEngine:
    name = "epicbox"

    def __init__(self, dockerd: Dockerd) -> None:
        import epicbox

        self.epicbox = epicbox
        epicbox.configure(profiles=[epicbox.Profile("grader", IMAGE_TAG)],
                          docker_url=f"unix://{dockerd.sock}")
        self.run_limits = {"cputime": RUN_LIMITS["cpu"], "realtime": RUN_LIMITS["wall"],
                           "memory": RUN_LIMITS["memory_mb"], "processes": RUN_LIMITS["pids"]}
        self.compile_limits = {"cputime": COMPILE_LIMITS["cpu"],
                               "realtime": COMPILE_LIMITS["wall"],
                               "memory": COMPILE_LIMITS["memory_mb"],
                               "processes": COMPILE_LIMITS["pids"]}

    def workdir(self):
        return self.epicbox.working_directory()

    def compile(self, sub, wd) -> bool:
        r = self.epicbox.run("grader", " ".join(sub.compile_cmd()),
                             files=[{"name": sub.filename, "content": sub.source}],
                             limits=self.compile_limits, workdir=wd)
        return r["exit_code"] == 0

    def test(self, sub, wd, stdin: bytes) -> Outcome:
        r = self.epicbox.run("grader", " ".join(sub.run_cmd()), stdin=stdin,
                             limits=self.run_limits, workdir=wd)
        return Outcome(from_exit(r["exit_code"], r["timeout"], r["oom_killed"]), r["stdout"])

    def trivial(self) -> None:
        assert self.epicbox.run("grader", "true", limits=self.run_limits)["exit_code"] == 0

    def close(self) -> None:
        pass


class _CliEngine(_HostDirs):
    """One `ENGINE run --rm` per step, the workdir bound at /box; the wall limit is
    timeout(1) inside (exit 124), CPU an rlimit (SIGXCPU, 152), memory the cgroup (137)."""

    def __init__(self, top: str) -> None:
        super().__init__(top)

    def _run(self, wd: str, cmd: list, limits: dict, stdin: bytes):
        args = self.base + ["run", "--rm", "-i", "--network", "none",
                            "--memory", f"{limits['memory_mb']}m",
                            "--memory-swap", f"{limits['memory_mb']}m",
                            "--pids-limit", str(limits["pids"]),
                            "--ulimit", f"cpu={limits['cpu']}:{limits['cpu'] + 1}",
                            "-v", f"{wd}:/box", "-w", "/box", IMAGE_TAG,
                            "timeout", str(limits["wall"]), *cmd]
        return subprocess.run(args, input=stdin, capture_output=True)

    def compile(self, sub, wd) -> bool:
        _write(wd, sub.filename, sub.source)
        return self._run(wd, sub.compile_cmd(), COMPILE_LIMITS, b"").returncode == 0

    def test(self, sub, wd, stdin: bytes) -> Outcome:
        r = self._run(wd, sub.run_cmd(), RUN_LIMITS, stdin)
        return Outcome(from_exit(r.returncode), r.stdout)

    def trivial(self) -> None:
        with self.workdir() as wd:
            assert self._run(wd, ["true"], RUN_LIMITS, b"").returncode == 0

    def close(self) -> None:
        pass


class DockerRunEngine(_CliEngine):
    name = "docker run"

    def __init__(self, dockerd: Dockerd, top: str) -> None:
        super().__init__(top)
        self.base = ["/usr/bin/docker", "-H", f"unix://{dockerd.sock}"]


class PodmanEngine(_CliEngine):
    name = "podman run"

    def __init__(self, top: str, image_dir: str) -> None:
        super().__init__(top)
        p = os.path.join(top, "podman")
        os.makedirs(p)
        conf = os.path.join(p, "containers.conf")
        with open(conf, "w") as f:
            # this host's bounding set has no CAP_SYS_RESOURCE: podman's default rlimits
            # (1048576) are above the hard ones and cannot be set; file locks, not the
            # shared ones in /dev/shm
            nofile = self.nofile = min(resource.getrlimit(resource.RLIMIT_NOFILE)[1], 1024)
            nproc = self.nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
            f.write(f'[containers]\ndefault_ulimits = ["nofile={nofile}:{nofile}", '
                    f'"nproc={nproc}:{nproc}"]\n'
                    '[engine]\nlock_type = "file"\nevents_logger = "none"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=conf)
        self.cgroup_parent = f"/{TAG}-podman"
        self.base = ["podman", "--root", os.path.join(p, "root"), "--runroot",
                     os.path.join(p, "run"), "--tmpdir", os.path.join(p, "tmp"),
                     "--runtime", "runc", "--cgroup-manager", "cgroupfs",
                     "--storage-driver", "overlay"]
        tar = subprocess.Popen(["tar", "-C", image_dir, "-c", "."], stdout=subprocess.PIPE)
        r = subprocess.run(self.base + ["import", "-", IMAGE_TAG], stdin=tar.stdout,
                           capture_output=True, env=self.env)
        tar.wait()
        if r.returncode != 0:
            raise SystemExit(f"podman import failed: {r.stderr.decode()[-500:]}")

    def _run(self, wd, cmd, limits, stdin):
        args = self.base + ["run", "--rm", "-i", "--network", "none", "--cgroup-parent",
                            self.cgroup_parent, "--memory", f"{limits['memory_mb']}m",
                            "--memory-swap", f"{limits['memory_mb']}m",
                            "--pids-limit", str(limits["pids"]),
                            "--ulimit", f"cpu={limits['cpu']}:{limits['cpu'] + 1}",
                            # with one --ulimit podman sets its own defaults for these
                            # (1048576, above this host's hard limits): all three then
                            "--ulimit", f"nofile={self.nofile}:{self.nofile}",
                            "--ulimit", f"nproc={self.nproc}:{self.nproc}",
                            "-v", f"{wd}:/box", "-w", "/box", IMAGE_TAG,
                            "timeout", str(limits["wall"]), *cmd]
        # in the private directory: conmon writes an `oom` file into its working directory
        # when a container is OOM-killed (found in the checkout after a bench)
        return subprocess.run(args, input=stdin, capture_output=True, env=self.env,
                              cwd=self.top)

    def close(self) -> None:
        subprocess.run(self.base + ["system", "reset", "--force"], capture_output=True,
                       env=self.env)
        _remove_cgroups(self.cgroup_parent)


class BwrapEngine(_HostDirs):
    name = "bwrap"

    def __init__(self, image_dir: str, top: str) -> None:
        super().__init__(top)
        self.image = image_dir

    def _run(self, wd: str, cmd: list, limits: dict, stdin: bytes):
        def rlimits():
            cpu = limits["cpu"]
            mem = limits["memory_mb"] << 20
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
            resource.setrlimit(resource.RLIMIT_AS, (mem, mem))
            resource.setrlimit(resource.RLIMIT_NPROC, (limits["pids"] * 64,) * 2)

        args = ["bwrap", "--ro-bind", self.image, "/", "--bind", wd, "/srv", "--chdir", "/srv",  # /srv: the read-only image has no /box
                "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--unshare-all",
                "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--", *cmd]
        try:
            return subprocess.run(args, input=stdin, capture_output=True,
                                  timeout=limits["wall"], preexec_fn=rlimits)
        except subprocess.TimeoutExpired as e:
            return subprocess.CompletedProcess(args, 124, e.stdout or b"", e.stderr or b"")

    def compile(self, sub, wd) -> bool:
        _write(wd, sub.filename, sub.source)
        return self._run(wd, sub.compile_cmd(), COMPILE_LIMITS, b"").returncode == 0

    def test(self, sub, wd, stdin: bytes) -> Outcome:
        r = self._run(wd, sub.run_cmd(), RUN_LIMITS, stdin)
        return Outcome(from_exit(r.returncode), r.stdout)

    def trivial(self) -> None:
        with self.workdir() as wd:
            assert self._run(wd, ["true"], RUN_LIMITS, b"").returncode == 0

    def close(self) -> None:
        pass
