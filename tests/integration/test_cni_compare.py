"""runner-cni side by side with the reference plugins (Debian's containernetworking-plugins
in /usr/lib/cni: bridge + host-local, chained with portmap as a conflist would): the same
configuration, each in a "host" namespace of its own with two "containers". The same
interfaces, addresses, routes, bridge, reachability (ping, port mappings from the host and
its loopback), CHECK, a result of the same shape, and a DEL that takes the same away.
Also: the pool's files are host-local's (each reads what the other wrote)."""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
from cni_helpers import (REF_DIR, Netns, allocation_files, ask, call, ok, ours_command,
                         serve, veths)
from conftest import need_root

SUBNETS = ("10.81.0.0/24", "fd81::/64")
MAPS = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "udp"}]


def need_reference():
    for p in ("bridge", "host-local", "portmap"):
        if not os.access(os.path.join(REF_DIR, p), os.X_OK):
            pytest.skip(f"{REF_DIR}/{p} is missing: `make test` installs containernetworking-plugins")


class Side:
    """One implementation in its own host namespace, with its two containers."""

    def __init__(self, ours: bool, tmp: str):
        self.ours = ours
        self.host = Netns()
        self.host.sh("ip", "link", "set", "lo", "up")
        self.cs = [Netns(), Netns()]
        self.data = os.path.join(tmp, "ours" if ours else "ref")
        ipam = {"type": "host-local", "dataDir": os.path.join(self.data, "networks"),
                "ranges": [[{"subnet": SUBNETS[0]}], [{"subnet": SUBNETS[1]}]],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}
        self.conf = {"cniVersion": "1.0.0", "name": "cmpnet", "bridge": "cmp0",
                     "isGateway": True, "ipMasq": True, "hairpinMode": True, "mtu": 1450,
                     "ipam": ipam, "type": "runner-cni" if ours else "bridge"}
        if ours:
            self.conf["stateDir"] = self.data
            self.conf["capabilities"] = {"portMappings": True}
        self.pm = {"cniVersion": "1.0.0", "name": "cmpnet", "type": "portmap",
                   "capabilities": {"portMappings": True}, "snat": True}
        self.results = []

    def exe(self, plugin: str) -> list:
        return ours_command() if self.ours else [os.path.join(REF_DIR, plugin)]

    def add(self, i: int, maps: list) -> dict:
        ns = self.cs[i]
        if self.ours:
            conf = dict(self.conf, runtimeConfig={"portMappings": maps})
            res = ok(self.exe(""), "ADD", conf, self.host, cid=f"c{i}", netns=ns.path)
        else:
            res = ok(self.exe("bridge"), "ADD", self.conf, self.host, cid=f"c{i}", netns=ns.path)
            pm = dict(self.pm, runtimeConfig={"portMappings": maps}, prevResult=res)
            res = ok(self.exe("portmap"), "ADD", pm, self.host, cid=f"c{i}", netns=ns.path)
        self.results.append(res)
        return res

    def check(self, i: int, maps: list) -> tuple:
        res, ns = self.results[i], self.cs[i]
        if self.ours:
            conf = dict(self.conf, runtimeConfig={"portMappings": maps}, prevResult=res)
            return call(self.exe(""), "CHECK", conf, self.host, cid=f"c{i}", netns=ns.path)
        # bridge's CHECK only: portmap 1.1.1's CHECK of a dual-stack result looks for the
        # IPv4 rules in ip6tables' nat table and always fails ("could not check ipv6 dnat")
        return call(self.exe("bridge"), "CHECK", dict(self.conf, prevResult=res), self.host,
                    cid=f"c{i}", netns=ns.path)

    def delete(self, i: int, maps: list) -> None:
        res, ns = self.results[i], self.cs[i]
        if self.ours:
            conf = dict(self.conf, runtimeConfig={"portMappings": maps})
            ok(self.exe(""), "DEL", conf, self.host, cid=f"c{i}", netns=ns.path)
        else:  # a conflist is deleted in reverse
            pm = dict(self.pm, runtimeConfig={"portMappings": maps}, prevResult=res)
            ok(self.exe("portmap"), "DEL", pm, self.host, cid=f"c{i}", netns=ns.path)
            ok(self.exe("bridge"), "DEL", dict(self.conf, prevResult=res), self.host,
               cid=f"c{i}", netns=ns.path)

    def close(self) -> None:
        for ns in self.cs + [self.host]:
            ns.close()


def shape(obj):
    """The structure of a JSON value: keys and types, not values."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in sorted(obj.items())}
    if isinstance(obj, list):
        return [shape(v) for v in obj]
    return type(obj).__name__


def link_view(ns: Netns) -> dict:
    """name → (kind, mtu, master, up) with veth names made comparable."""
    out = {}
    for name, link in ns.links().items():
        key = "veth*" + str(len(out)) if re.fullmatch(r"veth[0-9a-f]{8}", name) else name
        out[key] = (link.get("linkinfo", {}).get("info_kind", ""), link["mtu"],
                    link.get("master", ""), "UP" in link["flags"],
                    link.get("linkinfo", {}).get("info_slave_data", {}).get("hairpin"))
    return out


@pytest.fixture
def sides(tmp_path):
    need_root()
    need_reference()
    made = [Side(False, str(tmp_path)), Side(True, str(tmp_path))]
    try:
        yield made
    finally:
        for s in made:
            s.close()


def test_same_network_as_the_reference_plugins(sides):
    ref, ours = sides
    for s in sides:
        s.add(0, MAPS)
        s.add(1, [])
    # the result: same shape; same values but for MACs and the random veth name
    for r, o in zip(ref.results, ours.results):
        assert shape(r) == shape(o)
        assert [i["name"] for i in r["interfaces"]][::2] == [i["name"] for i in o["interfaces"]][::2]
        assert re.fullmatch(r"veth[0-9a-f]{8}", o["interfaces"][1]["name"])
        assert (r["ips"], r["routes"], r["dns"]) == (o["ips"], o["routes"], o["dns"])
    # inside each container: the same links, addresses, routes
    for i in range(2):
        rc, oc = ref.cs[i], ours.cs[i]
        assert link_view(rc) == link_view(oc)
        assert rc.addrs("eth0") == oc.addrs("eth0")
        assert rc.routes() == oc.routes()
    # the hosts: the same bridge with the same gateways, the same ports on it
    assert link_view(ref.host) == link_view(ours.host)
    assert ref.host.addrs("cmp0") == ours.host.addrs("cmp0") == ["10.81.0.1/24", "fd81::1/64"]
    assert ref.host.routes() == ours.host.routes()
    for s in sides:
        assert s.host.sh("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    # reachability, the same on both sides
    for s in sides:
        a, b = s.cs
        assert [a.ping(t) for t in ("10.81.0.3", "10.81.0.1", "fd81::3", "fd81::1")] == [True] * 4
        servers = [serve(a, "tcp", 80), serve(a, "udp", 53)]
        try:
            seen = (ask(s.host, "tcp", "10.81.0.1", 8080), ask(s.host, "udp", "10.81.0.1", 5353),
                    ask(s.host, "tcp", "127.0.0.1", 8080), ask(s.host, "tcp", "fd81::1", 8080),
                    ask(b, "tcp", "10.81.0.1", 8080))
        finally:
            for p in servers:
                p.kill()
                p.wait()
        assert seen == ("tcp 80 from ::ffff:10.81.0.1", "udp 53 from ::ffff:10.81.0.1",
                        "tcp 80 from ::ffff:10.81.0.1", "tcp 80 from fd81::1",
                        "tcp 80 from ::ffff:10.81.0.1"), f"{'ours' if s.ours else 'ref'}: {seen}"
    # CHECK passes on both; then drift (an address gone) fails on both
    for s in sides:
        rc, out = s.check(0, MAPS)
        assert (rc, out) == (0, None), out
        s.cs[0].sh("ip", "addr", "del", "10.81.0.2/24", "dev", "eth0")
        rc, out = s.check(0, MAPS)
        assert rc == 1 and set(out) >= {"code", "msg"}, out
    # DEL: the containers' ends, the host veths and the addresses go on both sides
    for s in sides:
        for i, maps in ((0, MAPS), (1, [])):
            s.delete(i, maps)
        assert [("eth0" in c.links()) for c in s.cs] == [False, False]
        assert veths(s.host) == []
        assert allocation_files(os.path.join(s.data, "networks")) == []
        assert ask(s.host, "tcp", "10.81.0.1", 8080) == ""
    assert ours.host.nft_rules() == []


def test_same_error_shape(sides):
    ref, ours = sides
    outs = []
    for s in sides:
        conf = json.loads(json.dumps(s.conf))
        conf["ipam"]["ranges"][0][0]["subnet"] = "10.81.0.0/33"
        rc, out = call(s.exe("bridge"), "ADD", conf, s.host, cid="x", netns=s.cs[0].path)
        assert rc == 1
        outs.append(out)
    # the spec's error object; the reference's skel leaves out its cniVersion
    assert set(outs[0]) == {"code", "msg"} and set(outs[1]) == {"cniVersion", "code", "msg"}
    assert "10.81.0.0/33" in outs[1]["msg"]
    # ours leaves nothing behind (the reference makes its bridge before it looks at ipam)
    assert "cmp0" not in ours.host.links()


def test_pool_files_are_host_locals(tmp_path):
    """The real host-local and our pool take turns in one dataDir: neither hands out an
    address the other holds, and each goes on from the other's cursor."""
    need_reference()
    from libcontainer.network import ipam

    data = str(tmp_path / "pool")
    raw = {"type": "host-local", "subnet": "10.82.0.0/24", "dataDir": data}
    pool = ipam.Pool(ipam.Config(raw, "shared", "/"))

    def ref(command: str, cid: str) -> dict:
        conf = {"cniVersion": "1.0.0", "name": "shared", "type": "host-local", "ipam": raw}
        env = {"CNI_COMMAND": command, "CNI_CONTAINERID": cid, "CNI_IFNAME": "eth0",
               "CNI_NETNS": "/proc/self/ns/net", "CNI_PATH": REF_DIR}
        r = subprocess.run([os.path.join(REF_DIR, "host-local")], input=json.dumps(conf),
                           capture_output=True, text=True, env=env, timeout=30)
        assert r.returncode == 0, r.stdout
        return json.loads(r.stdout) if r.stdout.strip() else {}

    assert [a.ip.cidr for a in pool.allocate("ours1", "eth0")] == ["10.82.0.2/24"]
    assert ref("ADD", "ref1")["ips"][0]["address"] == "10.82.0.3/24"
    assert [a.ip.cidr for a in pool.allocate("ours2", "eth0")] == ["10.82.0.4/24"]
    # each releases the other's allocation by its owner
    ref("DEL", "ours1")
    assert pool.release("ref1", "eth0") == ["10.82.0.3"]
    assert ref("ADD", "ref2")["ips"][0]["address"] == "10.82.0.5/24"
    assert sorted(os.listdir(os.path.join(data, "shared"))) == [
        "10.82.0.4", "10.82.0.5", "last_reserved_ip.0", "lock"]
    ref("DEL", "ours2")
    ref("DEL", "ref2")


def test_port_mappings_in_go_spelling_as_the_reference(sides):
    """containerd 1.6 sends portMappings with Go's field names ({"HostPort",
    "ContainerPort", "Protocol", "HostIP"}: go-cni's structs have no JSON tags). The
    reference portmap maps them (Go's JSON decoding ignores case); so do we."""
    go_maps = [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""},
               {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp", "HostIP": ""}]
    seen = {}
    for s in sides:
        s.add(0, go_maps)
        s.add(1, [])
        a, b = s.cs
        servers = [serve(a, "tcp", 80), serve(a, "udp", 53)]
        try:
            seen[s.ours] = (ask(s.host, "tcp", "10.81.0.1", 8080),
                            ask(s.host, "udp", "10.81.0.1", 5353),
                            ask(b, "tcp", "10.81.0.1", 8080))
        finally:
            for p in servers:
                p.kill()
                p.wait()
        for i, maps in ((0, go_maps), (1, [])):
            s.delete(i, maps)
        assert ask(s.host, "tcp", "10.81.0.1", 8080, timeout=1) == ""
        assert veths(s.host) == []
    assert seen[True] == seen[False] == ("tcp 80 from ::ffff:10.81.0.1",
                                         "udp 53 from ::ffff:10.81.0.1",
                                         "tcp 80 from ::ffff:10.81.0.1"), seen
    assert sides[1].host.nft_rules() == []
