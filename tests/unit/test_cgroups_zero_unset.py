"""Zero means "not set" (issue 17, item 1): the fields runc and crun skip at 0 are
planned as no write on v1, v2 and hybrid hosts; the fields where 0 is a value are
written. The real v1 files are compared with runc in test_resources_as_runc.py."""
from __future__ import annotations

import pytest

from libcontainer import cgroups
from libcontainer.cgroups import unset

DOCKER_ZEROS = {
    "memory": {"limit": 0, "reservation": 0, "swap": 0, "kernel": 0, "kernelTCP": 0,
               "disableOOMKiller": False},
    "cpu": {"shares": 0, "quota": 0, "period": 0, "realtimePeriod": 0, "realtimeRuntime": 0,
            "cpus": "", "mems": ""},
    "pids": {"limit": 0},
    "blockIO": {"weight": 0, "leafWeight": 0,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 0, "leafWeight": 0}]},
    "network": {"classID": 0},
}

HOSTS = {
    "v1": lambda: _host({"memory": "/m", "cpu": "/c", "cpuset": "/s", "pids": "/p",
                         "blkio": "/b", "net_cls": "/n"}, "", set()),
    # this machine's kind: v1 controllers, cgroup2 with hugetlb alone, no net_cls
    "hybrid": lambda: _host({"memory": "/m", "cpu": "/c", "cpuset": "/s", "pids": "/p",
                             "blkio": "/b"}, "/u", {"hugetlb"}),
    "v2": lambda: _host({}, "/sys/fs/cgroup", {"memory", "cpu", "cpuset", "pids", "io",
                                               "hugetlb"}),
}


def _host(v1: dict, unified: str, ctrls: set) -> cgroups.Host:
    h = cgroups.Host(v1, unified, {})
    h._v2_ctrls = ctrls
    return h


def plan(host, res: dict) -> dict:
    """The writes Manager.plan() decides for a new container with `res`."""
    m = cgroups.Manager.plan("zero-unset-test", "/eng-cgroups-unit/c", res, host=host)
    return {g: [c[0] for _, c, _ in ws] for g, ws in m._writes.items()}


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_docker_zeros_write_nothing(kind):
    assert plan(HOSTS[kind](), DOCKER_ZEROS) == {}


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_zeros_beside_values_leave_only_the_values(kind):
    res = {"memory": {"limit": 100 << 20, "swap": 0, "reservation": 0},
           "cpu": {"shares": 0, "quota": 50000, "period": 0}, "pids": {"limit": 0},
           "blockIO": {"weight": 0}}
    got = plan(HOSTS[kind](), res)
    if kind == "v2":
        assert got == {"memory": [("memory.max", str(100 << 20))],
                       "cpu": [("cpu.max", "50000 100000")]}
    else:
        assert got == {"memory": [("memory.limit_in_bytes", str(100 << 20))],
                       "cpu": [("cpu.cfs_quota_us", "50000")]}


@pytest.mark.parametrize("kind", ["v1", "hybrid"])
def test_zero_values_are_written_on_v1(kind):
    """swappiness 0, burst 0, idle 0, a hugepage limit 0 and a throttle rate 0 are values."""
    res = {"memory": {"swappiness": 0}, "cpu": {"burst": 0, "idle": 0},
           "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 0}]}}
    assert plan(HOSTS[kind](), res) == {
        "memory": [("memory.swappiness", "0")],
        "cpu": [("cpu.cfs_burst_us", "0"), ("cpu.idle", "0")],
        "blkio": [("blkio.throttle.read_bps_device", "8:0 0")]}


def test_zero_values_are_written_on_v2():
    res = {"cpu": {"burst": 0, "idle": 0}, "hugepageLimits": [{"pageSize": "2MB", "limit": 0}]}
    assert plan(HOSTS["v2"](), res) == {
        "cpu": [("cpu.max.burst", "0"), ("cpu.idle", "0")],
        "hugetlb": [("hugetlb.2MB.max", "0"), ("hugetlb.2MB.rsvd.max", "0")]}


def test_strip_keeps_the_rest_and_does_not_change_its_input():
    res = {"memory": {"limit": 0, "swappiness": 0, "disableOOMKiller": True},
           "blockIO": {"weightDevice": [{"major": 8, "minor": 0, "weight": 0, "leafWeight": 5},
                                        {"major": 8, "minor": 16, "weight": 0}]},
           "devices": [{"allow": False, "access": "rwm"}]}
    before = repr(res)
    assert unset.strip(res) == {
        "memory": {"swappiness": 0, "disableOOMKiller": True},
        "blockIO": {"weightDevice": [{"major": 8, "minor": 0, "leafWeight": 5}]},
        "devices": [{"allow": False, "access": "rwm"}]}
    assert repr(res) == before


@pytest.mark.parametrize("kind", sorted(HOSTS))
def test_swappiness_minus_one_as_uint64_is_not_set(kind):
    """Go's uint64(-1), runc's "not set"; 101 .. 2**64-2 stay errors."""
    assert plan(HOSTS[kind](), {"memory": {"swappiness": 2**64 - 1}}) == {}
    from libcontainer.errors import ConfigError

    with pytest.raises(ConfigError, match="swappiness"):
        plan(HOSTS[kind](), {"memory": {"swappiness": 2**64 - 2}})
