"""Networking from the runner's side: a bundle whose hooks (createRuntime → runner-cni hook
add, poststop → hook del) attach it to a named network; `runner network` create, ls,
inspect, hooks, rm; the Python API (libcontainer.network). The runner runs inside a "host"
namespace made here, where the bridge goes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from cni_helpers import Netns, allocation_files, ask, veths
from conftest import REPO, RUNNER, need_root


@pytest.fixture
def host(tmp_path):
    need_root()
    ns = Netns()
    ns.sh("ip", "link", "set", "lo", "up")
    d = {"ns": ns, "nets": str(tmp_path / "nets"), "state": str(tmp_path / "cni-state")}
    try:
        yield d
        assert veths(ns) == [], "veths left"
        assert ns.nft_rules() == []
        assert allocation_files(d["state"]) == []
    finally:
        ns.close()


def net_cli(host, *args, check=True) -> subprocess.CompletedProcess:
    """`runner network …` in the test's host namespace (rm looks for the bridge there)."""
    return host["ns"].sh(*RUNNER, "network", *args, "--config-dir", host["nets"], check=check,
                         cwd=REPO)


def test_bundle_with_network_hooks_comes_up_with_an_address(bundle, host):
    net_cli(host, "create", "web", "--subnet", "10.93.0.0/24", "--subnet6", "fd93::/64",
            "--state-dir", host["state"])
    hooks = json.loads(net_cli(host, "hooks", "web", "-p", "8080:80").stdout)
    assert hooks["createRuntime"][0]["args"][:4] == ["runner-cni", "hook", "add", "web"]
    bundle.config["hooks"] = hooks
    # the container: its addresses, then a one-shot server behind the port mapping
    bundle.sh("ip -o addr show eth0; ip route; echo ready; "
              "nc -l -p 80 -e echo from-container")
    bundle.write()
    cid = "t-net-" + os.urandom(4).hex()
    bundle.last_id = cid
    p = host["ns"].popen(*RUNNER, "--root", bundle.root, "run", "--bundle", bundle.path, cid,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        lines = []
        for line in p.stdout:
            lines.append(line)
            if line.strip() == "ready":
                break
        out = "".join(lines)
        assert "inet 10.93.0.2/24" in out and "inet6 fd93::2/64" in out, out + p.stderr.read()
        assert "default via 10.93.0.1 dev eth0" in out
        # attached: the record says so
        info = json.loads(net_cli(host, "inspect", "web").stdout)[0]
        assert [c["containerID"] for c in info["containers"]] == [cid]
        assert info["containers"][0]["ips"] == ["10.93.0.2/24", "fd93::2/64"]
        # the port mapping, from the host
        for _ in range(50):
            got = ask(host["ns"], "tcp", "10.93.0.1", 8080)
            if got:
                break
            time.sleep(0.1)
        assert got == "from-container"
        assert p.wait(timeout=30) == 0, p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    # poststop released everything (the host fixture checks veths, rules, allocations)
    assert json.loads(net_cli(host, "inspect", "web").stdout)[0]["containers"] == []
    assert "rn-web" in host["ns"].links()
    net_cli(host, "rm", "web")
    # rm takes the idle bridge, the empty pool directory and the unused nft table with it
    assert "rn-web" not in host["ns"].links()
    assert "runner-cni" not in host["ns"].sh("nft", "list", "tables").stdout
    assert not os.path.exists(os.path.join(host["state"], "networks", "web"))


def test_network_cli(host):
    r = net_cli(host, "create", "a", "--subnet", "10.94.0.0/33", check=False)
    assert r.returncode == 1 and "--subnet" in r.stderr
    assert not os.path.exists(os.path.join(host["nets"], "a.conflist"))
    net_cli(host, "create", "a", "--state-dir", host["state"])
    r = net_cli(host, "create", "a", check=False)
    assert r.returncode == 1 and "exists" in r.stderr
    r = net_cli(host, "create", "b", "--subnet", "10.89.0.0/16", check=False)
    assert r.returncode == 1 and "overlaps" in r.stderr
    net_cli(host, "create", "b", "--subnet", "10.95.0.0/24", "--mtu", "1400")
    assert net_cli(host, "ls", "-q").stdout.split() == ["a", "b"]
    rows = json.loads(net_cli(host, "ls", "--format", "json").stdout)
    assert [(r["name"], r["subnets"]) for r in rows] == [("a", ["10.89.0.0/24"]),
                                                           ("b", ["10.95.0.0/24"])]
    table = net_cli(host, "ls").stdout.splitlines()
    assert table[0].split() == ["NAME", "BRIDGE", "SUBNETS", "CONTAINERS"]
    assert table[1].split() == ["a", "rn-a", "10.89.0.0/24", "0"]
    conf = json.loads(net_cli(host, "inspect", "b").stdout)[0]
    assert conf["plugins"][0]["mtu"] == 1400 and conf["plugins"][0]["type"] == "runner-cni"
    r = net_cli(host, "inspect", "nosuch", check=False)
    assert r.returncode == 1 and "no network 'nosuch'" in r.stderr
    default_state = os.path.exists("/var/lib/runner-cni")
    net_cli(host, "rm", "a", "b")
    assert net_cli(host, "ls", "-q").stdout == ""
    # b has no stateDir: its rm looked in the default one, and made nothing there
    assert os.path.exists("/var/lib/runner-cni") == default_state


def test_python_api_attach_check_detach(host):
    """libcontainer.network in this process (the test's own namespace is not touched: the
    API runs in a child that entered the host namespace)."""
    net_cli(host, "create", "api", "--subnet", "10.96.0.0/24", "--state-dir", host["state"])
    c = Netns()
    try:
        script = f"""
import json, sys
sys.path.insert(0, {REPO!r})
from libcontainer import network
r = network.attach({c.path!r}, "api1", "api", config_dir={host['nets']!r},
                   port_mappings=[{{"hostPort": 9000, "containerPort": 90}}])
print(json.dumps(r))
network.check({c.path!r}, "api1", "api", r, config_dir={host['nets']!r},
              port_mappings=[{{"hostPort": 9000, "containerPort": 90}}])
try:
    network.attach({c.path!r}, "api1", "api", config_dir={host['nets']!r})
except network.CNIError as e:
    print("again:", e.code, e.msg)
"""
        r = host["ns"].sh(sys.executable, "-c", script)
        res, again = r.stdout.splitlines()
        res = json.loads(res)
        assert res["ips"][0]["address"] == "10.96.0.2/24"
        assert c.addrs("eth0") == ["10.96.0.2/24"]
        assert again.startswith("again: 999") and "already exists" in again
        assert host["ns"].nft_rules()
        detach = (f"import sys; sys.path.insert(0, {REPO!r}); from libcontainer import network; "
                  f"network.detach('api1', 'api', config_dir={host['nets']!r}); "
                  f"network.detach('api1', 'api', config_dir={host['nets']!r})")
        host["ns"].sh(sys.executable, "-c", detach)
        # no CNI_NETNS: the veth was found from the record, and the container's end went too
        assert "eth0" not in c.links()
    finally:
        c.close()


def test_a_failed_create_still_runs_poststop_and_releases_the_network(bundle, host):
    """A createRuntime hook after the network's fails: the runner goes on to delete, runs
    poststop (runc does too), and the attachment is released."""
    net_cli(host, "create", "fail", "--subnet", "10.98.0.0/24", "--state-dir", host["state"])
    hooks = json.loads(net_cli(host, "hooks", "fail").stdout)
    hooks["createRuntime"].append({"path": "/bin/false"})
    bundle.config["hooks"] = hooks
    bundle.set_args("true")
    bundle.write()
    cid = "t-netfail-" + os.urandom(4).hex()
    bundle.last_id = cid
    r = host["ns"].sh(*RUNNER, "--root", bundle.root, "run", "--bundle", bundle.path, cid,
                      check=False, cwd=REPO)
    assert r.returncode != 0 and "/bin/false" in r.stderr, r.stderr
    assert json.loads(net_cli(host, "inspect", "fail").stdout)[0]["containers"] == []
    # (the host fixture checks that no veth, rule or allocation is left)
