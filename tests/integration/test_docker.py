"""Docker drives the runner as it drives runc (issue 17).

One private dockerd for the module (dockerkit.py: its own paths, network and mount
namespaces, `--add-runtime runner=` the installed runner). Every test runs twice on that same
daemon, `--runtime runc` and `--runtime runner`, and checks the same things from inside the
container or from the daemon. Published ports are reached from inside dockerd's network
namespace (nsenter). The image is the busybox rootfs of `make rootfs`, `docker import`ed:
nothing is pulled."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import time
import uuid

import pytest
from conftest import WARM, WarmServer, cgroup_dirs as named_cgroup_dirs, need_root
from dockerkit import DOCKER, IMAGE, T, Dockerd, missing, pids_mentioning, sh
from test_engines import _counter_script, _frozen_then_thawed, remove_cgroups

RUNTIMES = ("runc", "runner")
# TCP ports of the -p tests (inside dockerd's own network namespace)
PORTS = {"runc": 20080, "runner": 20081}


@pytest.fixture(scope="module")
def dockerd(rootfs_template):
    need_root()
    if missing():
        pytest.skip(f"{', '.join(missing())} missing: Debian's docker.io (with containerd and "
                    "runc) is not installed; `make test` installs it")
    base = tempfile.mkdtemp(prefix="runner-docker-", dir="/tmp")
    os.chmod(base, 0o755)
    d = Dockerd(base)
    warm = None
    try:
        d.start()
        d.import_image(rootfs_template)
        if WARM:  # the shims call the runner in dockerd's network and mount namespaces
            # (Docker 20.10 gives every runtime the state root of runc)
            warm = WarmServer(os.path.join(d.exec_root, "runtime-runc", "moby"),
                              pre=("nsenter", "-t", str(d.pid), "-n", "-m")).__enter__()
        yield d
        if warm is not None:
            assert warm.served() and not warm.refused(), warm.log()
            # create too: its init cloned in the shim's own child (runner/warm_spawn.py)
            assert any(" create " in line for line in warm.served()), warm.log()
    finally:
        if warm is not None:
            warm.__exit__(None, None, None)
        d.stop()
        left = remove_cgroups(d.cgroup_name)
        shutil.rmtree(base, ignore_errors=True)
        assert not left, f"cgroups that could not be removed: {left}"


class Engine:
    """The daemon with one runtime: `run()` is `docker run --runtime RT`; names are made
    unique per runtime."""

    def __init__(self, d: Dockerd, rt: str):
        self.d, self.rt = d, rt

    def __call__(self, *args, **kw):
        return self.d(*args, **kw)

    def ok(self, *args, **kw):
        return self.d.ok(*args, **kw)

    def inspect(self, name, fmt):
        return self.d.inspect(name, fmt)

    def name(self, short: str) -> str:
        return f"{self.rt}-{short}"

    def run(self, *args, **kw) -> subprocess.CompletedProcess:
        return self.d("run", "--runtime", self.rt, *args, **kw)

    def run_d(self, short: str, *args) -> str:
        """`docker run -d --name` → the name."""
        n = self.name(short)
        self.d.ok("run", "-d", "--runtime", self.rt, "--name", n, *args)
        return n

    def exec_(self, name, *args, **kw):
        return self.d("exec", name, *args, **kw)

    def in_tty(self, *docker_args, timeout=T) -> subprocess.CompletedProcess:
        """A docker command given a terminal of its own (`script`), for -t with -i."""
        cmd = shlex.join([DOCKER] + list(docker_args))
        r = sh(["script", "-qec", cmd, "/dev/null"], timeout, stdin=subprocess.DEVNULL,
               env=self.d.env)
        # script echoes the EOF of its stdin as ^@
        r.stdout = r.stdout.replace("\r", "").replace("^@", "").replace("\0", "")
        return r

    def wait_for(self, name: str, fmt: str, want, timeout=30) -> str:
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.d("inspect", "--format", fmt, name).stdout.strip()
            if (got in want) if isinstance(want, (tuple, set)) else got == want:
                return got
            time.sleep(0.1)
        raise AssertionError(f"{name}: {fmt} is {got!r}, never {want!r}")


@pytest.fixture(params=RUNTIMES)
def dk(request, dockerd):
    e = Engine(dockerd, request.param)
    yield e
    # every test removes what it made; what a failed one left goes here
    ids = dockerd("ps", "-aq").stdout.split()
    if ids:
        dockerd("rm", "--force", *ids, timeout=120)
    assert not ids, f"containers left by the test: {ids}"
    assert dockerd.state_dirs() == [], "the runtime kept containers' state"
    for top in _parents(dockerd):
        kids = [k for k in os.listdir(top) if os.path.isdir(os.path.join(top, k))]
        assert not kids, f"container cgroups left under {top}: {kids}"


def _parents(d: Dockerd) -> list:
    return [os.path.join("/sys/fs/cgroup", c, d.cgroup_name) for c in os.listdir("/sys/fs/cgroup")
            if os.path.isdir(os.path.join("/sys/fs/cgroup", c, d.cgroup_name))]


def v1() -> bool:
    return not os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def cg(controller: str, v1_file: str, v2_file: str) -> str:
    """The path of a cgroup file as the container sees it at /sys/fs/cgroup."""
    return f"/sys/fs/cgroup/{controller}/{v1_file}" if v1() else f"/sys/fs/cgroup/{v2_file}"


# ---- which runtime ran it ----------------------------------------------------------------

def test_the_named_runtime_runs_the_container(dk):
    """--runtime runner: the runner's own state (runc keeps another format there)."""
    n = dk.run_d("which", IMAGE, "sleep", "100")
    cid = dk.inspect(n, "{{.Id}}")
    assert dk.inspect(n, "{{.HostConfig.Runtime}}") == dk.rt
    with open(os.path.join(dk.d.exec_root, "runtime-runc", "moby", cid, "state.json")) as f:
        state = json.load(f)
    if dk.rt == "runner":
        assert state["status"] == "running" and state["id"] == cid and "creator" in state
    else:
        assert "init_process_pid" in state and "status" not in state
    dk.ok("rm", "--force", n)


# ---- run: output, exit codes, -i, -t -------------------------------------------------------

def test_run_output_and_exit_codes(dk):
    r = dk.run("--rm", IMAGE, "sh", "-c", "echo out; echo err >&2; exit 3")
    assert (r.returncode, r.stdout, r.stderr) == (3, "out\n", "err\n")
    r = dk.run("--rm", IMAGE, "nosuch")
    assert r.returncode == 127, r.stderr
    assert 'exec: "nosuch": executable file not found in $PATH' in r.stderr
    r = dk.run("--rm", IMAGE, "/etc/passwd")
    assert r.returncode == 126, r.stderr
    assert "permission denied" in r.stderr
    # killed by a signal: 128+N
    n = dk.run_d("killed", IMAGE, "sleep", "100")
    dk.ok("kill", n)
    assert dk.ok("wait", n).stdout.strip() == "137"
    assert dk.inspect(n, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    dk.ok("rm", n)


def test_run_env_user_workdir_hostname_logs(dk):
    r = dk.run("--rm", "-e", "GREETING=hi there", "--user", "1000:1000", "-w", "/tmp",
               "--hostname", "inside", IMAGE, "sh", "-c", 'echo "$GREETING"; id -u; id -g; pwd; '
               "hostname")
    assert (r.returncode, r.stdout.split("\n")) == (0, ["hi there", "1000", "1000", "/tmp",
                                                       "inside", ""]), r.stderr
    n = dk.run_d("logs", IMAGE, "sh", "-c", "echo one; echo two >&2")
    assert dk.ok("wait", n).stdout.strip() == "0"
    r = dk.ok("logs", n)
    assert (r.stdout, r.stderr) == ("one\n", "two\n")
    dk.ok("rm", n)


def test_run_stdin(dk):
    r = dk.run("--rm", "-i", IMAGE, "sh", "-c", "read l; echo got:$l; cat | wc -c",
               input="abc\n0123456789")
    assert (r.returncode, r.stdout.split()) == (0, ["got:abc", "10"]), r.stderr


def test_run_tty(dk):
    r = dk.in_tty("run", "--rm", "-it", "--runtime", dk.rt, IMAGE, "sh", "-c",
                  "tty; exit 5")
    assert r.returncode == 5, r.stdout + r.stderr
    assert r.stdout.split() == ["/dev/pts/0"], r.stdout
    r = dk.in_tty("run", "--rm", "-i", "--runtime", dk.rt, IMAGE, "sh", "-c",
                  "test -t 0 && echo tty || echo notty")
    assert r.stdout.strip() == "notty"


# ---- limits, seen from inside -------------------------------------------------------------

# one value per file, "none" for a file the kernel does not have (swap accounting is off on
# some hosts: docker then drops --memory-swap with a warning)
LIMITS = ("for f in " + " ".join([
    cg("memory", "memory.limit_in_bytes", "memory.max"),
    cg("memory", "memory.memsw.limit_in_bytes", "memory.swap.max"),
    cg("cpu", "cpu.cfs_quota_us", "cpu.max"),
    cg("cpu", "cpu.shares", "cpu.weight"),
    cg("pids", "pids.max", "pids.max")]) + "; do cat $f 2>/dev/null || echo none; done")


def swap(value: str) -> str:
    """What the swap file shows for `value`, "none" where the host accounts no swap."""
    host = "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes" if v1() else None
    if host is not None and not os.path.exists(host):
        return "none"
    return value


def test_resource_limits_seen_inside(dk):
    r = dk.run("--rm", "--memory", "64m", "--memory-swap", "96m", "--cpus", "0.5",
               "--cpu-shares", "512", "--pids-limit", "50", IMAGE, "sh", "-c", LIMITS)
    assert r.returncode == 0, r.stderr
    if v1():
        assert r.stdout.split() == [str(64 << 20), swap(str(96 << 20)), "50000", "512", "50"]
    else:
        assert r.stdout.split() == [str(64 << 20), str(32 << 20), "50000", "100000", "20", "50"]
    # no limit asked: nothing written (docker sends zeros for what is not set)
    r = dk.run("--rm", IMAGE, "sh", "-c", LIMITS)
    assert r.returncode == 0, r.stderr
    unlimited = r.stdout.split()
    assert unlimited[-1] == "max"
    if v1():
        assert unlimited[2:4] == ["-1", "1024"], unlimited  # not the kernel's minimum 2
        assert int(unlimited[0]) > 1 << 50


def test_cpu_shares_out_of_range_refused(dk):
    """The kernel would clamp cpu.shares 1 to 2 without a word: runc refuses it, so must the
    runner, and the failed create leaves nothing."""
    r = dk.run("--rm", "--cpu-shares", "1", IMAGE, "true")
    assert r.returncode == 125 and "minimum allowed cpu-shares is 2" in r.stderr, r.stderr
    r = dk.run("--rm", "--cpu-shares", "2", IMAGE, "cat", cg("cpu", "cpu.shares", "cpu.weight"))
    assert r.stdout.strip() == ("2" if v1() else "1"), r.stdout + r.stderr


def test_pids_limit_holds(dk):
    r = dk.run("--rm", "--pids-limit", "5", IMAGE, "sh", "-c",
               "for i in 1 2 3 4 5 6 7 8; do sleep 5 & done 2>&1; wait")
    assert "can't fork" in r.stdout + r.stderr or "Resource temporarily" in r.stdout + r.stderr


def test_blkio_weight(dk):
    """blkio.weight exists only with BFQ (not here): docker discards the weight with a
    warning, and the container runs; where it exists, the weight is seen inside."""
    f = cg("blkio", "blkio.weight", "io.bfq.weight")
    host_has = os.path.exists(os.path.join("/sys/fs/cgroup", "blkio", "blkio.weight")) if v1() \
        else os.path.exists("/sys/fs/cgroup/io.bfq.weight")
    r = dk.run("--rm", "--blkio-weight", "300", IMAGE, "sh", "-c",
               f"cat {f} 2>/dev/null || echo none")
    assert r.returncode == 0, r.stderr
    if host_has:
        assert r.stdout.split()[-1] in ("300", "default 300"), r.stdout
    else:
        assert "Weight discarded" in r.stderr and r.stdout == "none\n", r


def test_ulimits_and_sysctls_seen_inside(dk):
    r = dk.run("--rm", "--ulimit", "nofile=512:1024", "--ulimit", "nproc=300:400",
               "--sysctl", "net.core.somaxconn=500", "--sysctl", "kernel.shm_rmid_forced=1",
               IMAGE, "sh", "-c", "ulimit -n; ulimit -Hn; grep 'Max processes' /proc/self/limits; "
               "cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shm_rmid_forced")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["512", "1024"] and lines[2].split()[2:4] == ["300", "400"], lines
    assert lines[3:] == ["500", "1"]
    # a sysctl of the host's namespace is refused by docker before any runtime runs
    r = dk.run("--rm", "--sysctl", "kernel.hostname=x", IMAGE, "true")
    assert r.returncode != 0


def test_devices(dk):
    """--device: the node is there and the device cgroup lets the process do what the
    permissions say (/dev/kmsg is not among docker's default devices: :w writes, :r does
    not); a node made with mknod (allowed) cannot be used without a rule."""
    r = dk.run("--rm", "--device", "/dev/kmsg:/dev/xkmsg:w", IMAGE, "sh", "-c",
               "ls -l /dev/xkmsg | cut -c1; echo runner-docker-test > /dev/xkmsg && echo written")
    assert r.stdout.split() == ["c", "written"], r.stdout + r.stderr
    r = dk.run("--rm", "--cap-add", "SYSLOG", "--device", "/dev/kmsg:/dev/xkmsg:r", IMAGE,
               "sh", "-c", "dd if=/dev/xkmsg bs=8192 count=1 2>/dev/null | wc -c; "
               "echo x > /dev/xkmsg && echo written")
    assert int(r.stdout.split()[0]) > 0 and "written" not in r.stdout, r.stdout + r.stderr
    assert "/dev/xkmsg: Operation not permitted" in r.stderr
    r = dk.run("--rm", IMAGE, "sh", "-c",
               "mknod /tmp/kmsg c 1 11 && echo made; echo x > /tmp/kmsg && echo written")
    assert r.stdout == "made\n" and "Operation not permitted" in r.stderr, r.stdout + r.stderr
    r = dk.run("--rm", "--device-cgroup-rule", "c 1:11 rwm", IMAGE, "sh", "-c",
               "mknod /tmp/kmsg c 1 11 && echo runner-docker-test > /tmp/kmsg && echo written")
    assert r.stdout == "written\n", r.stdout + r.stderr


# ---- update ------------------------------------------------------------------------------

def test_update(dk):
    n = dk.run_d("upd", "--memory", "64m", IMAGE, "sleep", "100")
    dk.ok("update", "--memory", "100m", "--memory-swap", "200m", n)
    dk.ok("update", "--cpus", "1.5", "--cpu-shares", "256", "--pids-limit", "77", n)
    r = dk.exec_(n, "sh", "-c", LIMITS)
    assert r.returncode == 0, r.stderr
    if v1():
        assert r.stdout.split() == [str(100 << 20), swap(str(200 << 20)), "150000", "256", "77"]
    # docker's view agrees with the cgroup's
    assert dk.inspect(n, "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}}") == \
        f"{100 << 20} 1500000000"
    # a container without any limit: docker sends zeros for all it does not change
    m = dk.run_d("upd2", IMAGE, "sleep", "100")
    dk.ok("update", "--memory", "50m", "--memory-swap", "-1", m)
    r = dk.exec_(m, "cat", cg("memory", "memory.limit_in_bytes", "memory.max"))
    assert r.stdout.strip() == str(50 << 20), r.stdout + r.stderr
    dk.ok("update", "--cpu-shares", "768", m)
    r = dk.exec_(m, "sh", "-c", LIMITS)
    if v1():
        assert r.stdout.split()[2:] == ["-1", "768", "max"], r.stdout
    # a bad value: refused, nothing changed
    r = dk("update", "--memory", "1k", m)
    assert r.returncode != 0
    assert dk.exec_(m, "cat", cg("memory", "memory.limit_in_bytes", "memory.max")).stdout \
        .strip() == str(50 << 20)
    dk.ok("rm", "--force", n, m)


# ---- exec --------------------------------------------------------------------------------

def test_exec(dk):
    n = dk.run_d("ex", IMAGE, "sh", "-c", "trap 'exit 0' TERM; while :; do sleep 0.1; done")
    r = dk.exec_(n, "sh", "-c", "echo $$; tr '\\0' ' ' < /proc/1/cmdline; exit 4")
    assert r.returncode == 4, r.stderr
    own, init = r.stdout.split("\n", 1)
    assert own != "1" and "trap" in init
    r = dk.exec_("-e", "X=1", "-w", "/tmp", "-u", "1000:1000", n, "sh", "-c",
                 "echo $X $PWD $(id -u)")
    assert (r.returncode, r.stdout) == (0, "1 /tmp 1000\n"), r.stderr
    r = dk.exec_("-i", n, "sh", "-c", "read l; echo got:$l", input="xyz\n")
    assert r.stdout == "got:xyz\n", r.stderr
    r = dk.exec_(n, "nosuch")
    assert r.returncode == 126 or r.returncode == 127, r  # docker 20.10 says 126 for runc
    assert "executable file not found" in r.stdout + r.stderr
    dk.ok("exec", "-d", n, "sh", "-c", "echo detached > /tmp/d")
    for _ in range(50):
        if dk.exec_(n, "cat", "/tmp/d").stdout == "detached\n":
            break
        time.sleep(0.1)
    else:
        raise AssertionError("exec -d did not run")
    r = dk.in_tty("exec", "-it", "-u", "1000", n, "sh", "-c", "id -u; tty; exit 6")
    lines = r.stdout.split()
    assert r.returncode == 6 and lines[0] == "1000", r.stdout + r.stderr
    assert lines[1].startswith("/dev/pts/")
    t0 = time.monotonic()
    dk.ok("stop", n)
    assert time.monotonic() - t0 < 5, "SIGTERM did not reach the container's init"
    assert dk.inspect(n, "{{.State.ExitCode}}") == "0"
    dk.ok("rm", n)


# ---- stop, kill, restart, pause ------------------------------------------------------------

def test_stop_kill_restart_pause(dk, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    n = dk.run_d("life", "-v", f"{out}:/out", IMAGE, "sh", "-c", _counter_script("/out"))
    _frozen_then_thawed(lambda: dk("pause", n), lambda: dk("unpause", n), str(out))
    dk.ok("pause", n)
    assert dk.inspect(n, "{{.State.Status}} {{.State.Paused}}") == "paused true"
    dk.ok("unpause", n)
    assert dk.inspect(n, "{{.State.Status}}") == "running"
    # kill -s: the signal reaches the init, which goes on
    dk.ok("kill", "-s", "TERM", n)
    for _ in range(50):
        if (out / "log").exists():
            break
        time.sleep(0.1)
    assert (out / "log").read_text() == "TERM\n"
    assert dk.inspect(n, "{{.State.Status}}") == "running"
    # restart: a new init (its trap ignores TERM: KILL after 1 s)
    pid = dk.inspect(n, "{{.State.Pid}}")
    dk.ok("restart", "-t", "1", n)
    assert dk.inspect(n, "{{.State.Status}}") == "running"
    assert dk.inspect(n, "{{.State.Pid}}") != pid
    # stop -t 2: TERM (seen), then KILL after 2 s
    t0 = time.monotonic()
    dk.ok("stop", "-t", "2", n)
    took = time.monotonic() - t0
    assert 2 <= took < 15, took
    assert dk.inspect(n, "{{.State.Status}} {{.State.ExitCode}}") == "exited 137"
    assert (out / "log").read_text() == "TERM\nTERM\nTERM\n"  # kill, restart, stop
    # start again after a stop
    dk.ok("start", n)
    assert dk.inspect(n, "{{.State.Status}}") == "running"
    dk.ok("kill", n)
    dk.ok("rm", n)


def test_stats_and_top(dk):
    n = dk.run_d("st", "--memory", "64m", "--pids-limit", "20", IMAGE, "sh", "-c",
                 "sleep 101 & sleep 102; exit 0")
    r = dk.ok("stats", "--no-stream", "--format", "{{.MemUsage}}|{{.PIDs}}", n)
    mem, pids = r.stdout.strip().split("|")
    assert mem.endswith("/ 64MiB") and not mem.startswith("0B"), mem
    assert pids == "3"
    r = dk.ok("top", n)
    cmds = r.stdout.splitlines()[1:]
    assert any("sleep 101" in c for c in cmds) and any("sleep 102" in c for c in cmds), r.stdout
    r = dk.ok("top", n, "-o", "pid,comm")
    assert sorted(l.split()[-1] for l in r.stdout.splitlines()[1:]) == ["sh", "sleep", "sleep"]
    dk.ok("rm", "--force", n)


# ---- filesystems ---------------------------------------------------------------------------

def test_read_only_tmpfs_and_volumes(dk, tmp_path):
    r = dk.run("--rm", "--read-only", "--tmpfs", "/data:size=1m,mode=1770", IMAGE, "sh", "-c",
               "touch /x 2>/dev/null && echo root-writable; grep ' /data ' /proc/mounts; "
               "touch /data/y && echo data-ok; grep ' / ' /proc/mounts | cut -d' ' -f4")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("tmpfs /data tmpfs rw,") and "size=1024k" in lines[0] \
        and "mode=1770" in lines[0], lines
    assert lines[1] == "data-ok" and lines[2].startswith("ro"), lines
    # a named volume outlives the container
    vol = dk.name("vol")
    r = dk.run("--rm", "-v", f"{vol}:/v", IMAGE, "sh", "-c", "echo kept > /v/f")
    assert r.returncode == 0, r.stderr
    r = dk.run("--rm", "-v", f"{vol}:/v:ro", IMAGE, "sh", "-c", "cat /v/f; touch /v/g")
    assert r.stdout == "kept\n" and "Read-only file system" in r.stderr, r
    dk.ok("volume", "rm", vol)
    # a bind mount, read-only and read-write
    (tmp_path / "in").write_text("from host\n")
    r = dk.run("--rm", "-v", f"{tmp_path}:/h", "--mount",
               f"type=bind,src={tmp_path},dst=/hro,readonly", IMAGE, "sh", "-c",
               "cat /h/in; echo back > /h/out; touch /hro/z")
    assert r.stdout == "from host\n" and "Read-only file system" in r.stderr, r
    assert (tmp_path / "out").read_text() == "back\n"
    assert not (tmp_path / "z").exists()
    # --volumes-from and /dev/shm of docker's size
    r = dk.run("--rm", "--shm-size", "8m", IMAGE, "sh", "-c", "grep ' /dev/shm ' /proc/mounts")
    assert "size=8192k" in r.stdout, r.stdout + r.stderr


def test_rshared_volume_propagates_both_ways(dk):
    """-v SRC:DST:rshared: a mount made inside the container under DST shows on the host
    (dockerd's mount namespace) under SRC, and one made there shows inside."""
    src = os.path.join(dk.d.shared, dk.rt)
    os.makedirs(os.path.join(src, "from-host"))
    os.makedirs(os.path.join(src, "from-inside"))
    n = dk.run_d("rshared", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
                 "-v", f"{src}:/s:rshared", IMAGE, "sh", "-c",
                 "mount -t tmpfs -o size=1m inside /s/from-inside && sleep 100")
    try:
        for _ in range(100):
            if os.path.join(src, "from-inside") in dk.d.mountpoints():
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the container's mount did not reach the host")
        r = sh(["nsenter", "-t", str(dk.d.pid), "-m", "mount", "-t", "tmpfs", "-o", "size=1m",
                "fromhost", os.path.join(src, "from-host")])
        assert r.returncode == 0, r.stderr
        r = dk.exec_(n, "grep", "/s/from-host", "/proc/mounts")
        assert r.stdout.startswith("fromhost /s/from-host tmpfs"), r.stdout + r.stderr
    finally:
        dk("rm", "--force", n)
        for sub in ("from-host", "from-inside"):
            sh(["nsenter", "-t", str(dk.d.pid), "-m", "umount", os.path.join(src, sub)])


def test_cp_commit_export(dk, tmp_path):
    n = dk.run_d("cp", IMAGE, "sleep", "100")
    (tmp_path / "in.txt").write_text("copied in\n")
    dk.ok("cp", str(tmp_path / "in.txt"), f"{n}:/tmp/in.txt")
    assert dk.exec_(n, "cat", "/tmp/in.txt").stdout == "copied in\n"
    dk.ok("exec", n, "sh", "-c", "echo made inside > /root/made")
    dk.ok("cp", f"{n}:/root/made", str(tmp_path / "out.txt"))
    assert (tmp_path / "out.txt").read_text() == "made inside\n"
    img = f"runner-docker-commit-{dk.rt}:latest"
    dk.ok("commit", "--change", "ENV FROM_COMMIT=yes", n, img)
    r = dk.run("--rm", img, "sh", "-c", "cat /tmp/in.txt /root/made; echo $FROM_COMMIT")
    assert r.stdout == "copied in\nmade inside\nyes\n", r.stdout + r.stderr
    dk.ok("export", "-o", str(tmp_path / "x.tar"), n)
    with tarfile.open(tmp_path / "x.tar") as t:
        names = set(t.getnames())
    assert {"tmp/in.txt", "root/made", "bin/busybox"} <= names
    dk.ok("rm", "--force", n)
    dk.ok("rmi", img)


# ---- security ------------------------------------------------------------------------------

STATUS = "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -d '\\t'"


def test_capabilities_seccomp_no_new_privileges(dk, tmp_path):
    r = dk.run("--rm", IMAGE, "sh", "-c", STATUS)
    assert r.stdout.split() == ["CapEff:00000000a80425fb", "NoNewPrivs:0", "Seccomp:2"], r.stdout
    r = dk.run("--rm", "--cap-drop", "ALL", "--cap-add", "NET_BIND_SERVICE", "--security-opt",
               "no-new-privileges", "--security-opt", "seccomp=unconfined", IMAGE, "sh", "-c",
               STATUS)
    assert r.stdout.split() == ["CapEff:0000000000000400", "NoNewPrivs:1", "Seccomp:0"], r.stdout
    r = dk.run("--rm", "--cap-add", "SYS_ADMIN", "--cap-drop", "CHOWN", IMAGE, "sh", "-c",
               "grep CapEff /proc/self/status; chown 1 /tmp && echo chowned")
    assert r.stdout.split() == ["CapEff:", "00000000a82425fa"], r.stdout + r.stderr
    # docker's default profile: unshare(CLONE_NEWUSER) refused; unconfined, allowed
    r = dk.run("--rm", IMAGE, "unshare", "-U", "true")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    r = dk.run("--rm", "--security-opt", "seccomp=unconfined", IMAGE, "unshare", "-U", "true")
    assert r.returncode == 0, r.stderr
    # a profile of our own
    prof = tmp_path / "prof.json"
    prof.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}))
    r = dk.run("--rm", "--security-opt", f"seccomp={prof}", IMAGE, "sh", "-c",
               "mkdir /tmp/d || echo refused; touch /tmp/f && echo touched")
    assert r.stdout == "refused\ntouched\n", r.stdout + r.stderr
    # masked and read-only paths of docker's spec
    r = dk.run("--rm", IMAGE, "sh", "-c", "cat /proc/kcore | wc -c; "
               "echo 1 > /proc/sys/kernel/ostype || echo ro")
    assert r.stdout.split() == ["0", "ro"], r.stdout + r.stderr


def test_privileged(dk):
    """--privileged: every capability docker asks for that the runtime holds, the host's
    devices usable; nothing of the runtime's in the container's output. runc refuses it on a
    host whose bounding set lacks one docker asks for (CAP_SYS_RESOURCE, here)."""
    script = ("grep CapEff /proc/self/status | tr -d '\\t'; test -c /dev/kmsg && echo kmsg; "
              "echo runner-docker-test > /dev/kmsg && echo written")
    r = dk.run("--rm", "--privileged", IMAGE, "sh", "-c", script)
    if dk.rt == "runc" and r.returncode != 0 and "unable to apply caps" in r.stderr:
        pytest.skip("runc cannot grant every capability here (the bounding set lacks some)")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
    # what docker asked for (its config.json), as far as this host's bounding set allows
    n = dk.run_d("priv", "--privileged", IMAGE, "sleep", "100")
    with open(os.path.join(dk.d.bundle(dk.inspect(n, "{{.Id}}")), "config.json")) as f:
        asked = json.load(f)["process"]["capabilities"]["effective"]
    from libcontainer.security import capabilities

    held = int(open("/proc/self/status").read().split("CapBnd:")[1].split()[0], 16)
    want = capabilities.mask(asked, "effective") & held
    assert r.stdout.split() == ["CapEff:%016x" % want, "kmsg", "written"], r.stdout
    assert dk.exec_(n, "sh", "-c", script).stdout == r.stdout
    dk.ok("rm", "--force", n)


# ---- networks ------------------------------------------------------------------------------

HTTPD = ("mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && "
         "exec httpd -f -p 80 -h /www")


def test_networks_and_published_ports(dk):
    net = dk.name("net")
    sub = "10.211.%d.0/24" % RUNTIMES.index(dk.rt)
    dk.ok("network", "create", "--subnet", sub, net)
    port = PORTS[dk.rt]
    try:
        srv = dk.run_d("srv", "--network", net, "--hostname", "srv", "-p",
                       f"127.0.0.1:{port}:80", IMAGE, "sh", "-c", HTTPD)
        # by name, through docker's resolver, on the user network
        r = dk.run("--rm", "--network", net, IMAGE, "wget", "-qO-", f"http://{srv}/")
        assert r.stdout == "hello-from-srv\n", r.stdout + r.stderr
        ip = dk.inspect(srv, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
        assert ip.startswith(sub.rsplit(".", 2)[0])
        # the published port, from dockerd's network namespace
        for _ in range(50):
            r = dk.d.in_netns("busybox", "wget", "-qO-", f"http://127.0.0.1:{port}/", timeout=10)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert r.stdout == "hello-from-srv\n", r.stdout + r.stderr
        assert dk.ok("port", srv, "80").stdout.strip() == f"127.0.0.1:{port}"
        # the default bridge: an address, a route out, the other container reached by IP
        r = dk.run("--rm", IMAGE, "sh", "-c", "ip -4 -o addr show eth0 | cut -d' ' -f7; "
                   "ip route | grep default | cut -d' ' -f1-3")
        assert r.returncode == 0, r.stderr
        addr, route = r.stdout.splitlines()
        assert addr.startswith("172.17.") and route == "default via 172.17.0.1", r.stdout
    finally:
        dk("rm", "--force", dk.name("srv"))
        dk("network", "rm", net)


def test_network_modes(dk):
    r = dk.run("--rm", "--network", "none", IMAGE, "sh", "-c", "ls /sys/class/net")
    assert r.stdout.split() == ["lo"], r.stdout + r.stderr
    # --network host: dockerd's namespace (lo and docker0 and the bridges)
    r = dk.run("--rm", "--network", "host", IMAGE, "ls", "/sys/class/net")
    assert "docker0" in r.stdout.split(), r.stdout + r.stderr
    # container:<other>: the same namespace
    n = dk.run_d("netmode", IMAGE, "sleep", "100")
    want = dk.exec_(n, "readlink", "/proc/self/ns/net").stdout
    r = dk.run("--rm", "--network", f"container:{n}", IMAGE, "readlink", "/proc/self/ns/net")
    assert r.stdout == want and want.startswith("net:["), r
    r = dk.run("--rm", "--pid", f"container:{n}", IMAGE, "sh", "-c", "cat /proc/1/cmdline")
    assert r.stdout.startswith("sleep"), r
    dk.ok("rm", "--force", n)


# ---- --init, restart policies, health checks -------------------------------------------------

def test_init(dk):
    r = dk.run("--rm", "--init", IMAGE, "sh", "-c", "cat /proc/1/comm; echo $$")
    comm, pid = r.stdout.split()
    assert comm == "docker-init" and pid != "1", r.stdout + r.stderr
    # the init forwards signals and reaps: stop is quick, the exit code is the child's
    n = dk.run_d("init", "--init", IMAGE, "sh", "-c", "trap 'exit 7' TERM; sleep 100 & wait")
    t0 = time.monotonic()
    dk.ok("stop", "-t", "10", n)
    assert time.monotonic() - t0 < 5
    assert dk.inspect(n, "{{.State.ExitCode}}") == "7"
    dk.ok("rm", n)


def test_restart_policies(dk):
    n = dk.run_d("rp", "--restart", "on-failure:2", IMAGE, "sh", "-c", "exit 3")
    dk.wait_for(n, "{{.RestartCount}} {{.State.Status}}", "2 exited")
    assert dk.inspect(n, "{{.State.ExitCode}}") == "3"
    dk.ok("rm", n)
    m = dk.run_d("rpa", "--restart", "always", IMAGE, "sh", "-c", "sleep 0.2; exit 0")
    dk.wait_for(m, "{{ge .RestartCount 2}}", "true")
    dk.ok("rm", "--force", m)
    # unless-stopped, stopped by hand: stays stopped
    u = dk.run_d("rpu", "--restart", "unless-stopped", IMAGE, "sleep", "100")
    dk.ok("stop", "-t", "0", u)
    time.sleep(0.5)
    assert dk.inspect(u, "{{.State.Status}}") == "exited"
    dk.ok("rm", u)


def test_healthcheck(dk):
    n = dk.run_d("hc", "--health-cmd", "test -e /tmp/ok", "--health-interval", "1s",
                 "--health-retries", "1", "--health-timeout", "5s", IMAGE, "sleep", "100")
    dk.wait_for(n, "{{.State.Health.Status}}", "unhealthy")
    dk.ok("exec", n, "touch", "/tmp/ok")
    dk.wait_for(n, "{{.State.Health.Status}}", "healthy")
    log = json.loads(dk.inspect(n, "{{json .State.Health.Log}}"))
    assert log[-1]["ExitCode"] == 0 and log[0]["ExitCode"] == 1
    dk.ok("rm", "--force", n)


# ---- OOM, --rm --------------------------------------------------------------------------------

def test_oom_killed(dk):
    with open("/proc/swaps") as f:
        swap_on = len(f.read().splitlines()) > 1
    if swap_on and swap("x") == "none":
        pytest.skip("swap is on and not accounted: --memory-swap cannot bound the container")
    n = dk.run_d("oom", "--memory", "32m", "--memory-swap", "32m", IMAGE, "sh", "-c",
                 "tail /dev/zero")
    assert dk.ok("wait", n).stdout.strip() == "137"
    assert dk.inspect(n, "{{.State.OOMKilled}} {{.State.ExitCode}}") == "true 137"
    dk.ok("rm", n)


def test_rm_leaves_nothing(dk, tmp_path):
    before = dk.d.mountpoints()
    cidfile = tmp_path / "cid"
    r = dk.run("--rm", "--cidfile", str(cidfile), "--memory", "64m", "-v", f"{tmp_path}:/h",
               "--tmpfs", "/t", IMAGE, "sh", "-c", "echo ran > /h/ran")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ran").read_text() == "ran\n"
    _nothing_of(dk.d, cidfile.read_text().strip(), before)
    # -d then rm --force of a running container
    n = dk.run_d("rmf", "--memory", "64m", IMAGE, "sleep", "100")
    cid = dk.inspect(n, "{{.Id}}")
    assert dk.d.mountpoints() - before  # its rootfs
    dk.ok("rm", "--force", n)
    _nothing_of(dk.d, cid, before)
    # rm --force of a paused container (frozen: thawed to be killed)
    n = dk.run_d("rmp", IMAGE, "sleep", "100")
    cid = dk.inspect(n, "{{.Id}}")
    dk.ok("pause", n)
    dk.ok("rm", "--force", n)
    _nothing_of(dk.d, cid, before)
    # --rm -d, stopped
    cidfile2 = tmp_path / "cid2"
    dk.ok("run", "--runtime", dk.rt, "--rm", "-d", "--cidfile", str(cidfile2), IMAGE,
          "sleep", "100")
    cid = cidfile2.read_text().strip()
    dk.ok("stop", "-t", "0", cid)
    for _ in range(100):
        if dk("inspect", cid).returncode != 0:
            break
        time.sleep(0.05)
    _nothing_of(dk.d, cid, before)


def _nothing_of(d: Dockerd, cid: str, mounts_before: set) -> None:
    assert d("inspect", cid).returncode != 0, "docker still knows the container"
    assert cid not in d.state_dirs(), "the runtime kept the state"
    assert not os.path.exists(d.bundle(cid))
    assert named_cgroup_dirs(cid) == [], "a cgroup of the container is left"
    assert d.mountpoints() <= mounts_before, d.mountpoints() - mounts_before
    assert not os.path.exists(os.path.join(d.data, "containers", cid))
    assert pids_mentioning(cid) == []


# ---- dockerd --userns-remap ------------------------------------------------------------------

@pytest.fixture(scope="module")
def remapped(rootfs_template, dockerd):
    """A second dockerd, --userns-remap to a user made here (useradd gives it a subordinate
    id range): every container in a user namespace, its image chowned into the range."""
    user = "rdremap" + uuid.uuid4().hex[:8]
    r = sh(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", user])
    assert r.returncode == 0, r.stderr
    base = tempfile.mkdtemp(prefix="runner-docker-remap-", dir="/tmp")
    os.chmod(base, 0o755)
    d = Dockerd(base, ("--userns-remap", user))
    try:
        with open("/etc/subuid") as f:
            ranges = [line.split(":") for line in f.read().split() if line.startswith(user + ":")]
        if not ranges:
            pytest.skip(f"useradd gave {user} no subordinate uid range (/etc/login.defs)")
        d.first_id = int(ranges[0][1])
        d.start()
        d.import_image(rootfs_template)
        yield d
    finally:
        d.stop()
        left = remove_cgroups(d.cgroup_name)
        shutil.rmtree(base, ignore_errors=True)
        sh(["userdel", user])
        assert not left, f"cgroups that could not be removed: {left}"


@pytest.mark.parametrize("rt", RUNTIMES)
def test_userns_remap(remapped, rt, tmp_path):
    """Every container in the daemon's user namespace mapping: run, limits, oomScoreAdj,
    a host volume as seen through the mapping, exec, the host's view of the init."""
    dk = Engine(remapped, rt)
    out = tmp_path / "out"
    first = dk.d.first_id
    r = dk.run("--rm", "--oom-score-adj", "100", "--memory", "64m", IMAGE, "sh", "-c",
               "id -u; cat /proc/self/uid_map /proc/self/oom_score_adj; touch /x && echo rw; "
               "cat " + cg("memory", "memory.limit_in_bytes", "memory.max"))
    assert r.returncode == 0, (dk.rt, r.stderr)
    assert r.stdout.split() == ["0", "0", str(first), "65536", "100", "rw", str(64 << 20)], \
        (dk.rt, r.stdout)
    # a host directory: root's, not mapped; the container sees nobody and may not write
    out.mkdir(parents=True)
    (out / "f").write_text("host\n")
    r = dk.run("--rm", "-v", f"{out}:/h", IMAGE, "sh", "-c",
               "stat -c %u /h/f; cat /h/f; touch /h/g")
    assert r.stdout.split() == ["65534", "host"] and "Permission denied" in r.stderr, \
        (dk.rt, r.stdout, r.stderr)
    n = dk.run_d("remap", IMAGE, "sleep", "100")
    try:
        r = dk.exec_(n, "sh", "-c", "id -u; cat /proc/self/uid_map")
        assert r.stdout.split() == ["0", "0", str(first), "65536"], (dk.rt, r.stdout, r.stderr)
        host_pid = int(dk.inspect(n, "{{.State.Pid}}"))
        assert os.stat(f"/proc/{host_pid}").st_uid == first
    finally:
        dk("rm", "--force", n)
    assert dk.d.state_dirs() == []
