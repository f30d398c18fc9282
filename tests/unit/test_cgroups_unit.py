"""cgroups without root: validation, what each resource writes on v1 and v2 (the files'
documented formats), host detection from mountinfo, the device rules and their eBPF
program, stats parsed from fake v1/v2 trees."""
from __future__ import annotations

import os

import pytest

from libcontainer import cgroups
from libcontainer.cgroups import devices, stats, v1, v2, validate
from libcontainer.errors import ConfigError


def files(writes: dict) -> dict:
    """{group: [(file, value), …]} with the first choice of each write."""
    return {g: [w[1][0] for w in ws] for g, ws in writes.items()}


@pytest.mark.parametrize("res, field", [
    ({"memory": {"limit": "1"}}, "linux.resources.memory.limit"),
    ({"memory": {"limit": -2}}, "linux.resources.memory.limit"),
    ({"memory": {"swappiness": 101}}, "linux.resources.memory.swappiness"),
    ({"memory": {"limit": 100, "swap": 50}}, "linux.resources.memory.swap"),
    ({"cpu": {"quota": 1000, "burst": 2000}}, "linux.resources.cpu.burst"),
    ({"cpu": {"cpus": "1-0"}}, "linux.resources.cpu.cpus"),
    ({"cpu": {"shares": -1}}, "linux.resources.cpu.shares"),
    ({"pids": {}}, "linux.resources.pids.limit"),
    ({"blockIO": {"weight": 70000}}, "linux.resources.blockIO.weight"),
    ({"blockIO": {"weightDevice": [{"major": 8, "minor": 0}]}},
     "linux.resources.blockIO.weightDevice[0]"),
    ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}},
     "linux.resources.blockIO.throttleReadBpsDevice[0].rate"),
    ({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]},
     "linux.resources.hugepageLimits[0].pageSize"),
    ({"network": {"priorities": [{"name": "a/b", "priority": 1}]}},
     "linux.resources.network.priorities[0].name"),
    ({"rdma": {"mlx": {}}}, "linux.resources.rdma.mlx"),
    ({"unified": {"../x": "1"}}, "linux.resources.unified.../x"),
    ({"unified": {"cgroup.procs": "1"}}, "linux.resources.unified.cgroup.procs"),
    ({"unified": {"memory.high": 5}}, "linux.resources.unified.memory.high"),
    ({"devices": [{"access": "r"}]}, "linux.resources.devices[0].allow"),
    ({"devices": [{"allow": True, "type": "x"}]}, "linux.resources.devices[0].type"),
])
def test_validation_names_the_field(res, field):
    with pytest.raises(ConfigError) as e:
        validate.resources(res)
    assert e.value.field == field


def test_v1_writes_use_the_v1_files():
    res = {"memory": {"limit": 100, "swap": 200, "reservation": 50, "kernelTCP": 10,
                      "swappiness": 5, "disableOOMKiller": True},
           "cpu": {"shares": 512, "quota": -1, "period": 1000, "burst": 10,
                   "realtimeRuntime": 5, "realtimePeriod": 10, "idle": 1, "cpus": "0-1",
                   "mems": "0"},
           "pids": {"limit": -1},
           "blockIO": {"weight": 100, "leafWeight": 50,
                       "weightDevice": [{"major": 8, "minor": 0, "weight": 300, "leafWeight": 20}],
                       "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                       "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 30}]},
           "hugepageLimits": [{"pageSize": "2MB", "limit": 4096}],
           "network": {"classID": 0x100001, "priorities": [{"name": "eth0", "priority": 5}]},
           "rdma": {"mlx5_1": {"hcaHandles": 3}}}
    f = files(v1.writes(validate.resources(res)))
    assert f["memory"] == [("memory.limit_in_bytes", "100"), ("memory.memsw.limit_in_bytes", "200"),
                           ("memory.soft_limit_in_bytes", "50"),
                           ("memory.kmem.tcp.limit_in_bytes", "10"), ("memory.swappiness", "5"),
                           ("memory.oom_control", "1")]
    assert f["cpu"] == [("cpu.shares", "512"), ("cpu.cfs_period_us", "1000"),
                        ("cpu.cfs_quota_us", "-1"), ("cpu.cfs_burst_us", "10"),
                        ("cpu.rt_period_us", "10"), ("cpu.rt_runtime_us", "5"), ("cpu.idle", "1")]
    assert f["cpuset"] == [("cpuset.cpus", "0-1"), ("cpuset.mems", "0")]
    assert f["pids"] == [("pids.max", "max")]
    assert f["blkio"] == [("blkio.weight", "100"), ("blkio.leaf_weight", "50"),
                          ("blkio.weight_device", "8:0 300"), ("blkio.leaf_weight_device", "8:0 20"),
                          ("blkio.throttle.read_bps_device", "8:0 600"),
                          ("blkio.throttle.write_iops_device", "8:16 30")]
    assert f["hugetlb"] == [("hugetlb.2MB.limit_in_bytes", "4096"),
                            ("hugetlb.2MB.rsvd.limit_in_bytes", "4096")]
    assert f["net_cls"] == [("net_cls.classid", str(0x100001))]
    assert f["net_prio"] == [("net_prio.ifpriomap", "eth0 5")]
    assert f["rdma"] == [("rdma.max", "mlx5_1 hca_handle=3 hca_object=max")]


def test_v2_writes_convert_to_the_v2_files():
    res = {"memory": {"limit": 100, "swap": 300, "reservation": 50},
           "cpu": {"shares": 1024, "quota": 50000, "burst": 10, "idle": 1, "cpus": "1"},
           "pids": {"limit": 7},
           "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                       "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 600}],
                       "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 30}]},
           "hugepageLimits": [{"pageSize": "1GB", "limit": 1 << 30}],
           "rdma": {"mlx": {"hcaObjects": 9}}}
    w = v2.writes(validate.resources(res))
    f = files(w)
    assert f["memory"] == [("memory.max", "100"), ("memory.swap.max", "200"), ("memory.low", "50")]
    assert f["cpu"] == [("cpu.weight", "39"), ("cpu.max", "50000 100000"),
                        ("cpu.max.burst", "10"), ("cpu.idle", "1")]
    assert f["cpuset"] == [("cpuset.cpus", "1")]
    assert f["pids"] == [("pids.max", "7")]
    assert [c for _, c, _ in w["blkio"]][0] == (("io.bfq.weight", "500"), ("io.weight", "default 4950"))
    assert f["blkio"][1:] == [("io.bfq.weight", "8:0 10"), ("io.max", "8:0 rbps=600"),
                              ("io.max", "8:16 wiops=30")]
    assert f["hugetlb"] == [("hugetlb.1GB.max", str(1 << 30)), ("hugetlb.1GB.rsvd.max", str(1 << 30))]
    assert f["rdma"] == [("rdma.max", "mlx hca_handle=max hca_object=9")]


def test_v2_conversions():
    assert v2.shares_to_weight(2) == 1 and v2.shares_to_weight(262144) == 10000
    assert v2.shares_to_weight(1024) == 39
    assert v2.blkio_to_io_weight(10) == 1 and v2.blkio_to_io_weight(1000) == 10000
    assert v2.swap_value(None, -1) == -1  # unlimited memory, swap unset: unlimited swap
    assert v2.swap_value(-1, 100) == -1 and v2.swap_value(None, 100) is None
    with pytest.raises(ConfigError, match="memory.swap"):
        v2.swap_value(200, None)
    # an update of the period alone keeps the quota already set
    full = {"cpu": {"quota": 20000, "period": 100000}}
    assert files(v2.writes({"cpu": {"period": 50000}}, full))["cpu"] == [("cpu.max", "20000 50000")]


@pytest.mark.parametrize("res, field", [
    ({"memory": {"swappiness": 1}}, "linux.resources.memory.swappiness"),
    ({"memory": {"disableOOMKiller": True}}, "linux.resources.memory.disableOOMKiller"),
    ({"memory": {"kernelTCP": 100}}, "linux.resources.memory.kernelTCP"),
    ({"cpu": {"realtimeRuntime": 100}}, "linux.resources.cpu.realtimeRuntime"),
    ({"blockIO": {"leafWeight": 100}}, "linux.resources.blockIO.leafWeight"),
    ({"network": {"classID": 1}}, "linux.resources.network"),
])
def test_v2_refuses_what_it_cannot_do(res, field):
    with pytest.raises(ConfigError) as e:
        v2.writes(res)
    assert e.value.field == field and "cgroup v2" in str(e.value)


@pytest.mark.parametrize("v1, message", [
    ({"memory": "/sys/fs/cgroup/memory"}, "the net_cls controller is not mounted on this host "
                                          "(and cgroup v2 has no equivalent)"),
    ({}, "not supported on cgroup v2"),
])
def test_network_without_net_cls_says_why_on_hybrid_and_v2_hosts(v1, message):
    """linux.resources.network has no v2 controller: a hybrid host without a net_cls
    hierarchy lacks the v1 mount (it used to say "not supported on cgroup v2"); a pure v2
    host cannot do it at all."""
    host = cgroups.Host(v1, "/sys/fs/cgroup/unified" if v1 else "/sys/fs/cgroup", {})
    host._v2_ctrls = {"hugetlb"} if v1 else {"memory", "pids"}
    res = {"network": {"classID": 5}}
    with pytest.raises(ConfigError) as e:
        cgroups._plan_writes(host, res, cgroups._assign(host, res))
    assert e.value.field.startswith("linux.resources.network") and message in str(e.value)


def _host(tmp_path, mountinfo: str, cgroup: str) -> cgroups.Host:
    (tmp_path / "mi").write_text(mountinfo)
    (tmp_path / "cg").write_text(cgroup)
    return cgroups.detect(str(tmp_path / "mi"), str(tmp_path / "cg"))


def test_detect_v2(tmp_path):
    h = _host(tmp_path, "30 20 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n",
              "0::/user.slice/session-1.scope\n")
    assert h.mode == "v2" and h.unified == "/sys/fs/cgroup" and h.v1 == {}
    # relative paths go below the parent of our cgroup (ours has processes)
    assert cgroups._inner("", "c1", h.own[""], True) == "/user.slice/runner-c1"
    assert cgroups._inner("/abs/c1", "c1", h.own[""], True) == "/abs/c1"


def test_detect_v1_and_hybrid(tmp_path):
    mi = ("35 25 0:30 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
          "36 25 0:31 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
          "37 25 0:32 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n")
    cg = "3:memory:/a/b\n2:cpu,cpuacct:/\n1:name=systemd:/x\n0::/\n"
    h = _host(tmp_path, mi, cg)
    assert h.mode == "v1"
    assert h.v1 == {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                    "memory": "/sys/fs/cgroup/memory", "name=systemd": "/sys/fs/cgroup/systemd"}
    assert cgroups._inner("", "c1", h.own["memory"], False) == "/a/b/runner-c1"
    h = _host(tmp_path, mi + "38 25 0:33 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n", cg)
    assert h.mode == "hybrid" and h.unified == "/sys/fs/cgroup/unified"


def test_detect_a_mounted_subtree(tmp_path):
    # inside a container: the hierarchy's /docker/x is mounted at /sys/fs/cgroup
    h = _host(tmp_path, "30 20 0:26 /docker/x /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
              "0::/docker/x/sub\n")
    assert h.own[""] == "/sub"


def test_cgroups_path_checks():
    for bad in ("a:b:c", "/", "a/../../b"):
        with pytest.raises(ConfigError, match="linux.cgroupsPath"):
            cgroups.check_path(bad)
    cgroups.check_path("/a/b")
    cgroups.check_path("a/b")


def test_device_rules_and_v1_lines():
    rules = devices.rules({"devices": [{"allow": False, "access": "rwm"},
                                       {"allow": True, "type": "c", "major": 10, "access": "rw"}]})
    assert [r.v1() for r in rules[:3]] == ["a", "a", "c 10:* rw"]
    assert not rules[0].allow and not rules[1].allow and rules[2].allow
    assert rules[-1].v1() == "c 10:200 rwm"


def test_emulator_keeps_what_the_v1_kernel_keeps():
    e = devices.Emulator()
    for r in [devices.Rule(True), devices.Rule(False, "c", 1, 3, "w"), devices.Rule(True, "c", 1, 3, "w")]:
        e.apply(r)
    assert e.default_allow and e.exceptions == {}
    for r in [devices.Rule(False), devices.Rule(True, "c", 1, 3, "rw"), devices.Rule(False, "c", 1, 3, "w")]:
        e.apply(r)
    assert not e.default_allow and e.exceptions == {("c", 1, 3): "r"}


def test_emulator_reads_type_a_as_a_reset_whatever_the_numbers():
    # the v1 kernel parses "a" and ignores the rest of the line
    e = devices.Emulator()
    for r in [devices.Rule(False), devices.Rule(True, "c", 1, 3, "rw"), devices.Rule(True, "a", 1, 3, "r")]:
        e.apply(r)
    assert e.default_allow and e.exceptions == {}


def test_v1_current_parses_devices_list(tmp_path):
    (tmp_path / "devices.list").write_text("c *:* m\nb *:* m\nc 1:3 rwm\nc 136:* rw\n")
    e = devices.v1_current(str(tmp_path))
    assert not e.default_allow
    assert e.exceptions == {("c", -1, -1): "m", ("b", -1, -1): "m", ("c", 1, 3): "rwm",
                            ("c", 136, -1): "rw"}
    (tmp_path / "devices.list").write_text("a *:* rwm\n")
    assert devices.v1_current(str(tmp_path)).default_allow
    assert devices.v1_current(str(tmp_path / "nosuch")) is None


def test_transition_adds_before_it_takes_away_and_never_resets():
    now, want = devices.Emulator(), devices.Emulator()
    now.exceptions = {("c", 1, 3): "rwm", ("b", 7, 0): "r", ("c", 10, 229): "rw"}
    want.exceptions = {("c", 1, 3): "rwm", ("c", 10, 229): "r", ("c", 10, 200): "rwm"}
    got = [(r.allow, r.v1()) for r in devices.transition(now, want)]
    assert got == [(True, "c 10:200 rwm"), (False, "c 10:229 w"), (False, "b 7:0 r")]
    # applied to `now` as the kernel would, the writes give exactly `want`
    for r in devices.transition(now, want):
        now.apply(r)
    assert now.exceptions == want.exceptions and not now.default_allow
    assert devices.transition(now, want) == []


def _run_program(prog: bytes, typ: int, access: int, major: int, minor: int) -> int:
    """A tiny interpreter for the instructions program() emits, to check its decisions."""
    regs = [0] * 11
    ctx = [(access << 16) | typ, major, minor]
    insns = [prog[i:i + 8] for i in range(0, len(prog), 8)]
    pc = 0
    while True:
        code, regs_b = insns[pc][0], insns[pc][1]
        dst, src = regs_b & 15, regs_b >> 4
        off = int.from_bytes(insns[pc][2:4], "little", signed=True)
        imm = int.from_bytes(insns[pc][4:8], "little", signed=True)
        pc += 1
        if code == devices.LDXW:
            regs[dst] = ctx[off // 4]
        elif code == devices.AND32K:
            regs[dst] &= imm & 0xFFFFFFFF
        elif code == devices.RSH32K:
            regs[dst] >>= imm
        elif code == devices.MOV32X:
            regs[dst] = regs[src]
        elif code == devices.MOV64K:
            regs[dst] = imm
        elif code == devices.JNEK:
            pc += off if regs[dst] != imm else 0
        elif code == devices.JNEX:
            pc += off if regs[dst] != regs[src] else 0
        elif code == devices.JEQK:
            pc += off if regs[dst] == imm else 0
        elif code == devices.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unknown opcode {code:#x}")


def test_device_program_decisions():
    R, W, M = 2, 4, 1
    allow_list = devices.program(devices.rules({"devices": [
        {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"}]}))
    assert _run_program(allow_list, 1, R, 7, 0) == 1
    assert _run_program(allow_list, 1, R | W, 7, 0) == 0  # every requested bit must be allowed
    assert _run_program(allow_list, 1, R, 7, 1) == 0
    assert _run_program(allow_list, 2, R | W, 1, 3) == 1  # /dev/null (a default)
    assert _run_program(allow_list, 2, M, 99, 99) == 1    # mknod of anything (c *:* m)
    assert _run_program(allow_list, 2, R, 99, 99) == 0
    deny_list = devices.program([devices.Rule(True), devices.Rule(False, "c", 1, 3, "w")])
    assert _run_program(deny_list, 2, R, 1, 3) == 1
    assert _run_program(deny_list, 2, R | W, 1, 3) == 0  # any denied bit denies
    assert _run_program(deny_list, 1, R | W, 8, 0) == 1


def test_linux_devices_get_no_rule_of_their_own():
    """Issue 17, item 7: /dev/kmsg in linux.devices with a deny-all config stays denied
    (the v2 program, as the v1 lines: runc's rule list); a listed default device loses
    its default rule, as in runc; the rest of the defaults stay."""
    R, W = 2, 4
    deny_all = {"devices": [{"allow": False, "access": "rwm"}]}
    prog = devices.program(devices.rules(deny_all, ["/dev/kmsg"]))
    assert _run_program(prog, 2, W, 1, 11) == 0
    assert _run_program(prog, 2, R | W, 1, 3) == 1
    prog = devices.program(devices.rules(deny_all, ["/dev/kmsg", "/dev/null"]))
    assert _run_program(prog, 2, W, 1, 3) == 0
    assert _run_program(prog, 2, R | W, 1, 5) == 1  # /dev/zero: still a default
    allowed = {"devices": deny_all["devices"] + [
        {"allow": True, "type": "c", "major": 1, "minor": 11, "access": "w"}]}
    prog = devices.program(devices.rules(allowed, ["/dev/kmsg"]))
    assert _run_program(prog, 2, W, 1, 11) == 1 and _run_program(prog, 2, R, 1, 11) == 0
    assert [r.v1() for r in devices.rules(deny_all, ["/dev/null"])][2:5] == [
        "c *:* m", "b *:* m", "c 1:8 rwm"]


def test_the_manager_keeps_the_paths_of_linux_devices():
    from libcontainer.spec import Device

    host = cgroups.Host({}, "/sys/fs/cgroup", {"": "/"})
    host._v2_ctrls = set()
    m = cgroups.Manager.plan("dev-test", "/eng-cgroups-unit/d", {},
                             [Device("/dev/kmsg", "c", 1, 11)], host)
    assert m.state()["devices"] == ["/dev/kmsg"]
    # a state written by an earlier version ([type, major, minor]) gives no paths
    assert cgroups.Manager({"mode": "v2", "paths": {}, "devices": [["c", 1, 11]]}).devices == []


class FakeManager:
    def __init__(self, paths: dict, unified: str = ""):
        self.paths, self.unified = paths, unified


def test_stats_from_a_v2_tree(tmp_path):
    d = tmp_path
    (d / "cpu.stat").write_text("usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"
                                "nr_periods 10\nnr_throttled 3\nthrottled_usec 40\n")
    (d / "memory.current").write_text("4096\n")
    (d / "memory.max").write_text("max\n")
    (d / "memory.peak").write_text("8192\n")
    (d / "memory.events").write_text("low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n")
    (d / "memory.stat").write_text("anon 4096\nfile 0\n")
    (d / "pids.current").write_text("3\n")
    (d / "pids.max").write_text("max\n")
    (d / "io.stat").write_text("8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n")
    s = stats.collect(FakeManager({}, str(d)))
    assert s["cpu"]["usage"] == {"total": 1500000, "kernel": 500000, "user": 1000000}
    assert s["cpu"]["throttling"] == {"periods": 10, "throttledPeriods": 3, "throttledTime": 40000}
    assert s["memory"]["usage"] == {"limit": -1, "usage": 4096, "max": 8192, "failcnt": 2}
    assert s["memory"]["oomKill"] == 1
    assert s["pids"] == {"current": 3, "limit": 0}
    assert s["blkio"]["ioServiceBytesRecursive"][0] == {"major": 8, "minor": 0, "op": "Read",
                                                        "value": 4096}


def test_stats_from_a_v1_tree(tmp_path):
    mem, pids, blk = tmp_path / "memory", tmp_path / "pids", tmp_path / "blkio"
    for p in (mem, pids, blk):
        p.mkdir()
    for name, v in (("limit_in_bytes", 100), ("usage_in_bytes", 50), ("max_usage_in_bytes", 90),
                    ("failcnt", 4)):
        (mem / f"memory.{name}").write_text(f"{v}\n")
    (mem / "memory.stat").write_text("cache 7\ntotal_cache 7\n")
    (mem / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (pids / "pids.current").write_text("2\n")
    (pids / "pids.max").write_text("9\n")
    (blk / "blkio.throttle.io_service_bytes_recursive").write_text("8:0 Read 512\nTotal 512\n")
    s = stats.collect(FakeManager({"memory": str(mem), "pids": str(pids), "blkio": str(blk)}))
    assert s["memory"]["usage"] == {"limit": 100, "usage": 50, "max": 90, "failcnt": 4}
    assert s["memory"]["oomKill"] == 2 and s["memory"]["cache"] == 7
    assert s["pids"] == {"current": 2, "limit": 9}
    assert s["blkio"]["ioServiceBytesRecursive"] == [{"major": 8, "minor": 0, "op": "Read",
                                                      "value": 512}]


def test_fs_apply_names_field_and_file(tmp_path):
    from libcontainer.cgroups import fs

    (tmp_path / "pids.max").write_text("")
    fs.apply(str(tmp_path), [("linux.resources.pids.limit", (("pids.max", "5"),), False)])
    assert (tmp_path / "pids.max").read_text() == "5"
    fs.apply(str(tmp_path), [("f", (("nope", "1"),), True)])  # optional: skipped
    with pytest.raises(ConfigError) as e:
        fs.apply(str(tmp_path), [("linux.resources.cpu.idle", (("cpu.idle", "1"),), False)])
    assert "linux.resources.cpu.idle" in str(e.value) and os.path.join(str(tmp_path), "cpu.idle") in str(e.value)


def test_update_flags_build_resources():
    from runner.args import parse
    from runner.cgroup_verbs import UPDATE_FLAGS, duration, size, update_resources

    opts, pos = parse(["--memory", "512m", "--pids-limit", "9", "--cpu-quota", "-1",
                       "--cpuset-cpus", "0", "x"], UPDATE_FLAGS)
    assert update_resources(opts) == {"memory": {"limit": 512 << 20}, "pids": {"limit": 9},
                                      "cpu": {"quota": -1, "cpus": "0"}}
    assert size("1g", "--memory") == 1 << 30 and size("100KB", "-") == 100 << 10
    assert size("-1", "--memory") == -1 and size("4096", "--memory") == 4096
    assert duration("500ms", "--interval") == 0.5 and duration("2", "--interval") == 2
