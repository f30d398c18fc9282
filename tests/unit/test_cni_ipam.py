"""The pool (libcontainer/network/ipam.py) on its own: host-local's config rules, its file
format, the cursor, ranges and exhaustion. No root, no namespaces: a temporary dataDir."""
from __future__ import annotations

import os

import pytest

from libcontainer.network import ipam
from libcontainer.network.errors import CNIError


def pool(tmp_path, **raw) -> ipam.Pool:
    raw.setdefault("dataDir", str(tmp_path))
    return ipam.Pool(ipam.Config(raw, "net1", str(tmp_path)))


def addrs(allocs) -> list:
    return [a.ip.cidr for a in allocs]


def test_defaults_skip_network_gateway_and_broadcast(tmp_path):
    p = pool(tmp_path, subnet="10.1.2.0/29")
    got = [addrs(p.allocate(f"c{i}", "eth0"))[0] for i in range(5)]
    assert got == [f"10.1.2.{i}/29" for i in range(2, 7)]  # .1 gateway, .7 broadcast
    with pytest.raises(CNIError, match="no IP addresses available in range set: 10.1.2.1-10.1.2.6"):
        p.allocate("c9", "eth0")
    assert sorted(os.listdir(tmp_path / "net1")) == sorted(
        [f"10.1.2.{i}" for i in range(2, 7)] + ["last_reserved_ip.0", "lock"])


def test_file_format_is_host_locals(tmp_path):
    p = pool(tmp_path, subnet="10.1.2.0/24")
    p.allocate("abc", "eth1")
    with open(tmp_path / "net1" / "10.1.2.2", newline="") as f:
        assert f.read() == "abc\r\neth1"
    with open(tmp_path / "net1" / "last_reserved_ip.0") as f:
        assert f.read() == "10.1.2.2"


def test_cursor_does_not_reuse_a_freed_address_at_once(tmp_path):
    p = pool(tmp_path, subnet="10.1.2.0/24")
    assert addrs(p.allocate("a", "eth0")) == ["10.1.2.2/24"]
    assert addrs(p.allocate("b", "eth0")) == ["10.1.2.3/24"]
    assert p.release("a", "eth0") == ["10.1.2.2"]
    assert addrs(p.allocate("c", "eth0")) == ["10.1.2.4/24"]
    assert p.release("a", "eth0") == []  # twice: nothing more


def test_range_start_end_gateway_and_several_ranges(tmp_path):
    p = pool(tmp_path, ranges=[[{"subnet": "fd00:5::/120"}],
                               [{"subnet": "10.5.0.0/24", "rangeStart": "10.5.0.10",
                                 "rangeEnd": "10.5.0.11", "gateway": "10.5.0.10"},
                                {"subnet": "10.6.0.0/24", "rangeEnd": "10.6.0.2"}]])
    got = [addrs(p.allocate(f"c{i}", "eth0")) for i in range(2)]
    # .10 is the first range's gateway, .1 the second's (by default): both skipped
    assert got == [["fd00:5::2/120", "10.5.0.11/24"], ["fd00:5::3/120", "10.6.0.2/24"]]
    assert [str(r.gateway) for r in p.cfg.rangesets[1]] == ["10.5.0.10", "10.6.0.1"]
    with pytest.raises(CNIError, match="no IP addresses available"):
        p.allocate("c2", "eth0")
    # all or nothing: the v6 address the failed call had taken is free again
    assert sorted(f for f in os.listdir(tmp_path / "net1") if ":" in f) == ["fd00:5::2", "fd00:5::3"]


def test_duplicate_allocation_is_refused(tmp_path):
    p = pool(tmp_path, subnet="10.1.2.0/24")
    p.allocate("a", "eth0")
    with pytest.raises(CNIError, match="duplicate allocation"):
        p.allocate("a", "eth0")
    assert addrs(p.allocate("a", "eth1")) == ["10.1.2.3/24"]


@pytest.mark.parametrize("raw,words", [
    ({"subnet": "10.0.0.0/33"}, "ipam.subnet"),
    ({"subnet": "10.0.0.1/24"}, "host bits"),
    ({"subnet": "10.0.0.0/31"}, "too small"),
    ({"subnet": "nope/24"}, "ipam.subnet"),
    ({"subnet": "10.0.0.0/24", "rangeStart": "10.0.1.1"}, "ipam.rangeStart"),
    ({"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.9", "rangeEnd": "10.0.0.5"}, "before"),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/25"}]]}, "overlaps"),
    ({"ranges": [[{"subnet": "10.0.0.0/24"}, {"subnet": "fd00::/64"}]]}, "mixes"),
    ({"ranges": []}, "ipam.ranges"),
    ({}, "needs"),
    ({"subnet": "10.0.0.0/24", "routes": [{"dst": "0.0.0.0/0", "gw": "fd00::1"}]}, "family"),
])
def test_bad_configs_name_the_field(tmp_path, raw, words):
    with pytest.raises(CNIError) as e:
        ipam.Config(raw, "n", str(tmp_path))
    assert e.value.code == 7 and words in e.value.msg
