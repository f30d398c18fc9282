"""`runner daemon` killed at any instant leaves nothing that its next start does not adopt or
clean (issue 20). Two sweeps, each followed by a restart and an audit:

  - crash points: the daemon runs with RUNNER_CRASH_AT=K and SIGKILLs itself at the K-th
    crash_point() it passes (the engine's and libcontainer's own, see libcontainer/state.py);
    each operation (create, start, stop, rm -f, run --rm, volume and network create and
    remove, a run on a user network) is swept over K = 1, 2, ... until it completes;
  - delays: an operation with no crash points of the engine's (load, pull from a registry on
    loopback, build) is SIGKILLed after a sweep of delays.

The audit, with the daemon back: every container it lists is inspectable and removable and
nothing exists that it does not list — no mount, cgroup, monitor, runtime state, link in its
network namespace, half-written record, store temp, or blob whose digest is wrong; then,
everything removed, nothing is left at all."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time

import pytest

from daemonkit import DOCKER, IMAGE, RunnerDaemon, busybox_archive, loaded_daemon

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="no /usr/bin/docker")]
pytest.importorskip("aiohttp")
pytest.importorskip("docker")

IMAGE2 = "runner-test/busybox2:latest"
ID = re.compile(r"^[0-9a-f]{64}$")


class CrashDaemon(RunnerDaemon):
    """runner daemon (in a network namespace of its own), started with a crash point or
    without."""

    def links(self) -> set:
        out = subprocess.run([*self._ns(), "ip", "-j", "link"], capture_output=True, text=True,
                             check=True).stdout
        return {i["ifname"] for i in json.loads(out or "[]")}

    def start(self, extra=()) -> "CrashDaemon":
        self._api = None  # no connection kept across daemons
        try:
            return super().start(extra)
        except RuntimeError as e:  # say why: the end of its log
            with open(os.path.join(self.base, "daemon.log"), errors="replace") as f:
                raise RuntimeError(f"{e}:\n{f.read()[-3000:]}") from None

    def start_crashing(self, k: int) -> "CrashDaemon":
        os.environ["RUNNER_CRASH_AT"] = str(k)
        try:
            return self.start()
        finally:
            del os.environ["RUNNER_CRASH_AT"]

    def api(self):
        import docker

        if getattr(self, "_api", None) is None:
            self._api = docker.APIClient(base_url=self.host, version="1.41", timeout=60)
        return self._api

    def died(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            self.proc = None
            return True
        return False


def _daemon(tmp_path_factory, netns: bool):
    archive = busybox_archive(str(tmp_path_factory.mktemp("img") / "bb.tar"))
    base = f"/tmp/daemon-crash-{os.getpid()}-{'n' if netns else 'h'}"
    with loaded_daemon(CrashDaemon, base, archive, netns) as d:
        d.seen = set()  # every container id the data root ever held (for the cgroup audit)
        yield d


@pytest.fixture(scope="module")
def cd(tmp_path_factory):
    yield from _daemon(tmp_path_factory, True)


@pytest.fixture(scope="module")
def cd_host(tmp_path_factory):
    """In the host's network namespace, to reach a registry on its loopback (containers
    there use --network none)."""
    yield from _daemon(tmp_path_factory, False)


# ---- the audit -----------------------------------------------------------------------------

def _note_ids(d) -> None:
    for sub in ("containers", "runtime"):
        try:
            d.seen.update(n for n in os.listdir(os.path.join(d.data, sub)) if ID.match(n))
        except FileNotFoundError:
            pass


def _mounts_under(path: str) -> list:
    with open("/proc/self/mountinfo") as f:
        points = [ln.split()[4] for ln in f]
    return [p for p in points if p.startswith(path + "/")]


def _cgroups_of(cid: str) -> list:
    out = []
    for ctl in os.listdir("/sys/fs/cgroup"):
        p = os.path.join("/sys/fs/cgroup", ctl, "runner-daemon", cid)
        if os.path.isdir(p):
            out.append(p)
    return out


def _monitors_under(data: str) -> dict:
    """runner-monitor processes of this data root: container dir → pid."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"runner-monitor") and len(argv) > 1 and \
                argv[1].decode().startswith(data + "/"):
            out[argv[1].decode()] = int(p)
    return out


def _files(root: str) -> list:
    out = []
    for dirpath, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if x != "rootfs"]  # a container's (mounted) root
        out += [os.path.join(dirpath, f) for f in files]
    return out


def audit(d, what: str) -> None:
    """With the daemon up: what it lists is whole, and nothing exists that it does not list."""
    data = d.data
    _note_ids(d)
    api = d.api()  # docker-py: the audit's many questions without a CLI process each
    ids = [c["Id"] for c in api.containers(all=True)]
    states = {cid: api.inspect_container(cid)["State"]["Status"] for cid in ids}
    live = {c for c, s in states.items() if s in ("running", "paused")}
    # containers: a directory each, nothing else once the background removals are done
    for _ in range(100):
        names = set(os.listdir(os.path.join(data, "containers")))
        if names == set(ids):
            break
        time.sleep(0.05)
    assert names == set(ids), f"{what}: container dirs {names} vs listed {ids}"
    for cid in ids:
        assert os.path.exists(os.path.join(data, "containers", cid, "config.v2.json")), what
    runtime = {n for n in os.listdir(os.path.join(data, "runtime")) if not n.startswith(".")}
    assert runtime <= live and not [n for n in os.listdir(os.path.join(data, "runtime"))
                                    if n.startswith((".creating", ".deleted"))], \
        f"{what}: runtime state {runtime}, live {live}"
    mounts = _mounts_under(d.base)
    allowed = {os.path.join(data, "containers", c, "bundle", "rootfs") for c in ids}
    assert set(mounts) <= allowed, f"{what}: mounts {set(mounts) - allowed}"
    for cid in d.seen:
        if cid not in live:
            assert not _cgroups_of(cid), f"{what}: cgroups of {cid[:12]} ({states.get(cid, 'gone')})"
    mons = _monitors_under(data)
    assert {os.path.basename(p) for p in mons} == live, f"{what}: monitors {mons}, live {live}"
    # records and the store: no temp file, nothing half-written
    tmp = [f for f in _files(data) if re.search(r"\.tmp\d*$", f)]
    assert not tmp, f"{what}: temp files {tmp}"
    store = os.path.join(data, "image")
    assert not os.listdir(os.path.join(store, "tmp")), f"{what}: store tmp/ not reaped"
    json.loads(open(os.path.join(store, "images.json")).read())
    blobs = os.path.join(store, "blobs", "sha256")
    for n in os.listdir(blobs):
        with open(os.path.join(blobs, n), "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == n, f"{what}: blob {n[:12]} is damaged"
    records = os.listdir(os.path.join(store, "mounts"))
    assert len(records) == len(ids) == len(os.listdir(os.path.join(store, "containers"))), \
        f"{what}: store bundles {records} for containers {ids}"
    for img in api.images(quiet=True):
        api.inspect_image(img)
    # volumes and networks: each listed one is whole, nothing else exists
    vols = {v["Name"] for v in api.volumes()["Volumes"] or []}
    vdirs = set(os.listdir(os.path.join(data, "volumes")))
    assert vdirs == vols, f"{what}: volume dirs {vdirs} vs listed {vols}"
    nets = {n["Name"] for n in api.networks()}
    conf = os.path.join(data, "network", "conf")
    confs = {n[:-len(".conflist")] for n in os.listdir(conf) if n.endswith(".conflist")}
    assert confs == nets - {"host", "none"}, f"{what}: network configs {confs} vs listed {nets}"


def clean(d, what: str) -> None:
    """Remove everything the daemon lists; then nothing may be left."""
    api = d.api()
    for c in api.containers(all=True):
        api.remove_container(c["Id"], force=True)
    for n in api.networks():
        if n["Name"] not in ("bridge", "host", "none"):
            api.remove_network(n["Id"])
    for v in api.volumes()["Volumes"] or []:
        api.remove_volume(v["Name"])
    keep = api.inspect_image(IMAGE)["Id"]
    for i in api.images(quiet=True):
        if i != keep:
            api.remove_image(i, force=True)
    audit(d, what + " (all removed)")
    if d.netns:
        assert d.links() <= {"lo", "runner0"}, f"{what}: links {d.links()}"


# ---- the crash-point sweep ----------------------------------------------------------------

def _ctr(d, *args):
    return d.docker(*args, check=True).stdout.strip()


# name → (setup with a sound daemon, the operation the crashing daemon serves)
OPS = {
    "create": (None, lambda d: d.docker("create", "--name", "c1", IMAGE, "true")),
    "start": (lambda d: _ctr(d, "create", "--name", "c1", IMAGE, "sleep", "30"),
              lambda d: d.docker("start", "c1")),
    "stop": (lambda d: _ctr(d, "run", "-d", "--name", "c1", IMAGE, "sleep", "30"),
             lambda d: d.docker("stop", "-t", "1", "c1")),
    "rm -f": (lambda d: _ctr(d, "run", "-d", "--name", "c1", IMAGE, "sleep", "30"),
              lambda d: d.docker("rm", "-f", "c1")),
    "run --rm": (None, lambda d: d.docker("run", "--rm", IMAGE, "true")),
    "volume create": (None, lambda d: d.docker("volume", "create", "v1")),
    "volume rm": (lambda d: _ctr(d, "volume", "create", "v1"),
                  lambda d: d.docker("volume", "rm", "v1")),
    "network create": (None, lambda d: d.docker("network", "create", "n1")),
    "network rm": (lambda d: _ctr(d, "network", "create", "n1"),
                   lambda d: d.docker("network", "rm", "n1")),
    "run on a network": (lambda d: _ctr(d, "network", "create", "n1"),
                         lambda d: d.docker("run", "-d", "--name", "c1", "--network", "n1",
                                            "-v", "v2:/data", IMAGE, "sleep", "30")),
}


def _points() -> list:
    """K = 1, 2, ... 6, then every fourth (a removal passes ~30, most of them the runtime's
    state files one by one: the suite's time); RUNNER_CRASH_SWEEP=full: every one."""
    if os.environ.get("RUNNER_CRASH_SWEEP") == "full":
        return list(range(1, 80))
    return list(range(1, 7)) + list(range(8, 80, 4))


@pytest.mark.parametrize("op", list(OPS))
def test_killed_at_each_crash_point(cd, op):
    setup, run = OPS[op]
    crashed_at = []
    for k in _points():
        if setup:
            setup(cd)
        cd.stop()  # containers live on (live-restore); the crashing daemon adopts them
        cd.start_crashing(k)
        run(cd)
        time.sleep(0.2)  # a crash point after the answer (an exit's) counts too
        if not cd.died():  # K is past the operation's points: a sound daemon audits
            cd.stop()
            cd.start()
            audit(cd, f"{op}: no crash")
            clean(cd, f"{op}: no crash")
            break
        crashed_at.append(k)
        _note_ids(cd)
        cd.start()
        audit(cd, f"{op}: killed at crash point {k}")
        clean(cd, f"{op}: killed at crash point {k}")
    else:
        pytest.fail(f"{op}: still crashing at K={k}")
    print(f"{op}: killed at crash points {crashed_at}")
    assert crashed_at, f"{op}: passes no crash point (the sweep tested nothing)"


# ---- the delay sweep ------------------------------------------------------------------------

DELAYS = (0.0, 0.1, 0.3, 0.8)


def _kill_during(d, args: list, delay: float) -> None:
    env = dict(os.environ, DOCKER_HOST=d.host, DOCKER_CONFIG=os.path.join(d.base, "cli"))
    p = subprocess.Popen([DOCKER, *args], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    time.sleep(delay)
    d.kill()
    p.wait(60)
    _note_ids(d)
    d.start()


def test_killed_during_load(cd, tmp_path):
    other = busybox_archive(str(tmp_path / "bb2.tar"), tag=IMAGE2, extra={"/marker": b"2"})
    for delay in DELAYS:
        _kill_during(cd, ["load", "-i", other], delay)
        audit(cd, f"load killed after {delay}s")
        if IMAGE2 in cd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout:
            assert cd.docker("run", "--rm", "--network", "none", IMAGE2, "cat", "/marker",
                             check=True).stdout == "2"
        clean(cd, f"load killed after {delay}s")


def test_killed_during_build(cd, tmp_path):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo built > /built\nCOPY . /ctx\n")
    for delay in DELAYS:
        _kill_during(cd, ["build", "-t", "crash-built:1", str(ctx)], delay)
        audit(cd, f"build killed after {delay}s")
        if "crash-built" in cd.docker("images", "--format", "{{.Repository}}").stdout:
            assert cd.docker("run", "--rm", "--network", "none", "crash-built:1", "cat",
                             "/built", check=True).stdout == "built\n"
        clean(cd, f"build killed after {delay}s")


@pytest.mark.skipif(not os.path.exists("/usr/bin/docker-registry"), reason="no docker-registry")
def test_killed_during_pull(cd_host, tmp_path):
    import imagekit

    d = cd_host
    reg = imagekit.Registry(str(tmp_path / "reg"), port=24431)
    try:
        other = busybox_archive(str(tmp_path / "bb2.tar"), tag=IMAGE2, extra={"/marker": b"2"})
        reg.push(f"docker-archive:{other}", "bb:2")
        for delay in DELAYS:
            _kill_during(d, ["pull", f"{reg.addr}/bb:2"], delay)
            audit(d, f"pull killed after {delay}s")
            if "bb" in d.docker("images", "--format", "{{.Repository}}").stdout:
                assert d.docker("run", "--rm", "--network", "none", f"{reg.addr}/bb:2", "cat",
                                "/marker", check=True).stdout == "2"
            clean(d, f"pull killed after {delay}s")
    finally:
        reg.stop()
