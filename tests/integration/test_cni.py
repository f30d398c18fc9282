"""runner-cni, the CNI plugin (issue 10), called as runtimes call it: ADD, DEL, CHECK,
VERSION, STATUS, GC; the bridge, veth pairs, addresses and routes, port mappings, the pool.

Everything happens in namespaces made here: a throw-away "host" namespace holds the bridge
and the rules, each "container" is a namespace of its own; traffic goes only between them.
After every test no veth, table, allocation file or namespace is left."""
from __future__ import annotations

import concurrent.futures
import os
import uuid

import pytest
from cni_helpers import (Netns, allocation_files, ask, call, ok, ours_command, serve, veths)
from conftest import need_root

EXE = None


@pytest.fixture
def net(tmp_path, rootfs_template):
    """A host namespace, a state dir, containers on demand; all checked and gone after."""
    need_root()
    global EXE
    EXE = ours_command()

    class Net:
        state = str(tmp_path / "state")
        host = Netns()
        made: list = []
        bridge = "rc" + uuid.uuid4().hex[:8]

        def conf(self, **extra) -> dict:
            c = {"cniVersion": "1.0.0", "name": "testnet", "type": "runner-cni",
                 "bridge": self.bridge, "isGateway": True, "ipMasq": True,
                 "stateDir": self.state,
                 "ipam": {"type": "host-local",
                          "ranges": [[{"subnet": "10.77.0.0/24"}], [{"subnet": "fd77::/64"}]],
                          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}
            c.update(extra)
            return c

        def container(self) -> Netns:
            ns = Netns()
            self.made.append(ns)
            return ns

    n = Net()
    n.host.sh("ip", "link", "set", "lo", "up")  # as on a real host: 127.0.0.1 works
    try:
        yield n
        # what the DELs must have released, while the host namespace still exists
        assert veths(n.host) == [], "veths left in the host namespace"
        assert n.host.nft_rules() == [], "nftables rules of an attachment left"
        assert allocation_files(n.state) == [], "allocations left"
    finally:
        for ns in n.made:
            ns.close()
        n.host.close()


def add(net, ns, conf=None, cid="c1", **kw) -> dict:
    return ok(EXE, "ADD", conf or net.conf(), net.host, cid=cid, netns=ns.path, **kw)


def delete(net, ns, conf=None, cid="c1", **kw) -> None:
    out = ok(EXE, "DEL", conf or net.conf(), net.host, cid=cid, netns=ns.path if ns else "", **kw)
    assert out is None


def test_two_containers_reach_each_other_and_the_gateway(net):
    a, b = net.container(), net.container()
    ra = add(net, a, cid="a")
    rb = add(net, b, cid="b")
    # the result: the reference bridge's shape
    assert [i["name"] for i in ra["interfaces"]][::2] == [net.bridge, "eth0"]
    assert ra["interfaces"][1]["name"].startswith("veth")
    assert ra["interfaces"][2]["sandbox"] == a.path
    assert [(ip["interface"], ip["address"], ip["gateway"]) for ip in ra["ips"]] == [
        (2, "10.77.0.2/24", "10.77.0.1"), (2, "fd77::2/64", "fd77::1")]
    assert ra["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert [ip["address"] for ip in rb["ips"]] == ["10.77.0.3/24", "fd77::3/64"]
    # inside: the interface, its addresses, the routes through the gateway
    assert a.addrs("eth0") == ["10.77.0.2/24", "fd77::2/64"]
    assert ("default", "10.77.0.1", "eth0") in a.routes()
    assert ("default", "fd77::1", "eth0") in a.routes()
    mac = a.links()["eth0"]["address"]
    assert ra["interfaces"][2]["mac"] == mac
    # the host: the bridge with the gateways, both veths its ports, forwarding on
    assert net.host.addrs(net.bridge) == ["10.77.0.1/24", "fd77::1/64"]
    links = net.host.links()
    for r in (ra, rb):
        assert links[r["interfaces"][1]["name"]]["master"] == net.bridge
    assert net.host.sh("cat", "/proc/sys/net/ipv4/ip_forward").stdout.strip() == "1"
    for target in ("10.77.0.3", "10.77.0.1", "fd77::3", "fd77::1"):
        assert a.ping(target), f"a cannot reach {target}"
    assert b.ping("10.77.0.2")
    delete(net, a, cid="a")
    delete(net, b, cid="b")
    assert "eth0" not in a.links()
    # DEL twice, and a DEL of what never was: fine
    delete(net, a, cid="a")
    delete(net, None, cid="never")


def test_port_mappings_tcp_udp_from_host_loopback_and_neighbour(net):
    maps = [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
            {"hostPort": 5353, "containerPort": 53, "protocol": "udp"},
            {"hostPort": 8443, "containerPort": 80, "protocol": "tcp", "hostIP": "10.77.0.1"}]
    conf = net.conf(capabilities={"portMappings": True},
                    runtimeConfig={"portMappings": maps})
    a, b = net.container(), net.container()
    add(net, a, conf, cid="a")
    add(net, b, cid="b")
    servers = [serve(a, "tcp", 80), serve(a, "udp", 53)]
    try:
        # from the host: its bridge address, v6 too; the source is the host's address
        assert ask(net.host, "tcp", "10.77.0.1", 8080) == "tcp 80 from ::ffff:10.77.0.1"
        assert ask(net.host, "tcp", "fd77::1", 8080) == "tcp 80 from fd77::1"
        assert ask(net.host, "udp", "10.77.0.1", 5353) == "udp 53 from ::ffff:10.77.0.1"
        # from the host's own loopback (route_localnet + masquerade, as portmap does)
        assert ask(net.host, "tcp", "127.0.0.1", 8080) == "tcp 80 from ::ffff:10.77.0.1"
        assert ask(net.host, "udp", "127.0.0.1", 5353) == "udp 53 from ::ffff:10.77.0.1"
        # a host IP given: only there
        assert ask(net.host, "tcp", "10.77.0.1", 8443) == "tcp 80 from ::ffff:10.77.0.1"
        assert ask(net.host, "tcp", "127.0.0.1", 8443, timeout=1) == ""
        # a neighbour on the bridge through the host port (hairpin, masqueraded)
        assert ask(b, "tcp", "10.77.0.1", 8080) == "tcp 80 from ::ffff:10.77.0.1"
    finally:
        for s in servers:
            s.kill()
            s.wait()
    delete(net, a, conf, cid="a")
    delete(net, b, cid="b")
    assert ask(net.host, "tcp", "10.77.0.1", 8080) == ""


# containerd 1.6 (go-cni, structs without JSON tags) spells the keys as Go fields
GO_MAPS = [{"HostPort": 8080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""},
           {"HostPort": 5353, "ContainerPort": 53, "Protocol": "udp", "HostIP": ""}]


def test_port_mappings_in_containerds_spelling(net):
    """{"HostPort", "ContainerPort", "Protocol", "HostIP"}: read as the reference portmap
    reads them (Go's JSON decoding matches keys ignoring case), ADD maps, DEL unmaps."""
    conf = net.conf(capabilities={"portMappings": True}, runtimeConfig={"portMappings": GO_MAPS})
    a = net.container()
    add(net, a, conf, cid="a")
    servers = [serve(a, "tcp", 80), serve(a, "udp", 53)]
    try:
        assert ask(net.host, "tcp", "10.77.0.1", 8080) == "tcp 80 from ::ffff:10.77.0.1"
        assert ask(net.host, "udp", "127.0.0.1", 5353) == "udp 53 from ::ffff:10.77.0.1"
    finally:
        for p in servers:
            p.kill()
            p.wait()
    delete(net, a, conf, cid="a")
    assert ask(net.host, "tcp", "10.77.0.1", 8080, timeout=1) == ""


@pytest.mark.parametrize("runtime_config", [
    {"portMappings": [{"hostPort": None, "containerPort": 80}]},
    {"portMappings": "all of them"},
    "not an object",
    {},
], ids=["bad-port", "not-a-list", "not-an-object", "none"])
@pytest.mark.parametrize("record", [True, False], ids=["with-record", "record-lost"])
def test_del_succeeds_whatever_runtime_config_says(net, runtime_config, record):
    """The CNI spec asks DEL to release what the container holds and succeed; a runtime
    whose runtimeConfig we cannot read (or that sends none on DEL) must still be able to
    remove its pod. The attachment's rules go by its id, also when its record was lost."""
    maps = [{"hostPort": 8080, "containerPort": 80}]
    conf = net.conf(capabilities={"portMappings": True}, runtimeConfig={"portMappings": maps})
    a = net.container()
    add(net, a, conf, cid="a")
    assert net.host.nft_rules() != []
    if not record:
        os.unlink(os.path.join(net.state, "attachments", "testnet", "a:eth0.json"))
    bad = net.conf(runtimeConfig=runtime_config)
    if runtime_config != {}:
        rc, out = call(EXE, "ADD", bad, net.host, cid="b", netns=net.container().path)
        assert rc == 1 and "runtimeConfig" in out["msg"], out  # ADD still refuses it
    delete(net, a, bad, cid="a")  # the fixture checks: no veth, rule or address left
    assert "eth0" not in a.links()


def test_fifty_concurrent_adds_get_distinct_addresses(net):
    conf = net.conf(ipMasq=False, ipam={"type": "host-local", "subnet": "10.78.0.0/24",
                                        "routes": [{"dst": "0.0.0.0/0"}]})
    nss = [net.container() for _ in range(50)]
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(lambda i: call(EXE, "ADD", conf, net.host, cid=f"c{i}",
                                                netns=nss[i].path), range(50)))
    assert [rc for rc, _ in results] == [0] * 50, [out for rc, out in results if rc]
    addrs = [out["ips"][0]["address"] for _, out in results]
    assert len(set(addrs)) == 50
    assert set(addrs) == {f"10.78.0.{i}/24" for i in range(2, 52)}
    pool_dir = os.path.join(net.state, "networks", "testnet")
    assert len([f for f in os.listdir(pool_dir) if f.startswith("10.")]) == 50
    assert len(veths(net.host)) == 50
    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        dels = list(pool.map(lambda i: call(EXE, "DEL", conf, net.host, cid=f"c{i}",
                                             netns=nss[i].path), range(50)))
    assert [rc for rc, _ in dels] == [0] * 50, dels
    assert [f for f in os.listdir(pool_dir) if f.startswith("10.")] == []


@pytest.mark.parametrize("case", ["unknown type", "bad subnet", "overlapping ranges",
                                  "missing CNI_NETNS", "unknown version", "not json",
                                  "missing name", "bad port", "unknown ipam"])
def test_bad_input_is_a_cni_error_and_leaves_nothing(net, case):
    ns = net.container()
    conf = net.conf()
    env = {}
    netns = ns.path
    code, words = 7, ""
    if case == "unknown type":
        conf["type"], words = "foo", "type"
    elif case == "bad subnet":
        conf["ipam"]["ranges"][0][0]["subnet"], words = "10.77.0.0/33", "ipam.ranges[0][0].subnet"
    elif case == "overlapping ranges":
        conf["ipam"]["ranges"] = [[{"subnet": "10.77.0.0/24"}, {"subnet": "10.77.0.128/25"}]]
        words = "overlaps"
    elif case == "missing CNI_NETNS":
        netns, code, words = "", 4, "CNI_NETNS"
    elif case == "unknown version":
        conf["cniVersion"], code, words = "9.9.9", 1, "cniVersion"
    elif case == "missing name":
        del conf["name"]
        words = "name"
    elif case == "bad port":
        conf["runtimeConfig"] = {"portMappings": [{"hostPort": 0, "containerPort": 80}]}
        words = "runtimeConfig.portMappings[0].hostPort"
    elif case == "unknown ipam":
        conf["ipam"]["type"], code, words = "dhcp", 2, "ipam.type"
    if case == "not json":
        import subprocess

        r = subprocess.run(["nsenter", f"--net={net.host.path}", *EXE], input="{nope",
                           capture_output=True, text=True, timeout=30,
                           env={"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "x",
                                "CNI_NETNS": ns.path, "CNI_IFNAME": "eth0"})
        import json

        rc, out, code, words = r.returncode, json.loads(r.stdout), 6, "JSON"
    else:
        rc, out = call(EXE, "ADD", conf, net.host, cid="bad", netns=netns, env=env)
    assert rc == 1
    assert out["code"] == code and words in out["msg"], out
    assert set(out) <= {"cniVersion", "code", "msg", "details"}
    assert net.bridge not in net.host.links(), "a bridge was made for a bad configuration"
    assert "eth0" not in ns.links()
    assert not os.path.exists(net.state) or allocation_files(net.state) == []


def test_exhaustion_is_a_clear_error_and_leaves_nothing(net):
    # a /29: .1 the gateway, .7 broadcast, rangeStart .5 → .5 and .6 only
    conf = net.conf(ipam={"type": "host-local", "subnet": "10.79.0.0/29",
                          "rangeStart": "10.79.0.5"})
    nss = [net.container() for _ in range(3)]
    assert add(net, nss[0], conf, cid="x0")["ips"][0]["address"] == "10.79.0.5/29"
    assert add(net, nss[1], conf, cid="x1")["ips"][0]["address"] == "10.79.0.6/29"
    rc, out = call(EXE, "ADD", conf, net.host, cid="x2", netns=nss[2].path)
    assert rc == 1 and "no IP addresses available" in out["msg"], out
    assert "eth0" not in nss[2].links()
    assert len(veths(net.host)) == 2
    # STATUS says so too (CNI 1.1)
    rc, out = call(EXE, "STATUS", dict(conf, cniVersion="1.1.0"), net.host)
    assert rc == 1 and out["code"] == 50, out
    # the cursor: after x0 goes, the next ADD takes .5 again only because it wrapped
    delete(net, nss[0], conf, cid="x0")
    assert add(net, nss[2], conf, cid="x2")["ips"][0]["address"] == "10.79.0.5/29"
    for i in (1, 2):
        delete(net, nss[i], conf, cid=f"x{i}")
    rc, out = call(EXE, "STATUS", dict(conf, cniVersion="1.1.0"), net.host)
    assert (rc, out) == (0, None)


def test_check_finds_drift(net):
    conf = net.conf(runtimeConfig={"portMappings": [{"hostPort": 8080, "containerPort": 80}]})
    a = net.container()
    res = add(net, a, conf, cid="a")
    checked = dict(conf, prevResult=res)
    assert call(EXE, "CHECK", checked, net.host, cid="a", netns=a.path) == (0, None)
    # an address removed in the container
    a.sh("ip", "addr", "del", "fd77::2/64", "dev", "eth0")
    rc, out = call(EXE, "CHECK", checked, net.host, cid="a", netns=a.path)
    assert rc == 1 and "fd77::2" in out["msg"], out
    a.sh("ip", "addr", "add", "fd77::2/64", "dev", "eth0", "nodad")
    assert call(EXE, "CHECK", checked, net.host, cid="a", netns=a.path)[0] == 0
    # the host end taken off the bridge
    veth = res["interfaces"][1]["name"]
    net.host.sh("ip", "link", "set", veth, "nomaster")
    rc, out = call(EXE, "CHECK", checked, net.host, cid="a", netns=a.path)
    assert rc == 1 and veth in out["msg"], out
    net.host.sh("ip", "link", "set", veth, "master", net.bridge)
    # the rules gone
    chain = [l.split()[1] for l in net.host.nft_rules() if l.startswith("chain ")
             and l.split()[1].endswith("-ports")][0]
    net.host.sh("nft", "flush", "chain", "inet", "runner-cni", chain)
    rc, out = call(EXE, "CHECK", checked, net.host, cid="a", netns=a.path)
    assert rc == 1 and "dnat ip to 10.77.0.2:80" in out["msg"], out
    # the default route gone
    a.sh("ip", "route", "del", "default")
    rc, out = call(EXE, "CHECK", dict(conf, ipMasq=False, runtimeConfig={}, prevResult=res),
                   net.host, cid="a", netns=a.path)
    assert rc == 1 and "0.0.0.0/0" in out["msg"], out
    delete(net, a, conf, cid="a")


def test_bridge_options_mtu_hairpin_promisc_and_layer2(net):
    a, b = net.container(), net.container()
    conf = net.conf(mtu=1400, hairpinMode=True, ipMasq=False)
    res = add(net, a, conf, cid="a")
    links = net.host.links()
    veth = links[res["interfaces"][1]["name"]]
    assert links[net.bridge]["mtu"] == 1400 and veth["mtu"] == 1400
    assert a.links()["eth0"]["mtu"] == 1400
    assert veth["linkinfo"]["info_slave_data"]["hairpin"] is True
    # the bridge keeps its MAC as ports come and go (it is set, not inherited)
    mac = links[net.bridge]["address"]
    delete(net, a, conf, cid="a")
    assert net.host.links()[net.bridge]["address"] == mac
    # promiscMode; isGateway false: no gateway address on the bridge, no default route
    conf = net.conf(promiscMode=True, isGateway=False, ipMasq=False,
                    ipam={"type": "host-local", "subnet": "10.80.0.0/24"})
    res = add(net, b, conf, cid="b")
    assert "PROMISC" in net.host.links()[net.bridge]["flags"]
    assert "10.80.0.1/24" not in net.host.addrs(net.bridge)
    assert [r for r in b.routes() if r[0] == "default"] == []
    assert res["ips"][0]["gateway"] == "10.80.0.1"  # host-local's, as the reference reports it
    # hairpin and promisc together: refused
    rc, out = call(EXE, "ADD", dict(conf, hairpinMode=True), net.host, cid="z",
                   netns=a.path)
    assert rc == 1 and out["code"] == 7 and "hairpinMode" in out["msg"]
    delete(net, b, conf, cid="b")


def test_version_gc_and_old_result_versions(net):
    rc, out = call(EXE, "VERSION", {"cniVersion": "1.0.0"}, net.host)
    assert rc == 0 and "1.0.0" in out["supportedVersions"] and "1.1.0" in out["supportedVersions"]
    a, b = net.container(), net.container()
    # a 0.4.0 result carries the IP version
    conf = net.conf(cniVersion="0.4.0", ipMasq=False)
    res = add(net, a, conf, cid="a")
    assert res["cniVersion"] == "0.4.0" and [i["version"] for i in res["ips"]] == ["4", "6"]
    add(net, b, conf, cid="b")
    # GC (CNI 1.1): b is the only valid attachment; a's address, veth and record go
    gc = dict(conf, cniVersion="1.1.0", **{"cni.dev/valid-attachments": [
        {"containerID": "b", "ifname": "eth0"}]})
    assert call(EXE, "GC", gc, net.host) == (0, None)
    assert len(veths(net.host)) == 1
    assert len(allocation_files(net.state)) == 3  # b's two addresses and its record
    delete(net, b, conf, cid="b")


def test_netns_given_as_a_bind_mount(net, tmp_path):
    """CNI_NETNS may be a bind mount of a namespace (`ip netns`, podman): the plugin asks
    the namespace its type, since the fd's link names the path then."""
    ns = net.container()
    path = tmp_path / "netns-file"
    path.touch()
    import subprocess

    subprocess.run(["mount", "--bind", ns.path, str(path)], check=True)
    try:
        res = ok(EXE, "ADD", net.conf(), net.host, cid="b", netns=str(path))
        assert res["interfaces"][2]["sandbox"] == str(path)
        assert ns.addrs("eth0") == ["10.77.0.2/24", "fd77::2/64"]
        ok(EXE, "DEL", net.conf(), net.host, cid="b", netns=str(path))
    finally:
        subprocess.run(["umount", str(path)], check=True)
    # a file that is no namespace: the spec's "container unknown"
    rc, out = call(EXE, "ADD", net.conf(), net.host, cid="b", netns=str(path))
    assert rc == 1 and out["code"] == 3 and "not a network namespace" in out["details"], out


def test_ip_masquerade_to_a_network_beyond_the_host(net):
    """ipMasq: what leaves the container's subnet goes out with the host's address. The
    "outside" namespace has no route back to the containers: only the masquerade lets an
    answer come back; without ipMasq none does."""
    outside = net.container()
    net.host.sh("ip", "link", "add", "out0", "type", "veth", "peer", "name", "out1", "netns",
                str(outside.proc.pid))
    try:
        net.host.sh("ip", "addr", "add", "192.168.77.1/24", "dev", "out0")
        net.host.sh("ip", "addr", "add", "fd78::1/64", "dev", "out0", "nodad")
        net.host.sh("ip", "link", "set", "out0", "up")
        outside.sh("ip", "addr", "add", "192.168.77.2/24", "dev", "out1")
        outside.sh("ip", "addr", "add", "fd78::2/64", "dev", "out1", "nodad")
        outside.sh("ip", "link", "set", "out1", "up")
        net.host.sh("sysctl", "-q", "-w", "net.ipv6.conf.all.forwarding=1")
        server = serve(outside, "tcp", 7000)
        a, b = net.container(), net.container()
        add(net, a, cid="a")
        add(net, b, net.conf(ipMasq=False), cid="b")
        try:
            assert ask(a, "tcp", "192.168.77.2", 7000) == "tcp 7000 from ::ffff:192.168.77.1"
            assert ask(a, "tcp", "fd78::2", 7000) == "tcp 7000 from fd78::1"
            assert ask(b, "tcp", "192.168.77.2", 7000, timeout=1) == ""
            # inside the subnet nothing is rewritten
            assert a.ping("10.77.0.3")
        finally:
            server.kill()
            server.wait()
        delete(net, a, cid="a")
        delete(net, b, net.conf(ipMasq=False), cid="b")
    finally:
        net.host.sh("ip", "link", "del", "out0", check=False)


def test_a_host_port_belongs_to_one_container(net):
    """A second container asking for a mapped host port fails whole and leaves nothing; a
    late DEL of the first (its record restored, as after a crash) leaves the second's
    mapping alone."""
    maps = {"portMappings": [{"hostPort": 8080, "containerPort": 80}]}
    conf = net.conf(runtimeConfig=maps)
    a, b = net.container(), net.container()
    add(net, a, conf, cid="a")
    rc, out = call(EXE, "ADD", conf, net.host, cid="b", netns=b.path)
    assert rc == 1 and "mapped to another container" in out["msg"], out
    assert "eth0" not in b.links() and len(veths(net.host)) == 1
    rec = os.path.join(net.state, "attachments", "testnet", "a:eth0.json")
    with open(rec) as f:
        saved = f.read()
    delete(net, a, conf, cid="a")
    add(net, b, conf, cid="b")
    with open(rec, "w") as f:
        f.write(saved)
    delete(net, None, conf, cid="a")
    server = serve(b, "tcp", 80)
    try:
        assert ask(net.host, "tcp", "10.77.0.1", 8080) == "tcp 80 from ::ffff:10.77.0.1"
    finally:
        server.kill()
        server.wait()
    delete(net, b, conf, cid="b")
