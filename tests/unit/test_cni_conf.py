"""runner-cni's configuration side, without root: the hook's arguments (docker's -p
syntax), named networks on disk (create, load, list, remove), the CNI environment and
configuration checks, results of older versions."""
from __future__ import annotations

import json
import os

import pytest

from libcontainer.errors import AlreadyExists, InvalidArgument, NotFound
from libcontainer.network import cni, hook, netconf
from libcontainer.network.errors import CNIError


@pytest.mark.parametrize("text,want", [
    ("8080:80", {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}),
    ("5353:53/udp", {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}),
    ("127.0.0.1:8080:80", {"hostPort": 8080, "containerPort": 80, "protocol": "tcp",
                           "hostIP": "127.0.0.1"}),
    ("[fd00::1]:8080:80/tcp", {"hostPort": 8080, "containerPort": 80, "protocol": "tcp",
                               "hostIP": "fd00::1"}),
])
def test_port_syntax(text, want):
    assert hook.parse_port(text) == want


@pytest.mark.parametrize("text", ["80", "a:b", "1:2:3:4", ""])
def test_bad_port_syntax(text):
    with pytest.raises(ValueError):
        hook.parse_port(text)


def test_hook_arguments():
    opts = hook.parse_args(["hook", "add", "web", "--config-dir", "/d", "-p", "1:2",
                            "--ifname=net1", "--publish", "3:4/udp"])
    assert (opts["action"], opts["network"], opts["config_dir"], opts["ifname"]) == (
        "add", "web", "/d", "net1")
    assert [p["hostPort"] for p in opts["ports"]] == [1, 3]
    for bad in (["hook", "up", "web"], ["hook", "add"], ["hook", "add", "w", "--nope", "1"],
                ["hook", "add", "w", "-p"]):
        with pytest.raises(ValueError):
            hook.parse_args(bad)


def test_named_networks(tmp_path, monkeypatch):
    monkeypatch.setattr(netconf, "_remove_idle_bridge", lambda name: None)
    d = str(tmp_path / "nets")
    conf = netconf.create("web", subnet6="fd00:1::/64", gateway="fd00:1::fe", d=d)
    plugin = conf["plugins"][0]
    assert plugin["bridge"] == "rn-web" and plugin["capabilities"] == {"portMappings": True}
    assert plugin["ipam"]["ranges"] == [[{"subnet": "fd00:1::/64", "gateway": "fd00:1::fe"}]]
    with open(os.path.join(d, "web.conflist")) as f:
        assert json.load(f) == conf
    # the first free automatic subnet, a name too long for a bridge gets a hash
    long = netconf.create("a-rather-long-name", d=d)
    assert long["plugins"][0]["bridge"].startswith("rn-") and len(long["plugins"][0]["bridge"]) == 15
    assert long["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.89.0.0/24"}]]
    assert netconf.create("c", d=d)["plugins"][0]["ipam"]["ranges"] == [[{"subnet": "10.89.1.0/24"}]]
    # what the plugin gets: the list's name and version added to the plugin's object
    loaded = netconf.load("web", d)
    assert (loaded["name"], loaded["cniVersion"], loaded["type"]) == ("web", "1.0.0", "runner-cni")
    assert [c["name"] for c in netconf.list_all(d)] == ["a-rather-long-name", "c", "web"]
    with pytest.raises(AlreadyExists):
        netconf.create("web", d=d)
    for kw, words in (({"subnet": "10.89.0.0/16"}, "overlaps"), ({"subnet": "fd00::/64"}, "IPv4"),
                      ({"subnet": "10.1.0.0/24", "mtu": 10}, "mtu"),
                      ({"subnet": "10.1.0.0/24", "bridge": "a/b"}, "bridge")):
        with pytest.raises(InvalidArgument, match=words):
            netconf.create("x", d=d, **kw)
    with pytest.raises(InvalidArgument):
        netconf.create("bad name", d=d)
    assert not os.path.exists(os.path.join(d, "x.conflist"))
    netconf.remove("web", d)
    with pytest.raises(NotFound):
        netconf.load("web", d)


def base_conf(**kw) -> dict:
    c = {"cniVersion": "1.0.0", "name": "n", "type": "runner-cni", "stateDir": "/tmp/x",
         "ipam": {"type": "host-local", "subnet": "10.1.0.0/24"}}
    c.update(kw)
    return c


@pytest.mark.parametrize("conf,code,words", [
    (base_conf(cniVersion="0.2.0"), 1, "cniVersion"),
    (base_conf(cniVersion=None), 7, "cniVersion"),
    (base_conf(type="bridge"), 7, "type"),
    (base_conf(name="a b"), 7, "name"),
    (base_conf(plugins=[]), 7, "plugins"),
    (base_conf(mtu="1500"), 7, "mtu"),
    (base_conf(isGateway="yes"), 7, "isGateway"),
    (base_conf(bridge="x" * 16), 7, "bridge"),
    (base_conf(vlan=5), 2, "vlan"),
    (base_conf(ipam={"type": "static"}), 2, "ipam.type"),
    (base_conf(ipMasq=True, ipam=None), 7, "ipMasq"),
    (base_conf(stateDir="relative"), 7, "stateDir"),
    (base_conf(runtimeConfig={"portMappings": [{"hostPort": 1, "containerPort": 2,
                                                "protocol": "icmp"}]}), 7, "protocol"),
    (base_conf(runtimeConfig={"portMappings": [{"hostPort": 1, "containerPort": 2},
                                               {"hostPort": 1, "containerPort": 3}]}),
     7, "mapped twice"),
])
def test_bad_configuration(conf, code, words):
    env = {"CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0", "CNI_NETNS": "/nonexistent"}
    with pytest.raises(CNIError) as e:
        cni.execute("ADD", conf, env)
    assert e.value.code == code and words in e.value.msg, e.value.msg


@pytest.mark.parametrize("env,words", [
    ({"CNI_IFNAME": "eth0", "CNI_NETNS": "/x"}, "CNI_CONTAINERID"),
    ({"CNI_CONTAINERID": "-bad", "CNI_IFNAME": "eth0", "CNI_NETNS": "/x"}, "CNI_CONTAINERID"),
    ({"CNI_CONTAINERID": "c", "CNI_NETNS": "/x"}, "CNI_IFNAME"),
    ({"CNI_CONTAINERID": "c", "CNI_IFNAME": "a/b", "CNI_NETNS": "/x"}, "CNI_IFNAME"),
    ({"CNI_CONTAINERID": "c", "CNI_IFNAME": "eth0"}, "CNI_NETNS"),
])
def test_bad_environment(env, words):
    with pytest.raises(CNIError) as e:
        cni.execute("ADD", base_conf(), env)
    assert e.value.code == 4 and words in e.value.msg


def test_version_and_old_results():
    assert cni.execute("VERSION", {"cniVersion": "0.4.0"}, {}) == {
        "cniVersion": "0.4.0", "supportedVersions": cni.SUPPORTED_VERSIONS}
    res = {"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}, {"address": "fd::2/64"}]}
    assert [i["version"] for i in cni.convert(res, "0.3.1")["ips"]] == ["4", "6"]
    assert "version" not in cni.convert(res, "1.1.0")["ips"][0]
    with pytest.raises(CNIError) as e:
        cni.execute("CHECK", base_conf(cniVersion="0.3.1"), {})
    assert e.value.code == 1
