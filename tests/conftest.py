"""Shared fixtures: a fresh busybox bundle per test, a private state root, and a check that a
container left nothing behind (state dir, mounts, processes, cgroups)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import uuid

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOTFS = os.path.join(REPO, "build", "bundle", "rootfs")
RUNNER = [sys.executable, "-m", "runner"]
# The installed command (the ELF launcher `pip install .` makes: csrc/launcher.c).
LAUNCHER = os.path.join(os.path.dirname(sys.executable), "runner")
# RUNNER_TEST_WARM=1: every `runner` of the tests is the launcher, and each test's state
# root has a warm server (runner/warm.py): the same tests, passed both ways, show the
# runner behaves the same with and without it.
WARM = os.environ.get("RUNNER_TEST_WARM") == "1"
if WARM:
    RUNNER = [LAUNCHER]

sys.path.insert(0, REPO)
from libcontainer.default_spec import default_config  # noqa: E402


def need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root")


@pytest.fixture(scope="session")
def rootfs_template():
    if not os.path.exists(os.path.join(ROOTFS, "bin", "busybox")):
        pytest.skip("no busybox rootfs: run `make rootfs`")
    return ROOTFS


class Bundle:
    """A bundle directory with its own copy of the busybox rootfs; `config` is a dict that
    `write()` (called by `run`) saves as config.json."""

    def __init__(self, path: str, root: str):
        self.path = path
        self.rootfs = os.path.join(path, "rootfs")
        self.root = root  # the runner's --root for this test
        self.config = default_config(terminal=False)
        self.config["process"]["args"] = ["true"]
        # every process of this bundle's containers carries the mark: leftovers() finds them
        self.mark = "RUNNER_TEST_MARK=" + uuid.uuid4().hex
        self.config["process"]["env"].append(self.mark)

    def write(self) -> None:
        with open(os.path.join(self.path, "config.json"), "w") as f:
            json.dump(self.config, f, indent=1)

    def set_args(self, *args) -> "Bundle":
        self.config["process"]["args"] = list(args)
        return self

    def sh(self, script: str) -> "Bundle":
        return self.set_args("sh", "-c", script)

    @property
    def linux(self) -> dict:
        return self.config["linux"]

    @property
    def process(self) -> dict:
        return self.config["process"]

    def runner(self, *args, input=None, timeout=60, check=False, env=None):
        """`runner --root <root> ARGS…`, captured."""
        cmd = RUNNER + ["--root", self.root] + list(args)
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                           cwd=REPO, env=env)
        if check and r.returncode != 0:
            raise AssertionError(f"{cmd} failed ({r.returncode}): {r.stderr}")
        return r

    def run(self, cid: str | None = None, *extra, **kw):
        """Write config.json and `runner run` it; returns the CompletedProcess."""
        self.write()
        cid = cid or new_id()
        self.last_id = cid
        return self.runner("run", "--bundle", self.path, *extra, cid, **kw)


def terminate(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, and SIGKILL after `timeout` seconds; reaped either way."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class WarmServer:
    """`runner --root ROOT --debug warm-server` for the time of a with-block; log() is what
    it said (a line per call served or refused). `pre`: what it runs under (nsenter into an
    engine's namespaces: it serves only callers in its own)."""

    def __init__(self, root: str, *extra: str, pre: tuple = ()):
        self.root, self.extra, self.pre = root, extra, list(pre)
        self.sock = os.path.join(root, ".warm.sock")

    def __enter__(self) -> "WarmServer":
        import tempfile
        import time

        os.makedirs(self.root, exist_ok=True)
        self.logfile = tempfile.NamedTemporaryFile(prefix="warm-log-", dir="/dev/shm")
        self.proc = subprocess.Popen([*self.pre, LAUNCHER, "--root", self.root, "--debug",
                                      "warm-server", *self.extra], stdin=subprocess.DEVNULL,
                                     stdout=self.logfile, stderr=self.logfile)
        for _ in range(600):
            if "serving " + self.sock in self.log() or self.proc.poll() is not None:
                break
            time.sleep(0.01)
        if self.proc.poll() is not None or not os.path.exists(self.sock):
            self.__exit__(None, None, None)
            raise AssertionError(f"the warm server did not start: {self.log()}")
        return self

    def log(self) -> str:
        if self.logfile.closed:
            return self.final
        with open(self.logfile.name) as f:
            return f.read()

    def served(self) -> list:
        return [line for line in self.log().splitlines() if " serving pid " in line]

    def refused(self) -> list:
        return [line for line in self.log().splitlines() if " refused pid " in line]

    def __exit__(self, *exc) -> None:
        terminate(self.proc)
        self.final = self.log()
        self.logfile.close()


def state_entries(root: str) -> list:
    """What a state root holds, but a warm server's socket (RUNNER_TEST_WARM=1)."""
    return [n for n in os.listdir(root) if n != ".warm.sock"]


def new_id() -> str:
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def bundle(tmp_path, rootfs_template):
    need_root()
    path = tmp_path / "bundle"
    path.mkdir()
    # tmp_path lives under /tmp, reachable from a user namespace (unlike /root)
    os.chmod(tmp_path, 0o755)
    subprocess.run(["cp", "-a", rootfs_template, str(path / "rootfs")], check=True)
    b = Bundle(str(path), str(tmp_path / "state"))
    if WARM:
        with WarmServer(b.root) as server:
            yield b
        assert " refused pid " not in server.log(), server.log()
    else:
        yield b
    left = leftovers(b.root, getattr(b, "last_id", None), str(path), b.mark)
    if left:
        subprocess.run(RUNNER + ["--root", b.root, "delete", "--force", b.last_id],
                       capture_output=True)
    assert not left, f"the container left behind: {left}"


def marked_pids(mark: str) -> list:
    pids = []
    needle = mark.encode() + b"\0"
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if needle in f.read():
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


# The host's device nodes a container gets bound in a user namespace: a runtime that chowned
# or chmodded the bind's target would change the host's own node (seen with crun here).
HOST_NODES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/random", "/dev/urandom")


def _node_owners() -> dict:
    out = {}
    for path in HOST_NODES:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out[path] = (st.st_uid, st.st_gid, st.st_mode)
    return out


HOST_NODE_OWNERS = _node_owners()


def leftovers(root: str, cid: str | None, bundle_path: str, mark: str | None = None) -> list:
    """What a finished container left behind or changed on the host; empty when nothing."""
    found = [f"host node {path} changed to uid, gid, mode {now}"
             for path, now in _node_owners().items() if HOST_NODE_OWNERS.get(path) != now]
    if cid and os.path.exists(os.path.join(root, cid)):
        found.append(f"state dir {root}/{cid}")
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if bundle_path in line.split()[4]:
                found.append(f"mount {line.split()[4]}")
    if cid:
        found += [f"cgroup {d}" for d in cgroup_dirs(cid)]
    if mark:
        found += [f"process {pid}" for pid in marked_pids(mark)]
    return found


def cgroup_dirs(cid: str) -> list:
    """Directories named for the container in every mounted hierarchy (v1 and v2): the
    id (a linux.cgroupsPath of the tests) or runner-<id> (the default path)."""
    out = []
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        for name in (cid, "runner-" + cid):
            if name in dirs:
                out.append(f"{base}/{name}")
        if base.count("/") > 7:
            dirs[:] = []
    return out


def assert_nothing_left(b: Bundle, cid: str | None = None) -> None:
    cid = cid or getattr(b, "last_id", None)
    left = leftovers(b.root, cid, b.path, b.mark)
    assert not left, f"left behind: {left}"


def with_config(base: dict, **changes) -> dict:
    c = copy.deepcopy(base)
    c.update(changes)
    return c


# ---- helpers for the run/rootfs/namespace/process tests --------------------------------

def status_fields(text: str) -> dict:
    """`Key:\tvalue` lines (as /proc/self/status prints them) → dict."""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def cap_mask(*names: str) -> str:
    """The /proc/self/status hex mask (16 digits) of capability names."""
    from libcontainer.security import capabilities

    return "%016x" % capabilities.mask(names, "test")


def mountinfo_line(text: str, mount_point: str) -> str:
    """The last /proc/self/mountinfo line for `mount_point` (the one that is visible)."""
    lines = [l for l in text.splitlines() if len(l.split()) > 4 and l.split()[4] == mount_point]
    assert lines, f"{mount_point} is not mounted:\n{text}"
    return lines[-1]


def mount_options(line: str) -> set:
    """Per-mount options plus superblock options of one mountinfo line."""
    parts = line.split()
    sep = parts.index("-")
    return set(parts[5].split(",")) | set(parts[sep + 3].split(","))


def make_reachable(path: str) -> None:
    """Let any user traverse the directories above `path` (pytest makes its base temp dir
    0700): the root of a user namespace mapped to an unprivileged host uid must reach the
    rootfs."""
    d = os.path.dirname(os.path.abspath(path))
    while d not in ("/", "/tmp"):
        os.chmod(d, os.stat(d).st_mode | 0o111)
        d = os.path.dirname(d)


# ---- what this host's cgroups offer -----------------------------------------------------
# Tests hold on every host kind the README names (cgroup v1, hybrid, v2; with or without an
# I/O scheduler that has weights, swap accounting, kernels of several ages): a test that
# needs a cgroup file asks here first, and leaves the field out (or skips, naming why).

_offers: dict = {}


def cgroup_dir_of(controller: str) -> str | None:
    """The root of the hierarchy that holds `controller` here (its v1 mount, else the
    cgroup2 mount when the v2 root offers it); None where the host has none."""
    from libcontainer import cgroups

    host = cgroups.detect()
    if controller in host.v1:
        return host.v1[controller]
    if host.unified and controller in host.v2_controllers:
        return host.unified
    return None


def cgroup_offers(controller: str, *files: str) -> bool:
    """Whether a cgroup below the root has one of `files` for `controller`. Many files
    exist only below the root (blkio.bfq.weight, cpu.cfs_burst_us) or only with the kernel
    option, scheduler or boot flag behind them (blkio.weight needs an I/O scheduler with
    weights; memory.memsw.* swap accounting): looked for in a throw-away child cgroup of the
    hierarchy's root (on v2 only when the root's subtree_control already has the
    controller: enabling it would change the host; else the answer is no)."""
    key = (controller, files)
    if key in _offers:
        return _offers[key]
    base = cgroup_dir_of(controller)
    found = False
    if base is not None and os.geteuid() == 0:
        v2 = not os.path.exists(os.path.join(base, "tasks"))
        enabled = True
        if v2:
            try:
                with open(os.path.join(base, "cgroup.subtree_control")) as f:
                    enabled = controller in f.read().split()
            except OSError:
                enabled = False
        if enabled:
            probe = os.path.join(base, "probe-" + uuid.uuid4().hex[:12])
            try:
                os.mkdir(probe)
            except OSError:
                pass
            else:
                try:
                    found = any(os.path.exists(os.path.join(probe, f)) for f in files)
                finally:
                    os.rmdir(probe)
    _offers[key] = found
    return found


def blkio_weight_supported() -> bool:
    """linux.resources.blockIO.weight can be applied here (v1 blkio.weight or
    blkio.bfq.weight, v2 io.bfq.weight or io.weight): this kind of host often has none."""
    return cgroup_offers("blkio", "blkio.weight", "blkio.bfq.weight") or \
        cgroup_offers("io", "io.bfq.weight", "io.weight")
