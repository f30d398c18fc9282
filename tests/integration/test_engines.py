"""Real clients (issue 3): podman and containerd drive `runner` as their OCI runtime.

Each engine gets a private instance: podman with its own --root/--runroot/--tmpdir and a
containers.conf (cgroupfs, file events, ulimits the host allows); containerd started here
on a private socket, root and state, stopped by PID at the end. Images are made here from
the busybox rootfs (`make rootfs`); nothing is pulled. The runtime is a wrapper script that
records every call (argv, one line each) and execs the runner with a private default
--root, so each test can check both what the engine saw and what it asked the runtime.

Everything an engine makes is removed at the end of the module: containers, mounts, its
cgroups (all under one parent named for this run), processes (conmon, shims) and the few
host paths the engines create on first use, when they did not exist before."""
from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid

import pytest
from conftest import REPO, RUNNER, WARM, WarmServer, need_root
from hostpaths import PODMAN_HOST_PATHS, HostPaths
from dockerkit import pids_mentioning

IMAGE = "localhost/busybox-test:latest"
# the installed command (`make venv`), as engines would be configured with it
RUNNER_BIN = os.path.join(REPO, ".venv", "bin", "runner")
T = 60  # seconds: the bound on any one engine command


def sh(cmd, timeout=T, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    return subprocess.run(cmd, text=True, timeout=timeout, **kw)


def ok(cmd, timeout=T, **kw) -> subprocess.CompletedProcess:
    r = sh(cmd, timeout, **kw)
    assert r.returncode == 0, f"{cmd} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def runner_features() -> dict:
    r = ok(RUNNER + ["features"], cwd=REPO)
    return json.loads(r.stdout)


# ---- the recording runtime ---------------------------------------------------------------

class Runtime:
    """The wrapper script engines get as their runtime binary. Engines that pass --root
    (containerd) override the default one given here: the runner's last --root wins."""

    def __init__(self, base: str):
        self.path = os.path.join(base, "runner-rt")
        self.log = os.path.join(base, "calls.log")
        self.root = os.path.join(base, "runner-state")
        with open(self.path, "w") as f:
            f.write("#!/bin/sh\n"
                    "# record the call (tab-separated argv), then be the runner\n"
                    "{ for a in \"$@\"; do printf '%s\\t' \"$a\"; done; printf '\\n'; }"
                    f" >> {self.log}\n"
                    f"exec {self._command()} --root {self.root} \"$@\"\n")
        os.chmod(self.path, 0o755)

    @staticmethod
    def _command() -> str:
        if os.access(RUNNER_BIN, os.X_OK):
            return RUNNER_BIN
        # not installed (a bare checkout): the package as the other tests run it
        return f"env PYTHONPATH={REPO} {sys.executable} -m runner"

    def calls(self) -> list:
        """Every recorded call since the last reset(): a list of argv lists."""
        try:
            with open(self.log) as f:
                return [line.rstrip("\n").rstrip("\t").split("\t") for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def reset(self) -> None:
        open(self.log, "w").close()

    def verbs(self) -> list:
        return [verb_of(c) for c in self.calls()]


GLOBAL_WITH_VALUE = {"--root", "--log", "--log-format", "--criu", "--rootless"}


def verb_of(argv: list) -> str:
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in GLOBAL_WITH_VALUE else 1
    return argv[i] if i < len(argv) else ""


def call(calls: list, verb: str) -> list:
    found = [c for c in calls if verb_of(c) == verb]
    assert found, f"no `{verb}` among the runtime calls: {calls}"
    return found[0]


# ---- leftovers ---------------------------------------------------------------------------

def cgroup_mounts() -> list:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f
                if line.split(" - ")[1].split()[0] in ("cgroup", "cgroup2")]


def cgroup_dirs(name: str) -> list:
    """Every cgroup directory named `name` (a parent made for this run) at depth ≤ 3."""
    found = []
    for mnt in cgroup_mounts():
        for base, dirs, _ in os.walk(mnt):
            if os.path.basename(base) == name:
                found.append(base)
                dirs[:] = []
            elif base.count("/") - mnt.count("/") >= 3:
                dirs[:] = []
    return found


def remove_cgroups(name: str) -> list:
    """rmdir the trees under the `name` parents (leaves first); → what could not go."""
    left = []
    for top in cgroup_dirs(name):
        for base, _, _ in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            for _ in range(50):
                try:
                    os.rmdir(base)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: a process still exiting
                    time.sleep(0.05)
            else:
                left.append(base)
    left += _remove_stray_dirs(name)
    return left


def _remove_stray_dirs(name: str) -> list:
    """conmon makes its `name/conmon` (with files of its own) under every controller
    /proc/self/cgroup names, also where that controller has no v1 hierarchy mounted
    (hugetlb, net_cls, net_prio, perf_event here): then it is a plain tree on
    /sys/fs/cgroup's tmpfs, which cgroup_dirs() does not walk."""
    import shutil

    mounted = set(cgroup_mounts())
    left = []
    for entry in os.listdir("/sys/fs/cgroup"):
        where = os.path.join("/sys/fs/cgroup", entry)
        top = os.path.join(where, name)
        if where in mounted or os.path.islink(where) or not os.path.isdir(top):
            continue
        shutil.rmtree(top, ignore_errors=True)
        if os.path.lexists(top):
            left.append(top)
        try:
            os.rmdir(where)  # conmon's mkdir -p made it too; an unmounted empty dir serves none
        except OSError:
            pass
    return left


def mounts_under(path: str) -> list:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path + "/")]


def unmount_under(path: str) -> None:
    for mnt in sorted(mounts_under(path), key=len, reverse=True):
        sh(["umount", "-l", mnt], timeout=10)


def kill_pids(pids: list) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def state_dirs(root: str) -> list:
    try:
        return [d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d))]
    except FileNotFoundError:
        return []


def check_clean(engine, cids=()) -> None:
    """After a test: no runner state, no container cgroups, no mounts of its containers."""
    assert state_dirs(engine.runtime.root) == [], "the runner kept containers' state"
    for top in cgroup_dirs(engine.cgroup_name):
        kids = set(os.listdir(top)) - {"conmon"}
        kids = {k for k in kids if os.path.isdir(os.path.join(top, k))}
        assert not kids, f"container cgroups left under {top}: {kids}"
    for cid in cids:
        assert not [m for m in mounts_under(engine.base) if cid in m], f"mounts of {cid} left"


# ---- what engines set, seen from inside (issue 11, "Engines") ----------------------------

def _pure_v2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


# the container's own limits, through the engine's `type: cgroup` mount of /sys/fs/cgroup:
# memory, pids, cpu quota and period, one per line
LIMITS_INSIDE = ("cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; "
                 "tr ' ' '\\n' < /sys/fs/cgroup/cpu.max" if _pure_v2() else
                 "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                 "/sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us")
SETTINGS_INSIDE = ('; echo "$GREETING"; id -u; id -g; hostname; '
                   "touch /x 2>/dev/null && echo rw-root || echo ro-root")


def _counter_script(out: str) -> str:
    """A process that counts into a file the host reads: proof of what it is let do."""
    return ("trap 'echo TERM >> " + out + "/log' TERM; i=0; "
            "while :; do i=$((i+1)); echo $i > " + out + "/n.tmp; mv " + out + "/n.tmp " + out +
            "/n; sleep 0.05; done")


def _count(out: str) -> int:
    for _ in range(100):
        try:
            with open(os.path.join(out, "n")) as f:
                return int(f.read())
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)
    raise AssertionError("the counter never wrote")


def _frozen_then_thawed(pause, resume, out: str) -> None:
    """Paused, the counter stands still; resumed, it goes on."""
    first = _count(out)
    time.sleep(0.2)
    assert _count(out) > first, "the counter does not run"
    assert pause().returncode == 0
    time.sleep(0.2)  # a write under way when the freeze came may still land
    held = _count(out)
    time.sleep(0.4)
    assert _count(out) == held, "the process ran while paused"
    assert resume().returncode == 0
    time.sleep(0.4)
    assert _count(out) > held, "the process did not go on after resume"


# ---- podman ------------------------------------------------------------------------------

def _host_hard_limit(res: int, cap: int) -> int:
    import resource

    hard = resource.getrlimit(res)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


class Podman:
    def __init__(self, base: str):
        import resource

        self.base = base
        self.runtime = Runtime(base)
        self.cgroup_name = "runner-podman-" + uuid.uuid4().hex[:8]
        self.conf = os.path.join(base, "containers.conf")
        nofile = _host_hard_limit(resource.RLIMIT_NOFILE, 1024)
        nproc = _host_hard_limit(resource.RLIMIT_NPROC, 4096)
        with open(self.conf, "w") as f:
            # podman's default ulimits (1048576) are above this host's hard limits, and
            # raising a hard limit needs CAP_SYS_RESOURCE, which this VM does not give
            f.write("[containers]\n"
                    f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
                    "[engine]\n"
                    'cgroup_manager = "cgroupfs"\n'
                    'events_logger = "file"\n'
                    f'events_logfile_path = "{base}/events.log"\n'
                    "[network]\n"
                    f'network_config_dir = "{base}/networks"\n')
        self.env = dict(os.environ, CONTAINERS_CONF=self.conf)
        self.global_flags = ["--root", f"{base}/root", "--runroot", f"{base}/runroot",
                             "--tmpdir", f"{base}/tmp", "--storage-driver", "vfs",
                             "--runtime", self.runtime.path]
        # every container's cgroup (and conmon's) under one parent made for this run
        self.run_flags = ["--network", "none", "--cgroup-parent", "/" + self.cgroup_name]
        if not runner_features().get("linux", {}).get("seccomp", {}).get("enabled"):
            # the runner refuses linux.seccomp while it cannot apply it (see
            # test_podman_default_seccomp_profile), and podman adds its default profile
            self.run_flags += ["--security-opt", "seccomp=unconfined"]

    def __call__(self, *args, timeout=T, **kw) -> subprocess.CompletedProcess:
        return sh(["podman"] + self.global_flags + list(args), timeout, env=self.env, **kw)

    def run(self, *args, **kw) -> subprocess.CompletedProcess:
        """`podman run RUN_FLAGS ARGS…` where ARGS holds run's own flags, the image, the
        command."""
        return self("run", *self.run_flags, *args, **kw)

    def teardown(self) -> None:
        self("rm", "--all", "--force", "--time", "0", timeout=T)
        kill_pids(pids_mentioning(self.base))  # a conmon that outlived its container
        unmount_under(self.base)


@pytest.fixture(scope="module")
def podman(rootfs_template):
    need_root()
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman (and conmon) are not installed: `make test` installs them")
    host = HostPaths(PODMAN_HOST_PATHS)
    base = tempfile.mkdtemp(prefix="runner-podman-", dir="/tmp")
    p = Podman(base)
    try:
        tar = subprocess.Popen(["tar", "-C", rootfs_template, "-c", "."], stdout=subprocess.PIPE)
        r = p("import", "-", IMAGE, stdin=tar.stdout)
        tar.stdout.close()
        tar.wait(timeout=T)
        assert r.returncode == 0, r.stderr
        yield p
    finally:
        p.teardown()
        left = remove_cgroups(p.cgroup_name)
        shutil.rmtree(base, ignore_errors=True)
        host.remove()
        assert not left, f"cgroups that could not be removed: {left}"
        assert not mounts_under(base)


@pytest.fixture
def pm(podman):
    podman.runtime.reset()
    yield podman
    check_clean(podman)


def test_podman_run_rm_echo(pm):
    r = pm.run("--rm", IMAGE, "echo", "hi")
    assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    calls = pm.runtime.calls()
    assert pm.runtime.verbs() == ["create", "start", "delete"]
    create = call(calls, "create")
    # conmon hands the bundle and the pid file it reads the container's pid from
    assert "--bundle" in create and "--pid-file" in create


def test_podman_exit_codes(pm):
    r = pm.run("--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout) == (3, "out\n")
    assert "err" in r.stderr.splitlines()  # podman may add warnings of its own
    # a missing program fails `create` with runc's words, which podman turns into 127
    r = pm.run("--rm", IMAGE, "nosuch")
    assert r.returncode == 127, r.stderr
    assert 'exec: "nosuch": executable file not found in $PATH' in r.stderr
    r = pm.run("--rm", IMAGE, "/nosuch")
    assert r.returncode == 127, r.stderr
    assert "no such file or directory" in r.stderr
    r = pm.run("--rm", IMAGE, "/etc/passwd")
    assert r.returncode == 126, r.stderr
    assert 'exec: "/etc/passwd": permission denied' in r.stderr
    # killed by a signal: 128+N, through `runner kill` and conmon's wait
    r = pm.run("-d", "--name", "killed", IMAGE, "sleep", "100")
    assert r.returncode == 0, r.stderr
    assert pm("kill", "--signal", "KILL", "killed").returncode == 0
    r = pm("wait", "killed")
    assert r.stdout.strip() == "137", r.stderr
    assert pm("rm", "killed").returncode == 0


def test_podman_stdin(pm):
    r = pm.run("--rm", "-i", IMAGE, "sh", "-c", "read l; echo got:$l", input="abc\n")
    assert (r.returncode, r.stdout) == (0, "got:abc\n"), r.stderr


def test_podman_user(pm):
    # create/start as a user that is not root: the init opens the exec fifo as that user
    r = pm.run("--rm", "--user", "1000:1000", IMAGE, "sh", "-c", "id -u; id -g")
    assert (r.returncode, r.stdout) == (0, "1000\n1000\n"), r.stderr


def test_podman_read_only_and_tmpfs(pm):
    # podman mounts its tmpfs with runc's tmpcopyup: they start with what they cover
    r = pm.run("--rm", "--read-only", IMAGE, "sh", "-c",
               "touch /x 2>/dev/null && echo root-writable; touch /tmp/y /run/y && echo tmp-ok")
    assert (r.returncode, r.stdout) == (0, "tmp-ok\n"), r.stderr
    r = pm.run("--rm", "--tmpfs", "/etc:ro", IMAGE, "sh", "-c",
               "grep ' /etc ' /proc/mounts; cat /etc/passwd | head -1; touch /etc/x")
    lines = r.stdout.splitlines()
    assert r.returncode == 1 and "Read-only file system" in r.stderr, r.stderr
    assert lines[0].startswith("tmpfs /etc tmpfs ro,") and lines[1].startswith("root:")


def test_podman_preserve_fds(pm):
    # podman run --preserve-fds N → conmon → runner create --preserve-fds N
    path = os.path.join(pm.base, "fd3.txt")
    with open(path, "w") as f:
        f.write("through fd 3\n")
    cmd = ["podman"] + pm.global_flags + ["run", *pm.run_flags, "--rm", "--preserve-fds", "1",
                                          IMAGE, "cat", "/proc/self/fd/3"]
    r = sh(["sh", "-c", 'f=$1; shift; exec "$@" 3<"$f"', "sh", path] + cmd, env=pm.env)
    assert (r.returncode, r.stdout) == (0, "through fd 3\n"), r.stderr
    create = call(pm.runtime.calls(), "create")
    assert create[create.index("--preserve-fds") + 1] == "1"


def test_podman_detached_exec_pause_stop_rm(pm):
    script = "trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.1; done"
    r = pm.run("-d", "--name", "d1", IMAGE, "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    cid = r.stdout.strip()
    r = pm("inspect", "--format", "{{.State.Status}} {{.State.Pid}}", "d1")
    status, pid = r.stdout.split()
    assert status == "running" and int(pid) > 0

    r = pm("exec", "d1", "sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline; exit 4")
    assert r.returncode == 4, r.stderr
    own, init = r.stdout.split("\n", 1)
    assert own != "1" and "trap" in init  # in the init's pid namespace, not pid 1 itself
    r = pm("exec", "--env", "X=1", "--workdir", "/tmp", "d1", "sh", "-c", "echo $X $PWD")
    assert (r.returncode, r.stdout) == (0, "1 /tmp\n"), r.stderr

    assert pm("pause", "d1").returncode == 0
    r = pm("inspect", "--format", "{{.State.Status}}", "d1")
    assert r.stdout.strip() == "paused"
    assert pm("unpause", "d1").returncode == 0

    t0 = time.monotonic()
    r = pm("stop", "--time", "10", "d1")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 5, "SIGTERM did not reach the container: podman waited"
    r = pm("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "d1")
    assert r.stdout.split() == ["exited", "0"]
    assert pm("logs", "d1").stdout == "up\nbye\n"
    assert pm("rm", "d1").returncode == 0

    calls = pm.runtime.calls()
    exec_call = call(calls, "exec")
    # conmon's exec: a process.json, detached, the pid file it then reads
    for flag in ("--process", "--detach", "--pid-file"):
        assert flag in exec_call
    assert call(calls, "kill")[-2:] == [cid, "15"]
    assert {"pause", "resume", "delete"} <= set(pm.runtime.verbs())


def test_podman_tty(pm):
    # -t: the runner sends the pty master over conmon's --console-socket
    r = pm.run("--rm", "-t", IMAGE, "sh", "-c", "tty; exit 5")
    assert r.returncode == 5, r.stderr
    assert r.stdout.replace("\r", "").strip() == "/dev/pts/0"
    assert "--console-socket" in call(pm.runtime.calls(), "create")

    assert pm.run("-d", "--name", "t1", IMAGE, "sleep", "100").returncode == 0
    r = pm("exec", "-t", "t1", "sh", "-c", "tty; exit 6")
    assert r.returncode == 6, r.stderr
    assert r.stdout.replace("\r", "").strip().startswith("/dev/pts/")
    exec_call = call(pm.runtime.calls(), "exec")
    assert "--tty" in exec_call and "--console-socket" in exec_call
    assert pm("rm", "--force", "--time", "0", "t1").returncode == 0


def test_podman_limits_and_settings_seen_inside(pm):
    """--memory, --pids-limit, --cpus reach the container's own cgroup, which is what the
    process sees at /sys/fs/cgroup (not the host root's); --read-only, --env, --user,
    --hostname hold for the process."""
    r = pm.run("--rm", "--memory", "64m", "--pids-limit", "50", "--cpus", "0.5", "--read-only",
               "--env", "GREETING=hi there", "--user", "1000:1000", "--hostname", "inside-host",
               IMAGE, "sh", "-c", LIMITS_INSIDE + SETTINGS_INSIDE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [str(64 << 20), "50", "50000", "100000", "hi there", "1000",
                                     "1000", "inside-host", "ro-root"], r.stdout


def test_podman_exec_user_tty_pause_and_stop_timeout_seen_inside(pm):
    """exec --user -t: the process is that user, on a pty it owns (group tty); pause
    freezes the container's processes and unpause lets them go on; stop --time 2 sends
    TERM (the process sees it), then KILL once the 2 s are up."""
    out = os.path.join(pm.base, "out-s1")
    os.mkdir(out)
    r = pm.run("-d", "--name", "s1", "-v", f"{out}:/out", IMAGE, "sh", "-c",
               _counter_script("/out"))
    assert r.returncode == 0, r.stderr
    try:
        r = pm("exec", "-t", "--user", "1000:1000", "s1", "sh", "-c",
               "id -u; tty; stat -c %u:%g $(tty)")
        lines = r.stdout.replace("\r", "").split()
        assert r.returncode == 0 and lines[0] == "1000" and lines[1].startswith("/dev/pts/"), r
        assert lines[2] == "1000:5"
        _frozen_then_thawed(lambda: pm("pause", "s1"), lambda: pm("unpause", "s1"), out)
        t0 = time.monotonic()
        r = pm("stop", "--time", "2", "s1")
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert 2 <= took < 15, took
        with open(os.path.join(out, "log")) as f:
            assert f.read() == "TERM\n"
        r = pm("inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", "s1")
        assert r.stdout.split() == ["exited", "137"], r.stdout
    finally:
        pm("rm", "--force", "--time", "0", "s1")


def test_podman_user_namespace_volume_under_a_private_dir(pm):
    """podman --uidmap: every bind (a volume whose host path is under a mode-700 directory,
    podman's /etc/hosts…) is made although the container's root is an unprivileged host
    uid, and the limits are still the container's own inside (issue 11, points 2 and 12)."""
    priv = os.path.join(pm.base, "priv-u1")
    os.makedirs(os.path.join(priv, "vol"))
    with open(os.path.join(priv, "vol", "f"), "w") as f:
        f.write("volume data\n")
    os.chmod(priv, 0o700)
    limit = ("/sys/fs/cgroup/memory.max" if _pure_v2() else
             "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    r = pm.run("--rm", "--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536",
               "--memory", "64m", "-v", f"{priv}/vol:/vol:ro", IMAGE, "sh", "-c",
               f"cat /vol/f; cat {limit}; head -1 /proc/self/uid_map")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["volume data", str(64 << 20)], r.stdout
    assert lines[2].split() == ["0", "200000", "65536"]


def test_podman_default_seccomp_profile(podman):
    """podman always sends its default seccomp profile. While the runner cannot apply one
    it must refuse (not run unconfined silently): the error reaches podman's user."""
    podman.runtime.reset()
    flags = [f for f in podman.run_flags if f not in ("--security-opt", "seccomp=unconfined")]
    r = podman("run", "--rm", *flags, IMAGE, "echo", "hi")
    if runner_features().get("linux", {}).get("seccomp", {}).get("enabled"):
        assert (r.returncode, r.stdout) == (0, "hi\n"), r.stderr
    else:
        assert r.returncode != 0
        assert "linux.seccomp" in r.stderr, r.stderr
    check_clean(podman)


# ---- containerd --------------------------------------------------------------------------

def docker_archive(rootfs: str, ref: str, out: str) -> None:
    """A `docker save` archive (what `ctr images import` reads) of one uncompressed layer:
    the rootfs as it is."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for name in sorted(os.listdir(rootfs)):
            t.add(os.path.join(rootfs, name), arcname=name)
    layer_bytes = layer.getvalue()
    diff_id = hashlib.sha256(layer_bytes).hexdigest()
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
    config = json.dumps({
        "architecture": arch, "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff_id]},
    }).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{"Config": config_id + ".json", "RepoTags": [ref],
                            "Layers": [diff_id + "/layer.tar"]}]).encode()
    with tarfile.open(out, "w") as t:
        for name, data in ((config_id + ".json", config), (diff_id + "/layer.tar", layer_bytes),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


class Containerd:
    def __init__(self, base: str):
        self.base = base
        self.runtime = Runtime(base)
        self.cgroup_name = "runner-ctrd-" + uuid.uuid4().hex[:8]
        self.sock = os.path.join(base, "containerd.sock")
        self.runc_root = os.path.join(base, "runc-root")
        self.config = os.path.join(base, "config.toml")
        with open(self.config, "w") as f:
            f.write(f'version = 2\nroot = "{base}/root"\nstate = "{base}/state"\n'
                    'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
                    f'[grpc]\n  address = "{self.sock}"\n'
                    f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n'
                    '[debug]\n  address = ""\n[metrics]\n  address = ""\n'
                    '[plugins."io.containerd.internal.v1.opt"]\n'
                    f'  path = "{base}/opt"\n')
        self.proc = None
        self.log = open(os.path.join(base, "containerd.log"), "w")

    def start(self) -> None:
        self.proc = subprocess.Popen(["containerd", "--config", self.config],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"containerd exited {self.proc.returncode}: {self.logs()}")
            if os.path.exists(self.sock) and self.ctr("version", timeout=5).returncode == 0:
                return
            time.sleep(0.1)
        raise AssertionError(f"containerd did not come up: {self.logs()}")

    def logs(self) -> str:
        with open(self.log.name) as f:
            return f.read()[-3000:]

    def ctr(self, *args, timeout=T, **kw) -> subprocess.CompletedProcess:
        return sh(["ctr", "--address", self.sock] + list(args), timeout, **kw)

    def run_flags(self, cid: str) -> list:
        return ["--runc-binary", self.runtime.path, "--runc-root", self.runc_root,
                "--cgroup", f"/{self.cgroup_name}/{cid}"]

    def stop(self) -> None:
        """Everything down: tasks, containers, containerd (by its pid), leftover shims."""
        if self.proc is not None and self.proc.poll() is None:
            for cid in self.ctr("containers", "list", "--quiet", timeout=10).stdout.split():
                self.ctr("task", "kill", "--signal", "KILL", cid, timeout=10)
                self.ctr("task", "delete", "--force", cid, timeout=10)
                self.ctr("containers", "delete", cid, timeout=10)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        # a shim outlives containerd; ours are the ones given our socket's address
        kill_pids(pids_mentioning(self.sock))
        kill_pids(pids_mentioning(self.base))
        self.log.close()
        unmount_under(self.base)


# Made by containerd and its shims whatever the config says: the shims' sockets
# (/run/containerd/s), ctr's fifos (/run/containerd/fifo).
CONTAINERD_HOST_PATHS = ["/run/containerd"]


@pytest.fixture(scope="module")
def containerd(rootfs_template):
    need_root()
    for prog in ("containerd", "ctr", "containerd-shim-runc-v2"):
        if shutil.which(prog) is None:
            pytest.skip(f"{prog} is not installed: `make test` installs containerd")
    host = HostPaths(CONTAINERD_HOST_PATHS)
    base = tempfile.mkdtemp(prefix="runner-ctrd-", dir="/tmp")
    c = Containerd(base)
    warm = None
    try:
        c.start()
        if WARM:  # the runtime's state root the shims name (--runc-root, namespace)
            warm = WarmServer(os.path.join(c.runc_root, "default")).__enter__()
        archive = os.path.join(base, "busybox.tar")
        docker_archive(rootfs_template, IMAGE, archive)
        r = c.ctr("images", "import", archive)
        assert r.returncode == 0, r.stderr
        # a rootfs directory for `ctr run --rootfs`, which needs no image
        c.rootfs = os.path.join(base, "rootfs")
        ok(["cp", "-a", rootfs_template, c.rootfs])
        yield c
        if warm is not None:
            assert warm.served() and not warm.refused(), warm.log()
            # create too: its init cloned in the shim's own child (runner/warm_spawn.py)
            assert any(" create " in line for line in warm.served()), warm.log()
    finally:
        if warm is not None:
            warm.__exit__(None, None, None)
        c.stop()
        left = remove_cgroups(c.cgroup_name)
        mounts = mounts_under(base)
        shutil.rmtree(base, ignore_errors=True)
        host.remove()
        assert not left, f"cgroups that could not be removed: {left}"
        assert not mounts, f"mounts left: {mounts}"
        assert not pids_mentioning(base), "containerd processes left"


@pytest.fixture
def cd(containerd):
    containerd.runtime.reset()
    yield containerd
    check_clean(containerd)
    assert containerd.ctr("containers", "list", "--quiet").stdout.split() == []


def test_ctr_run_image(cd):
    r = cd.ctr("run", "--rm", *cd.run_flags("c1"), IMAGE, "c1", "sh", "-c", "echo hi; exit 3")
    assert (r.returncode, r.stdout) == (3, "hi\n"), r.stderr
    calls = cd.runtime.calls()
    assert cd.runtime.verbs()[:2] == ["create", "start"] and "delete" in cd.runtime.verbs()
    create = call(calls, "create")
    # the shim's global flags: its own --root, a JSON log it reads errors from
    i = create.index("--log-format")
    assert create[i + 1] == "json" and "--log" in create and "--root" in create
    assert "--pid-file" in create and "--bundle" in create
    check_clean(cd, ["c1"])


def test_ctr_run_rootfs(cd):
    r = cd.ctr("run", "--rm", *cd.run_flags("c2"), "--rootfs", cd.rootfs, "c2",
               "/bin/sh", "-c", "echo from rootfs; exit 0")
    assert (r.returncode, r.stdout) == (0, "from rootfs\n"), r.stderr


def test_ctr_missing_program(cd):
    """The error comes back from `create`, through the shim, with the runner's message."""
    r = cd.ctr("run", "--rm", *cd.run_flags("c3"), IMAGE, "c3", "/nosuch")
    assert r.returncode != 0
    assert 'exec: "/nosuch": stat /nosuch: no such file or directory' in r.stderr, r.stderr
    assert cd.runtime.verbs()[0] == "create" and "start" not in cd.runtime.verbs()


def test_ctr_detached_exec_pause_kill(cd):
    flags = cd.run_flags("c4")
    script = "trap 'exit 0' TERM; while :; do sleep 0.1; done"
    r = cd.ctr("run", "-d", *flags, IMAGE, "c4", "sh", "-c", script)
    assert r.returncode == 0, r.stderr
    r = cd.ctr("task", "exec", "--exec-id", "e1", "c4", "sh", "-c", "echo in:$$; exit 6")
    assert r.returncode == 6 and r.stdout.startswith("in:"), r.stderr
    r = cd.ctr("task", "ps", "c4")
    assert r.returncode == 0 and len(r.stdout.split("\n")[1:]) >= 1, r.stderr
    assert cd.ctr("task", "pause", "c4").returncode == 0
    assert "PAUSED" in cd.ctr("task", "list").stdout
    assert cd.ctr("task", "resume", "c4").returncode == 0
    assert "RUNNING" in cd.ctr("task", "list").stdout
    assert cd.ctr("task", "kill", "c4").returncode == 0  # SIGTERM: the trap exits 0
    for _ in range(100):
        if "STOPPED" in cd.ctr("task", "list").stdout:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("c4 did not stop after SIGTERM")
    # a second kill: the runner says "container not running", the shim "already finished"
    r = cd.ctr("task", "kill", "c4")
    assert r.returncode != 0 and "process already finished" in r.stderr, r.stderr
    assert cd.ctr("task", "delete", "c4").returncode == 0
    assert cd.ctr("containers", "delete", "c4").returncode == 0

    calls = cd.runtime.calls()
    exec_call = call(calls, "exec")
    for flag in ("--process", "--detach", "--pid-file"):
        assert flag in exec_call
    assert {"ps", "pause", "resume", "kill", "delete"} <= set(cd.runtime.verbs())


def test_ctr_tty(cd):
    """ctr -t needs a terminal of its own: `script` gives it one."""
    cmd = ["ctr", "--address", cd.sock, "run", "--rm", "-t", *cd.run_flags("c5"), IMAGE, "c5",
           "sh", "-c", "tty; exit 4"]
    r = sh(["script", "-qec", " ".join(cmd), "/dev/null"], stdin=subprocess.DEVNULL)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "/dev/pts/0" in r.stdout
    assert "--console-socket" in call(cd.runtime.calls(), "create")


def test_ctr_limits_and_settings_seen_inside(cd):
    """ctr run --memory-limit, --cpus, --read-only, --env: seen by the process. ctr's
    default spec has no /sys/fs/cgroup mount (CRI adds one): the test asks for it."""
    r = cd.ctr("run", "--rm", *cd.run_flags("c6"), "--memory-limit", str(64 << 20),
               "--mount", "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid",
               "--cpus", "0.5", "--read-only", "--env", "GREETING=hi there", IMAGE, "c6",
               "sh", "-c", LIMITS_INSIDE.replace("/sys/fs/cgroup/pids.max", "/dev/null")
               .replace("/sys/fs/cgroup/pids/pids.max", "/dev/null") + SETTINGS_INSIDE)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:3] == [str(64 << 20), "50000", "100000"], r.stdout + r.stderr
    assert lines[3:5] == ["hi there", "0"] and lines[-1] == "ro-root", r.stdout


def test_ctr_exec_user_tty_and_pause_seen_inside(cd):
    out = os.path.join(cd.base, "out-c7")
    os.mkdir(out)
    r = cd.ctr("run", "-d", *cd.run_flags("c7"), "--mount",
               f"type=bind,src={out},dst=/out,options=rbind:rw", IMAGE, "c7", "sh", "-c",
               _counter_script("/out"))
    assert r.returncode == 0, r.stderr
    try:
        import shlex

        cmd = ["ctr", "--address", cd.sock, "task", "exec", "-t", "--user", "1000",
               "--exec-id", "e7", "c7", "sh", "-c", "id -u; tty; stat -c %u:%g $(tty)"]
        r = sh(["script", "-qec", shlex.join(cmd), "/dev/null"], stdin=subprocess.DEVNULL)
        lines = r.stdout.replace("\r", "").replace("^@", "").replace("\0", "").split()
        assert r.returncode == 0 and lines[0] == "1000", r.stdout + r.stderr
        assert lines[1].startswith("/dev/pts/") and lines[2].startswith("1000:")
        _frozen_then_thawed(lambda: cd.ctr("task", "pause", "c7"),
                            lambda: cd.ctr("task", "resume", "c7"), out)
    finally:
        cd.ctr("task", "kill", "--signal", "KILL", "c7")
        for _ in range(100):
            if cd.ctr("task", "delete", "c7").returncode == 0:
                break
            time.sleep(0.05)
        cd.ctr("containers", "delete", "c7")


# ---- the same calls, made directly -------------------------------------------------------

def test_create_fails_for_a_missing_program(bundle):
    """Like runc, `create` looks the program up (as the container's user, in its cwd and
    PATH) before it waits for `start`: engines get the error from `create`, and a log
    line in JSON for the containerd shim."""
    log = os.path.join(bundle.path, "log.json")
    for prog, code, msg in (("nosuch", 127, 'exec: "nosuch": executable file not found in $PATH'),
                            ("/bin/nosuch", 127, 'exec: "/bin/nosuch": stat /bin/nosuch: no such file or directory'),
                            ("/etc/passwd", 126, 'exec: "/etc/passwd": permission denied'),
                            ("/etc", 126, 'exec: "/etc": permission denied')):
        bundle.set_args(prog)
        bundle.write()
        cid = "t-" + uuid.uuid4().hex[:12]
        bundle.last_id = cid
        r = bundle.runner("--log", log, "--log-format", "json", "create", "--bundle",
                          bundle.path, cid, timeout=30)
        assert r.returncode == code, r.stderr
        assert msg in r.stderr
        with open(log) as f:
            last = json.loads(f.readlines()[-1])
        assert last["level"] == "error" and msg in last["msg"]
        assert bundle.runner("state", cid).returncode != 0  # nothing left


def test_create_start_as_another_user(bundle):
    """The init waits for `start` by opening the exec fifo for writing after it has become
    process.user: the fifo must let that user write (it was 0600, root's only)."""
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    bundle.config["root"]["readonly"] = False
    bundle.sh("id > /tmp/id.txt")
    bundle.write()
    cid = "t-" + uuid.uuid4().hex[:12]
    bundle.last_id = cid
    # the container keeps its stdio: not our pipes, or run() would wait for it
    r = subprocess.run(RUNNER + ["--root", bundle.root, "create", "--bundle", bundle.path, cid],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30, cwd=REPO)
    assert r.returncode == 0
    assert json.loads(bundle.runner("state", cid, check=True).stdout)["status"] == "created"
    bundle.runner("start", cid, check=True)
    for _ in range(200):
        if json.loads(bundle.runner("state", cid, check=True).stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    with open(os.path.join(bundle.rootfs, "tmp", "id.txt")) as f:
        assert f.read() == "uid=1000(user) gid=1000(user)\n"
    bundle.runner("delete", cid, check=True)


def test_tmpcopyup(bundle):
    """tmpcopyup (runc's extension, which podman uses): the tmpfs starts with a copy of the
    directory it covers: files, modes, owners, symlinks, subdirectories."""
    etc = os.path.join(bundle.rootfs, "etc")
    os.makedirs(os.path.join(etc, "sub", "deeper"))
    with open(os.path.join(etc, "sub", "deeper", "f"), "w") as f:
        f.write("deep\n")
    os.chown(os.path.join(etc, "sub", "deeper", "f"), 1000, 1000)
    os.chmod(os.path.join(etc, "sub", "deeper", "f"), 0o4755)  # after chown, which clears it
    os.symlink("../passwd", os.path.join(etc, "sub", "link"))
    os.mkfifo(os.path.join(etc, "sub", "fifo"))
    bundle.config["mounts"].append({"destination": "/etc", "type": "tmpfs", "source": "tmpfs",
                                    "options": ["nosuid", "tmpcopyup", "ro"]})
    # a read-only tmpfs is made read-only after every mount: this bind needs a mount point
    bundle.config["mounts"].append({"destination": "/etc/extra", "type": "bind",
                                    "source": os.path.join(bundle.rootfs, "bin"),
                                    "options": ["bind", "ro"]})
    r = bundle.sh("grep ' /etc ' /proc/mounts; cat /etc/sub/deeper/f; "
                  "stat -c '%a %u %g' /etc/sub/deeper/f; readlink /etc/sub/link; "
                  "head -c 5 /etc/sub/link; echo; test -p /etc/sub/fifo && echo fifo; "
                  "test -x /etc/extra/busybox && echo bound; touch /etc/new || echo ro").run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("tmpfs /etc tmpfs ro,nosuid"), lines
    assert lines[1:] == ["deep", "4755 1000 1000", "../passwd", "root:", "fifo", "bound", "ro"]
    with open(os.path.join(etc, "passwd")) as f:  # the rootfs itself is untouched
        assert f.read().startswith("root:")
    assert not os.path.exists(os.path.join(etc, "new"))


def test_tmpcopyup_only_for_tmpfs(bundle):
    bundle.config["mounts"].append({"destination": "/mnt", "type": "bind",
                                    "source": bundle.rootfs, "options": ["bind", "tmpcopyup"]})
    r = bundle.run()
    assert r.returncode == 1
    assert "tmpcopyup is only for tmpfs mounts" in r.stderr


# What the engines do, without them: a stand-in for conmon / the containerd shim, run as
# its own process because it must be a child subreaper (it reaps the container's init and
# detached exec processes once `runner create` / `runner exec --detach` have exited).
MINI_ENGINE = r"""
import ctypes, json, os, subprocess, sys, time
runner, root, bundle, cid, work = sys.argv[1:6]
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
log = os.path.join(work, "log.json")
rt = [runner, "--root", root, "--log", log, "--log-format", "json"]
out = {}
rfd, wfd = os.pipe()
def call(*args):
    # stderr to a file: the container inherits it and outlives the call (a pipe would
    # keep subprocess waiting for its EOF)
    with open(os.path.join(work, "stderr"), "w+") as err:
        r = subprocess.run(rt + list(args), stdin=subprocess.DEVNULL, stdout=wfd, stderr=err,
                           timeout=30)
        err.seek(0)
        return r.returncode, err.read()
pid_file = os.path.join(work, "init.pid")
out["create"] = call("create", "--bundle", bundle, "--pid-file", pid_file, cid)
with open(pid_file) as f:
    init = int(f.read())
out["state_created"] = json.loads(subprocess.run(rt + ["state", cid], capture_output=True).stdout)
out["start"] = call("start", cid)
proc = os.path.join(work, "process.json")
with open(proc, "w") as f:
    json.dump({"args": ["sh", "-c", "echo exec-out; exit 6"], "cwd": "/", "env": ["PATH=/bin"],
               "user": {"uid": 0, "gid": 0}}, f)
exec_pid_file = os.path.join(work, "exec.pid")
out["exec"] = call("exec", "--process", proc, "--detach", "--pid-file", exec_pid_file, cid)
with open(exec_pid_file) as f:
    out["exec_status"] = os.waitstatus_to_exitcode(os.waitpid(int(f.read()), 0)[1])
out["kill"] = call("kill", cid, "15")
out["init_status"] = os.waitstatus_to_exitcode(os.waitpid(init, 0)[1])
out["state_stopped"] = json.loads(subprocess.run(rt + ["state", cid], capture_output=True).stdout)
out["kill_again"] = call("kill", cid, "15")
out["delete"] = call("delete", cid)
os.close(wfd)
out["stdout"] = os.read(rfd, 65536).decode()
with open(log) as f:
    out["log"] = [json.loads(line) for line in f]
print(json.dumps(out))
"""


def test_engine_sequence_directly(bundle):
    """The calls recorded from the containerd shim (and conmon), made by a stand-in:
    create with --pid-file (written before create returns) and stdio as pipes, start,
    exec --process --detach --pid-file, kill, kill of a stopped container (an error in
    the JSON log that the shim matches: "container not running"), delete. The engine,
    a subreaper, reaps the init and the exec'd process itself."""
    bundle.sh("trap 'exit 0' TERM; echo init-out; while :; do sleep 0.1; done")
    bundle.write()
    cid = "t-" + uuid.uuid4().hex[:12]
    bundle.last_id = cid
    work = os.path.join(bundle.path, "engine")
    os.mkdir(work)
    runner = RUNNER_BIN if os.access(RUNNER_BIN, os.X_OK) else Runtime._command()
    r = sh([sys.executable, "-c", MINI_ENGINE, runner, bundle.root, bundle.path, cid, work],
           timeout=60, cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    for step in ("create", "start", "exec", "kill", "delete"):
        assert out[step][0] == 0, (step, out[step])
    s = out["state_created"]
    assert s["status"] == "created" and s["id"] == cid and s["pid"] > 0
    assert s["bundle"] == bundle.path and s["ociVersion"]
    assert out["exec_status"] == 6 and out["init_status"] == 0
    assert out["state_stopped"]["status"] == "stopped"
    assert out["kill_again"][0] != 0 and "container not running" in out["kill_again"][1]
    assert out["log"][-1]["level"] == "error" and "container not running" in out["log"][-1]["msg"]
    assert sorted(out["stdout"].split()) == ["exec-out", "init-out"]


def test_podman_sdnotify_container(pm, tmp_path):
    """podman --sdnotify=container (a Type=notify unit running podman): the container's
    READY=1 goes through the runner's NOTIFY_SOCKET relay to podman's proxy socket, and
    podman tells the unit's socket (its own MAINPID, then READY=1): as with runc."""
    from test_notify_socket import HostSocket, sender

    heard = {}
    runc_root = HostPaths(["/run/runc"])  # podman gives runc no --root: its default
    for name in ("runner", "runc"):
        flags = list(pm.global_flags)
        if name == "runc":
            if shutil.which("runc") is None:
                continue
            flags[flags.index("--runtime") + 1] = shutil.which("runc")
        host = HostSocket(str(tmp_path / f"{name}.sock"))
        try:
            r = sh(["podman"] + flags + [
                "run", *pm.run_flags, "--rm", "--sdnotify=container",
                "-v", f"{sender()}:/sdnotify:ro", IMAGE, "sh", "-c",
                'echo "$NOTIFY_SOCKET"; sleep 0.5; /sdnotify READY=1; echo sent=$?'],
                env=dict(pm.env, NOTIFY_SOCKET=host.address))
            assert r.returncode == 0, (name, r.stderr)
            assert r.stdout.split() == ["/run/notify/notify.sock", "sent=0"], (name, r.stdout)
            heard[name] = [m.split("=")[0] + ("=1" if m == "READY=1" else "")
                           for m in host.wait_for(2)]
        finally:
            host.close()
    runc_root.remove()
    assert heard["runner"] == ["MAINPID", "READY=1"], heard
    assert heard.get("runc", heard["runner"]) == heard["runner"]
    assert ["create", "start"] == [v for v in pm.runtime.verbs() if v in ("create", "start")]
    check_clean(pm)
