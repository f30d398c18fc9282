"""The v2 code against the real cgroup2 tree (on a hybrid host: /sys/fs/cgroup/unified, which
offers no resource controllers but has the core files and takes device programs):
freeze, kill, cgroup.events, the eBPF device program and its replacement, hugetlb where
the tree allows it."""
from __future__ import annotations

import os
import subprocess
import uuid

import pytest
from conftest import need_root

from libcontainer import cgroups
from libcontainer.cgroups import devices, v2


@pytest.fixture
def v2dir():
    need_root()
    host = cgroups.detect()
    if not host.unified:
        pytest.skip("no cgroup2 mount")
    d = os.path.join(host.unified, "runner-test-" + uuid.uuid4().hex[:8])
    os.mkdir(d)
    procs: list = []
    yield d, procs
    v2.kill_all(d)
    for p in procs:
        p.kill()
        p.wait()
    os.rmdir(d)


def spawn_in(d: str, procs: list, script: str) -> subprocess.Popen:
    """A shell that waits for a line on stdin before running `script`, moved into `d`."""
    p = subprocess.Popen(["sh", "-c", "read go; " + script], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs.append(p)
    with open(os.path.join(d, "cgroup.procs"), "w") as f:
        f.write(str(p.pid))
    return p


def test_freeze_and_thaw_wait_for_the_kernel(v2dir):
    d, procs = v2dir
    p = spawn_in(d, procs, "while :; do :; done")
    p.stdin.write("go\n")
    p.stdin.flush()
    v2.freeze(d, True)
    assert v2.frozen(d) and v2.events(d)["frozen"] == 1
    with open(f"/proc/{p.pid}/stat") as f:
        assert f.read().split(") ")[1][0] in "SD"  # not running while frozen
    v2.freeze(d, False)
    assert not v2.frozen(d)


def test_kill_empties_the_cgroup(v2dir):
    d, procs = v2dir
    p = spawn_in(d, procs, "sleep 100 & sleep 100")
    p.stdin.write("go\n")
    p.stdin.flush()
    assert v2.events(d)["populated"] == 1
    assert v2.kill_all(d)
    assert v2.events(d)["populated"] == 0 and v2.procs(d) == []
    assert p.wait() == -9


def test_device_program_denies_allows_and_replaces(v2dir):
    d, procs = v2dir
    # deny all but the defaults: /dev/loop0 (b 7:0) is refused, /dev/null works
    devices.install(d, devices.rules({}))
    p = spawn_in(d, procs, "(exec 3</dev/loop0) && echo loop; echo x > /dev/null && echo null")
    out, err = p.communicate("go\n")
    assert out.split() == ["null"] and "Operation not permitted" in err
    # new rules replace the old program (one attached), and take effect
    devices.install(d, devices.rules({"devices": [
        {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"}]}))
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(devices.attached(fd)) == 1
    finally:
        os.close(fd)
    p = spawn_in(d, procs, "(exec 3</dev/loop0) && echo loop; (exec 3>/dev/loop0) && echo w")
    out, err = p.communicate("go\n")
    assert out.split() == ["loop"]  # read allowed, write not


def test_manager_on_this_host_uses_v2_for_procs_and_kill():
    need_root()
    host = cgroups.detect()
    if not host.unified:
        pytest.skip("no cgroup2 mount")
    parent = "runner-test-" + uuid.uuid4().hex[:8]
    m = cgroups.Manager.create("m", f"{parent}/m", {"pids": {"limit": 5}})
    p = subprocess.Popen(["sleep", "100"])
    try:
        m.join(p.pid)
        assert p.pid in v2.procs(m.unified)
        m.destroy()  # cgroup.kill on the v2 directory
        assert p.wait() == -9
    finally:
        p.kill()
    assert not os.path.exists(os.path.join(host.unified, parent))


def test_hugetlb_limit_on_v2_where_delegated():
    """Only where the host's v2 root already delegates hugetlb: enabling it there would be a
    write outside this test's cgroups."""
    need_root()
    host = cgroups.detect()
    if host.mode == "v1" or "hugetlb" in host.v1:
        pytest.skip("hugetlb is not on v2 here")
    with open(os.path.join(host.unified, "cgroup.subtree_control")) as f:
        if "hugetlb" not in f.read().split():
            pytest.skip("the v2 root does not delegate hugetlb (cgroup.subtree_control)")
    parent = "runner-test-" + uuid.uuid4().hex[:8]
    m = cgroups.Manager.create("h", f"{parent}/h",
                               {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]})
    try:
        with open(os.path.join(m.unified, "hugetlb.2MB.max")) as f:
            assert f.read().strip() == str(4 << 20)
        assert m.stats()["hugetlb"]["2MB"]["usage"] == 0
    finally:
        m.destroy()
