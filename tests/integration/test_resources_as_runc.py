"""linux.resources as engines send them, side by side with runc on the same bundle
(issue 17): zeros that mean "not set" (Docker writes blockIO.weight 0 and cpu.shares 0
into every config.json), `update` with the zeros `docker update` sends, and the device
rules of a container whose linux.devices are not in resources.devices. The cgroup files
of both containers are read afterwards and compared."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest
from conftest import assert_nothing_left, new_id

from libcontainer import cgroups
from test_lifecycle import detached

# what Docker 20.10 puts in the config.json of a plain `docker run` (and more zeros of
# the same kind): every one of them means "not set"
DOCKER_ZEROS = {
    "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
               "disableOOMKiller": False},
    "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimePeriod": 0, "realtimeRuntime": 0},
    "pids": {"limit": 0},
    "blockIO": {"weight": 0, "leafWeight": 0,
                "weightDevice": [{"major": 1, "minor": 3, "weight": 0, "leafWeight": 0}]},
    "network": {"classID": 0},
}
# the files runc and the runner are compared on (those this host has)
FILES = [("cpu", "cpu.shares"), ("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us"),
         ("cpu", "cpu.rt_runtime_us"), ("memory", "memory.limit_in_bytes"),
         ("memory", "memory.memsw.limit_in_bytes"), ("memory", "memory.soft_limit_in_bytes"),
         ("memory", "memory.kmem.tcp.limit_in_bytes"), ("memory", "memory.swappiness"),
         ("memory", "memory.oom_control"), ("pids", "pids.max"), ("blkio", "blkio.weight"),
         ("blkio", "blkio.leaf_weight"), ("cpuset", "cpuset.cpus")]


@pytest.fixture
def runc(bundle, tmp_path):
    exe = shutil.which("runc")
    if exe is None:
        pytest.skip("runc is not installed (the Makefile's test packages install it)")
    root = str(tmp_path / "runc-state")
    made = []

    def call(*args, input=None):
        with open(tmp_path / "runc.out", "w+") as out, open(tmp_path / "runc.err", "w+") as err:
            r = subprocess.run([exe, "--root", root, *args], stdout=out, stderr=err,
                               input=input.encode() if input else None,
                               stdin=None if input else subprocess.DEVNULL, timeout=30)
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        if args[0] == "create":
            made.append(args[-1])
        return r
    yield call
    for cid in made:
        call("delete", "--force", cid)


def v1_host():
    host = cgroups.detect()
    if host.mode == "v2":
        pytest.skip("compares v1 files (this host is cgroup v2 only; the unit tests cover v2)")
    return host


def init_pid(state: dict) -> int:
    return state["pid"]


def cgroup_files(pid: int) -> dict:
    """{(controller, file): content} of the v1 cgroups `pid` is in, for FILES the host has."""
    host = cgroups.detect()
    where = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(","):
                if c in host.v1:
                    where[c] = host.v1[c] + path
    out = {}
    for ctrl, name in FILES:
        p = os.path.join(where.get(ctrl, "/nonexistent"), name)
        if os.path.exists(p):
            with open(p) as f:
                text = f.read().strip()
            # oom_control: the setting, not the counters
            out[(ctrl, name)] = text.splitlines()[0] if name == "memory.oom_control" else text
    return out


def side_by_side(bundle, runc, resources: dict, args=("sleep", "30")) -> tuple:
    """Create the bundle with `resources` under the runner and under runc (each in a
    cgroup of its own); returns (our id, runc's id)."""
    ours, theirs = new_id(), "runc-" + uuid.uuid4().hex[:10]
    bundle.linux["resources"] = resources
    bundle.set_args(*args)
    bundle.linux["cgroupsPath"] = f"eng-cg-{ours}"
    bundle.write()
    bundle.last_id = ours
    r = detached(bundle, "create", "--bundle", bundle.path, ours)
    assert r.returncode == 0, r.stderr
    bundle.linux["cgroupsPath"] = f"eng-cg-{theirs}"
    bundle.write()
    r = runc("create", "--bundle", bundle.path, theirs)
    assert r.returncode == 0, r.stderr
    return ours, theirs


def pid_of(bundle, runc, cid: str, theirs: bool) -> int:
    r = runc("state", cid) if theirs else bundle.runner("state", cid)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["pid"]


def compare(bundle, runc, ours: str, theirs: str) -> dict:
    mine = cgroup_files(pid_of(bundle, runc, ours, False))
    runcs = cgroup_files(pid_of(bundle, runc, theirs, True))
    assert mine == runcs
    return mine


def finish(bundle, runc, ours: str, theirs: str) -> None:
    runc("delete", "--force", theirs)
    bundle.runner("delete", "--force", ours)
    assert_nothing_left(bundle, ours)


# ---- 1. zero means "not set" -----------------------------------------------------------

def test_docker_zeros_are_not_set_as_runc(bundle, runc):
    """Every Docker container's config has these zeros: the runner failed at create
    (blkio.weight: this kind of host has none) and, where it got further, gave each
    container cpu.shares 2. runc writes none of them."""
    v1_host()
    ours, theirs = side_by_side(bundle, runc, DOCKER_ZEROS)
    try:
        files = compare(bundle, runc, ours, theirs)
        assert files[("cpu", "cpu.shares")] == "1024"
        assert files[("cpu", "cpu.cfs_quota_us")] == "-1"
        assert files[("pids", "pids.max")] == "max"
    finally:
        finish(bundle, runc, ours, theirs)


@pytest.mark.parametrize("swappiness", [0, 2**64 - 1])
def test_swappiness_zero_is_a_value_and_minus_one_is_not_set(bundle, runc, swappiness):
    """swappiness 0 is written (0 is a value there); 2**64-1 (Go's uint64 of -1) is not
    set, as runc does."""
    v1_host()
    ours, theirs = side_by_side(bundle, runc, {"memory": {"swappiness": swappiness,
                                                          "limit": 0}})
    try:
        got = compare(bundle, runc, ours, theirs)[("memory", "memory.swappiness")]
        assert (got == "0") == (swappiness == 0)
    finally:
        finish(bundle, runc, ours, theirs)


# ---- 2. update as engines send it --------------------------------------------------------

M = 1 << 20


def docker_update(limit: int = 0, swap: int = 0, quota: int = 0, period: int = 0) -> dict:
    """What `docker update` (20.10) sends: zeros for every field it does not change."""
    return {"memory": {"limit": limit, "reservation": 0, "swap": swap, "kernel": 0},
            "cpu": {"shares": 0, "quota": quota, "period": period},
            "blockIO": {"weight": 0}}


def update_both(bundle, runc, ours: str, theirs: str, res: dict) -> dict:
    text = json.dumps(res)
    r = runc("update", "--resources", "-", theirs, input=text)
    assert r.returncode == 0, r.stderr
    r = bundle.runner("update", "--resources", "-", ours, input=text)
    assert r.returncode == 0, r.stderr
    return compare(bundle, runc, ours, theirs)


def started(bundle, runc, resources: dict) -> tuple:
    ours, theirs = side_by_side(bundle, runc, resources, ("sleep", "60"))
    bundle.runner("start", ours, check=True)
    r = runc("start", theirs)
    assert r.returncode == 0, r.stderr
    return ours, theirs


def test_docker_update_of_a_memory_limit_as_runc(bundle, runc):
    """Up (memsw must grow before the limit), down (the limit must shrink first) and the
    cpu limit alone (memory 0: unchanged), each compared with runc's files."""
    v1_host()
    ours, theirs = started(bundle, runc, {"memory": {"limit": 50 * M, "swap": 100 * M}})
    try:
        f = update_both(bundle, runc, ours, theirs, docker_update(300 * M, 600 * M))
        assert f[("memory", "memory.limit_in_bytes")] == str(300 * M)
        f = update_both(bundle, runc, ours, theirs, docker_update(20 * M, 40 * M))
        assert f[("memory", "memory.limit_in_bytes")] == str(20 * M)
        f = update_both(bundle, runc, ours, theirs, docker_update(quota=50000, period=100000))
        assert f[("memory", "memory.limit_in_bytes")] == str(20 * M)
        assert f[("cpu", "cpu.cfs_quota_us")] == "50000"
        assert f[("cpu", "cpu.shares")] == "1024"
        # unlimited again: memory+swap goes unlimited with it
        f = update_both(bundle, runc, ours, theirs, {"memory": {"limit": -1}})
        assert int(f[("memory", "memory.limit_in_bytes")]) > 1 << 60
    finally:
        finish(bundle, runc, ours, theirs)


def test_docker_update_of_a_container_without_limits_as_runc(bundle, runc):
    """It failed with `memory.limit_in_bytes: Device or resource busy` (limit 0 written)
    and `writing '0' to cpu.cfs_period_us: Invalid argument`."""
    v1_host()
    ours, theirs = started(bundle, runc, {})
    try:
        update_both(bundle, runc, ours, theirs, docker_update(quota=100000, period=100000))
        f = update_both(bundle, runc, ours, theirs, docker_update(100 * M, 200 * M))
        assert f[("memory", "memory.memsw.limit_in_bytes")] == str(200 * M)
    finally:
        finish(bundle, runc, ours, theirs)


def our_state(bundle, cid: str) -> dict:
    with open(os.path.join(bundle.root, cid, "state.json")) as f:
        return json.load(f)


def test_an_update_the_kernel_refuses_puts_back_what_it_wrote(bundle, runc):
    """The memory limit is written first, then the kernel refuses the cpuset: the limit
    is back to what it was, and the saved resources are the old ones."""
    v1_host()
    ours, theirs = started(bundle, runc, {"memory": {"limit": 50 * M, "swap": 100 * M}})
    try:
        before = cgroup_files(pid_of(bundle, runc, ours, False))
        saved = our_state(bundle, ours)["cgroups"]["resources"]
        res = {"memory": {"limit": 300 * M, "swap": 600 * M}, "cpu": {"cpus": "0-4095"}}
        r = bundle.runner("update", "--resources", "-", ours, input=json.dumps(res))
        assert r.returncode == 1
        assert r.stderr.startswith("runner: linux.resources.cpu.cpus: writing '0-4095' to "), \
            r.stderr
        assert cgroup_files(pid_of(bundle, runc, ours, False)) == before
        assert our_state(bundle, ours)["cgroups"]["resources"] == saved
        # a limit below what the container uses: refused, nothing changed
        bundle.runner("exec", ours, "sh", "-c", "head -c 30000000 /dev/zero > /dev/shm/x",
                      check=True)
        r = bundle.runner("update", "--resources", "-", ours,
                          input=json.dumps(docker_update(10 * M, 10 * M)))
        assert r.returncode == 1 and "current usage" in r.stderr, r.stderr
        assert cgroup_files(pid_of(bundle, runc, ours, False)) == before
    finally:
        finish(bundle, runc, ours, theirs)


def test_an_update_is_checked_whole_before_anything_is_written(bundle, runc):
    v1_host()
    ours, theirs = started(bundle, runc, {"memory": {"limit": 50 * M, "swap": 100 * M}})
    try:
        before = cgroup_files(pid_of(bundle, runc, ours, False))
        for res, field in (
                # swap below the new limit (the merged set is checked)
                ({"memory": {"limit": 200 * M}}, "linux.resources.memory.swap"),
                ({"memory": {"limit": 200 * M, "swap": 400 * M}, "pids": {"limit": "x"}},
                 "linux.resources.pids.limit")):
            r = bundle.runner("update", "--resources", "-", ours, input=json.dumps(res))
            assert r.returncode == 1 and r.stderr.startswith(f"runner: {field}:"), r.stderr
            assert cgroup_files(pid_of(bundle, runc, ours, False)) == before
        d = our_state(bundle, ours)["cgroups"]["paths"]["blkio"]
        if not os.path.exists(os.path.join(d, "blkio.weight")) and \
                not os.path.exists(os.path.join(d, "blkio.bfq.weight")):
            # a file this kernel lacks, after a limit that could be written
            res = {"memory": {"limit": 200 * M, "swap": 400 * M}, "blockIO": {"weight": 500}}
            r = bundle.runner("update", "--resources", "-", ours, input=json.dumps(res))
            assert r.returncode == 1, r.stderr
            assert r.stderr.startswith("runner: linux.resources.blockIO.weight: cannot be "
                                       "applied:"), r.stderr
            assert cgroup_files(pid_of(bundle, runc, ours, False)) == before
    finally:
        finish(bundle, runc, ours, theirs)


# ---- 7. device rules -----------------------------------------------------------------------

# opens for reading and for writing (nothing is written); /dev/kmsg opens for reading only
# with CAP_SYSLOG, which neither runtime grants by default: its write side tells
PROBE = ("for d in /dev/kmsg /dev/null /dev/zero /dev/full; do "
         "if [ -e $d ]; then r=ok; w=ok; (: < $d) 2>/dev/null || r=no; "
         "(: > $d) 2>/dev/null || w=no; echo $d r=$r w=$w; fi; done")
KMSG = {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644}
NULL = {"path": "/dev/null", "type": "c", "major": 1, "minor": 3, "fileMode": 0o666}
DENY_ALL = {"allow": False, "access": "rwm"}


def run_both(bundle, runc, resources: dict, devs: list) -> tuple:
    ours, theirs = new_id(), "runc-" + uuid.uuid4().hex[:10]
    bundle.linux["devices"] = devs
    bundle.linux["resources"] = resources
    bundle.sh(PROBE)
    bundle.linux["cgroupsPath"] = f"eng-cg-{ours}"
    r1 = bundle.run(ours)
    assert r1.returncode == 0, r1.stderr
    bundle.linux["cgroupsPath"] = f"eng-cg-{theirs}"
    bundle.write()
    r2 = runc("run", "--bundle", bundle.path, theirs)
    runc("delete", "--force", theirs)
    assert_nothing_left(bundle, ours)
    if r2.returncode != 0 and "reopening /dev/null" in r2.stderr:
        return r1.stdout.splitlines(), None  # runc's own init needs /dev/null
    assert r2.returncode == 0, r2.stderr
    return r1.stdout.splitlines(), r2.stdout.splitlines()


@pytest.mark.parametrize("resources, devs, kmsg", [
    # a device in linux.devices is made, but only resources.devices says what it may do
    ({"devices": [DENY_ALL]}, [KMSG], "r=no w=no"),
    ({}, [KMSG], "r=no w=no"),
    ({"devices": [DENY_ALL, {"allow": True, "type": "c", "major": 1, "minor": 11,
                             "access": "w"}]}, [KMSG], "r=no w=ok"),
    # listing a default device drops runc's default rule for it: denied like the rest
    ({"devices": [DENY_ALL]}, [KMSG, NULL], "r=no w=no"),
    ({"devices": [{"allow": True, "access": "rwm"}]}, [KMSG], "r=no w=ok"),
], ids=["deny-all", "no-rules", "allow-write", "listed-default", "allow-all"])
def test_linux_devices_get_only_the_access_resources_devices_give(bundle, runc, resources,
                                                                   devs, kmsg):
    v1_host()
    ours, theirs = run_both(bundle, runc, resources, devs)
    assert ours[0] == f"/dev/kmsg {kmsg}"
    if NULL in devs:
        # the same rules as runc's: /dev/null is denied too, which runc's init (it
        # reopens its stdio on /dev/null) does not survive
        assert ours[1] == "/dev/null r=no w=no"
        assert theirs is None or theirs == ours
    else:
        assert ours == theirs
