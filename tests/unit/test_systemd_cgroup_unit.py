"""--systemd-cgroup without systemd: the "slice:prefix:name" path, slice expansion, unit
names, and the unit properties linux.resources maps to on v1/hybrid and v2 hosts (runc
1.1's libcontainer/cgroups/systemd mapping)."""
from __future__ import annotations

import pytest

from libcontainer.cgroups import sdprops
from libcontainer.errors import ConfigError

INF = 2**64 - 1


@pytest.mark.parametrize("path, cid, want", [
    ("", "abc", ("", "runner", "abc")),
    ("system.slice:docker:1234", "x", ("system.slice", "docker", "1234")),
    (":cri-containerd:ab", "x", ("", "cri-containerd", "ab")),
    ("kubepods-besteffort-pod1.slice:cri-containerd:ab", "x",
     ("kubepods-besteffort-pod1.slice", "cri-containerd", "ab")),
    ("machine.slice:libpod:c1.slice", "x", ("machine.slice", "libpod", "c1.slice")),
])
def test_parse_path(path, cid, want):
    assert sdprops.parse_path(path, cid) == want


@pytest.mark.parametrize("path", ["/sys/fs/cgroup/foo", "a:b", "a:b:c:d", "system.slice:x:",
                                  "system:docker:1", "system.slice:do/cker:1",
                                  "a--b.slice:p:n", "-a.slice:p:n", "a/b.slice:p:n"])
def test_parse_path_refuses(path):
    with pytest.raises(ConfigError) as e:
        sdprops.parse_path(path, "x")
    assert e.value.field == "linux.cgroupsPath"


@pytest.mark.parametrize("slice_, path", [
    ("system.slice", "/system.slice"),
    ("-.slice", "/"),
    ("a-b.slice", "/a.slice/a-b.slice"),
    ("kubepods-burstable-pod12.slice",
     "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod12.slice"),
])
def test_expand_slice(slice_, path):
    assert sdprops.expand_slice(slice_) == path


def test_unit_name():
    assert sdprops.unit_name("runner", "abc") == "runner-abc.scope"
    assert sdprops.unit_name("docker", "c1.slice") == "c1.slice"


def test_range_to_bits_is_systemds_order():
    assert sdprops.range_to_bits("0-1", "f") == b"\x03"
    assert sdprops.range_to_bits("8", "f") == b"\x00\x01"      # CPU 8: byte 1, bit 0
    assert sdprops.range_to_bits("0,9-10,", "f") == b"\x01\x06"
    for bad in ("", "x", "3-1"):
        with pytest.raises(ConfigError):
            sdprops.range_to_bits(bad, "linux.resources.cpu.cpus")


RES = {"memory": {"limit": 256 << 20, "reservation": 128 << 20, "swap": 512 << 20},
       "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
       "pids": {"limit": 100}, "blockIO": {"weight": 500}}


def props(res, mode, version=252):
    return dict(sdprops.resource_properties(res, mode, version, devices=False))


def test_v1_and_hybrid_properties():
    for mode in ("v1", "hybrid"):
        p = props(RES, mode)
        assert p == {"MemoryLimit": ("t", 256 << 20), "CPUShares": ("t", 512),
                     "CPUQuotaPeriodUSec": ("t", 100000),
                     "CPUQuotaPerSecUSec": ("t", 500000), "BlockIOWeight": ("t", 500),
                     "TasksMax": ("t", 100), "AllowedCPUs": ("ay", b"\x03"),
                     "AllowedMemoryNodes": ("ay", b"\x01")}


def test_v2_properties():
    p = props(RES, "v2")
    assert p == {"MemoryMax": ("t", 256 << 20), "MemoryLow": ("t", 128 << 20),
                 "MemorySwapMax": ("t", 256 << 20),   # swap-only on v2
                 "CPUWeight": ("t", 20),                # runc's shares → weight
                 "CPUQuotaPeriodUSec": ("t", 100000), "CPUQuotaPerSecUSec": ("t", 500000),
                 "TasksMax": ("t", 100), "AllowedCPUs": ("ay", b"\x03"),
                 "AllowedMemoryNodes": ("ay", b"\x01")}


def test_unlimited_and_rounding():
    p = props({"memory": {"limit": -1}, "pids": {"limit": -1},
               "cpu": {"quota": 12345, "period": 100000}}, "v2")
    assert p["MemoryMax"] == ("t", INF) and p["TasksMax"] == ("t", INF)
    assert p["MemorySwapMax"] == ("t", INF)  # unlimited memory, no swap given: unlimited
    assert p["CPUQuotaPerSecUSec"] == ("t", 130000)  # rounded up to 10 ms per second
    p = props({"cpu": {"quota": -1}}, "hybrid")
    assert p == {"CPUQuotaPerSecUSec": ("t", INF)}
    p = props({"cpu": {"quota": 20000}}, "hybrid")  # period: the default 100 ms
    assert p == {"CPUQuotaPerSecUSec": ("t", 200000)}


def test_old_systemd_gets_no_newer_properties():
    p = props(RES, "v2", version=241)
    assert "CPUQuotaPeriodUSec" not in p and "AllowedCPUs" not in p
    assert props(RES, "v2", version=243).get("CPUQuotaPeriodUSec")
    assert "AllowedCPUs" not in props(RES, "v2", version=243)


def test_unified_properties():
    p = props({"unified": {"memory.high": "1000000", "memory.max": "max", "cpu.max": "50000 100000",
                           "pids.max": "20", "cpu.weight": "300", "memory.oom.group": "1"}},
              "v2")
    assert p == {"MemoryHigh": ("t", 1000000), "MemoryMax": ("t", INF),
                 "CPUQuotaPeriodUSec": ("t", 100000), "CPUQuotaPerSecUSec": ("t", 500000),
                 "TasksMax": ("t", 20), "CPUWeight": ("t", 300)}
    with pytest.raises(ConfigError) as e:
        props({"unified": {"memory.high": "lots"}}, "v2")
    assert e.value.field == "linux.resources.unified.memory.high"


def test_device_properties():
    p = sdprops.device_properties({})
    assert p[0] == ("DevicePolicy", ("s", "strict")) and p[1] == ("DeviceAllow", ("a(ss)", []))
    allow = p[2][1][1]
    assert ("char-*", "m") in allow and ("block-*", "m") in allow
    assert ("/dev/char/1:3", "rwm") in allow          # /dev/null, shown by /sys/dev/char
    assert ("char-pts", "rwm") in allow               # 136:* by its /proc/devices group
    # runc's order: by (major, minor, type)
    assert [a[0] for a in allow[:2]] == ["block-*", "char-*"]
    everything = sdprops.device_properties({"devices": [{"allow": True, "access": "rwm"}]})
    assert everything == [("DevicePolicy", ("s", "auto")), ("DeviceAllow", ("a(ss)", []))]


def test_base_properties():
    p = sdprops.base_properties("runner-x.scope", "system.slice", "x", 42, "hybrid")
    d = dict(p)
    assert d["Slice"] == ("s", "system.slice") and d["Delegate"] == ("b", True)
    assert d["PIDs"] == ("au", [42]) and d["DefaultDependencies"] == ("b", False)
    assert d["Description"] == ("s", "libcontainer container x")
    assert "BlockIOAccounting" in d and "IOAccounting" not in d
    assert "IOAccounting" in dict(sdprops.base_properties("u.scope", "s.slice", "u", 1, "v2"))
    d = dict(sdprops.base_properties("c1.slice", "machine.slice", "c1.slice", -1, "v2"))
    assert d["Wants"] == ("as", ["machine.slice"]) and "Slice" not in d and "PIDs" not in d


def test_unreachable_systemd_names_the_flag(monkeypatch, tmp_path):
    from libcontainer.cgroups import sdbus

    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/nobus")
    with pytest.raises(ConfigError) as e:
        sdbus.Systemd(user=False)
    assert e.value.field == "--systemd-cgroup" and "nobus" in str(e.value)


def test_annotation_properties():
    p = sdprops.annotation_properties({
        "org.systemd.property.TimeoutStopUSec": "uint64 10000000",
        "org.systemd.property.CollectMode": "'inactive-or-failed'",
        "org.systemd.property.RuntimeMaxSec": "5",          # Sec → USec, in µs
        "org.systemd.property.Wants": "['a.service', 'b.service']",
        "org.systemd.property.SendSIGHUP": "true",
        "org.systemd.property.CPUWeight": "@t 300",
        "io.kubernetes.other": "ignored"})
    assert dict(p) == {"TimeoutStopUSec": ("t", 10000000),
                       "CollectMode": ("s", "inactive-or-failed"),
                       "RuntimeMaxUSec": ("t", 5000000),
                       "Wants": ("as", ["a.service", "b.service"]),
                       "SendSIGHUP": ("b", True), "CPUWeight": ("t", 300)}


@pytest.mark.parametrize("key, value", [("org.systemd.property.A1", "1"),
                                        ("org.systemd.property.Ab", "1"),
                                        ("org.systemd.property.Foo", "uint64 x"),
                                        ("org.systemd.property.Foo", "[1, 'a']"),
                                        ("org.systemd.property.TimeoutStopSec", "'x'")])
def test_annotation_properties_refused(key, value):
    with pytest.raises(ConfigError) as e:
        sdprops.annotation_properties({key: value})
    assert e.value.field == f"annotations.{key}"


def test_user_bus_address(monkeypatch, tmp_path):
    """Rootless: the user's systemd, as runc and crun find it."""
    from libcontainer.cgroups import sdbus

    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus")
    assert sdbus.bus_address(True) == "unix:path=/run/user/1000/bus"
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        sdbus.bus_address(True)
    assert e.value.field == "--systemd-cgroup" and "dbus-user-session" in str(e.value)
    (tmp_path / "bus").touch()
    assert sdbus.bus_address(True) == f"unix:path={tmp_path}/bus"
    monkeypatch.delenv("DBUS_SYSTEM_BUS_ADDRESS", raising=False)
    assert sdbus.bus_address(False) == "unix:path=/run/dbus/system_bus_socket"
