"""linux.netDevices (OCI 1.3): host network devices moved into the container's network
namespace, renamed, with their permanent global addresses, and up. The devices are veth
pairs this test makes (this kernel has no dummy driver); traffic goes only between the
container and a network namespace the test made itself."""
from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pytest
from conftest import assert_nothing_left, make_reachable


def ip(*args, netns_pid: int | None = None, check: bool = True) -> str:
    cmd = ["ip", *args]
    if netns_pid:
        cmd = ["nsenter", "-t", str(netns_pid), "-n", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd}: {r.stderr}")
    return r.stdout


def host_links() -> set:
    return set(os.listdir("/sys/class/net"))


@pytest.fixture
def veth():
    """make(): a new veth pair on the host → (end, peer); whatever is left is removed."""
    made = []
    before = host_links()

    def make() -> tuple:
        tag = uuid.uuid4().hex[:6]
        end, peer = f"rn{tag}a", f"rn{tag}b"
        ip("link", "add", end, "type", "veth", "peer", "name", peer)
        made.append(end)
        return end, peer

    yield make
    for name in made:
        ip("link", "del", name, check=False)
    # a moved end dies with the container's namespace, and its peer with it, but the
    # kernel tears namespaces down asynchronously: give it a moment
    for _ in range(200):
        if host_links() <= before:
            break
        time.sleep(0.01)
    assert host_links() <= before, "the test left network devices on the host"


@pytest.fixture
def netns_proc():
    """A process in a network namespace of its own (the test's "other host")."""
    p = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    for _ in range(100):
        if os.readlink(f"/proc/{p.pid}/ns/net") != os.readlink("/proc/self/ns/net"):
            break
        time.sleep(0.01)
    yield p.pid
    p.send_signal(signal.SIGKILL)
    p.wait()


def test_moved_renamed_with_permanent_global_addresses_and_up(bundle, veth, netns_proc):
    end, peer = veth()
    ip("addr", "add", "10.231.7.2/24", "dev", end)
    ip("addr", "add", "fd00:231::2/64", "dev", end, "nodad")
    ip("addr", "add", "10.231.8.2/24", "dev", end, "valid_lft", "100", "preferred_lft", "100")
    ip("addr", "add", "10.231.9.2/24", "dev", end, "scope", "link")
    # the peer goes to the test's own namespace: something to talk to
    ip("link", "set", peer, "netns", str(netns_proc))
    ip("addr", "add", "10.231.7.1/24", "dev", peer, netns_pid=netns_proc)
    ip("link", "set", peer, "up", netns_pid=netns_proc)
    bundle.linux["netDevices"] = {end: {"name": "ctr0"}}
    for kind in ("bounding", "effective", "permitted"):
        bundle.process["capabilities"][kind].append("CAP_NET_RAW")  # for ping
    bundle.sh("ip -o link show ctr0; ip -o addr show ctr0; ping -c 1 -W 5 10.231.7.1 >/dev/null "
              "&& echo reached; ls /sys/class/net")
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    out = r.stdout
    link = next(line for line in out.splitlines() if "ctr0" in line and "link/" in line)
    assert ",UP" in link or "<UP" in link
    assert "inet 10.231.7.2/24" in out and "inet6 fd00:231::2/64" in out
    assert "10.231.8.2" not in out  # not permanent (it has a lifetime)
    assert "10.231.9.2" not in out  # not of global scope
    v6 = next(line for line in out.splitlines() if "fd00:231::2" in line)
    assert "tentative" not in v6  # nodad was kept
    assert "reached" in out, r.stderr
    assert sorted(out.split("reached")[1].split()) == ["ctr0", "lo"]
    assert end not in host_links()  # moved, and destroyed with the namespace (a veth)
    assert_nothing_left(bundle)


def test_default_name_and_templates(bundle, veth):
    a, _ = veth()
    b, _ = veth()
    c, _ = veth()
    bundle.linux["netDevices"] = {a: {}, b: {"name": "eth%d"}, c: {"name": "eth%d"}}
    bundle.sh("ls /sys/class/net")
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == sorted([a, "eth0", "eth1", "lo"])


def _fails(bundle, field: str, words: str):
    bundle.sh("echo started")
    r = bundle.run()
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert field in r.stderr and words in r.stderr, r.stderr
    assert "started" not in r.stdout
    assert_nothing_left(bundle)


def test_missing_device_is_an_error(bundle):
    bundle.linux["netDevices"] = {"rnnosuch0": {"name": "eth0"}}
    _fails(bundle, "linux.netDevices.rnnosuch0", "no network device")


def test_needs_a_network_namespace(bundle, veth):
    end, _ = veth()
    bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "network"]
    bundle.linux["netDevices"] = {end: {}}
    _fails(bundle, "linux.netDevices", "needs a network namespace")
    assert end in host_links()


@pytest.mark.parametrize("name,words", [("a/b", "not a valid network interface name"),
                                        ("x" * 16, "not a valid network interface name"),
                                        ("eth%s", "template"), (7, "must be a string")])
def test_bad_names(bundle, veth, name, words):
    end, _ = veth()
    bundle.linux["netDevices"] = {end: {"name": name}}
    _fails(bundle, f"linux.netDevices.{end}.name", words)
    assert end in host_links()


def test_name_taken_in_a_joined_namespace_moves_nothing(bundle, veth, netns_proc):
    """The spec's MUST: a name that exists inside is an error (unless a %d template)."""
    ip("link", "add", "taken0", "type", "veth", "peer", "name", "taken1", netns_pid=netns_proc)
    first, _ = veth()
    second, _ = veth()
    bundle.linux["namespaces"] = [n if n["type"] != "network" else
                                  {"type": "network", "path": f"/proc/{netns_proc}/ns/net"}
                                  for n in bundle.linux["namespaces"]]
    # the first one would fit: it must not be moved either
    bundle.linux["netDevices"] = {first: {"name": "free0"}, second: {"name": "taken0"}}
    _fails(bundle, f"linux.netDevices.{second}.name", "already exists")
    assert {first, second} <= host_links()
    inside = ip("-o", "link", netns_pid=netns_proc)
    assert "free0" not in inside and "taken0" in inside
    # with a template, it goes in under the next free number
    bundle.linux["netDevices"] = {second: {"name": "taken%d"}}
    bundle.sh("true")
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    assert "taken2" in ip("-o", "link", netns_pid=netns_proc)
    assert second not in host_links()


def test_into_a_user_namespace_owned_network_namespace(bundle, veth):
    """The runner (host root) moves the device into a namespace owned by the container's
    user namespace, and sets it up there."""
    end, _ = veth()
    ip("addr", "add", "10.231.7.2/24", "dev", end)
    make_reachable(bundle.path)
    bundle.linux["namespaces"].append({"type": "user"})
    bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    # sysfs and cgroup mounts need more than a user namespace's root has here
    bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                               if m["type"] not in ("sysfs", "cgroup")]
    bundle.linux["netDevices"] = {end: {"name": "ctr0"}}
    bundle.sh("cat /proc/self/uid_map; ip -o addr show ctr0; ip -o link show ctr0")
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:3] == ["0", "100000", "65536"]
    assert "inet 10.231.7.2/24" in r.stdout and ",UP" in r.stdout
