"""Namespaces the runtime's peers handle and the OCI validation suite checks (issue 11,
point 4): a config with no linux.namespaces at all (everything inherited from the
runtime, the mount namespace too), hostname in a uts namespace joined by path, and a
namespace joined by path next to a new user namespace with a full mapping."""
from __future__ import annotations

import os
import socket
import subprocess

import pytest
from conftest import assert_nothing_left, make_reachable

FULL = [{"containerID": 0, "hostID": 0, "size": 4294967295}]


@pytest.fixture
def uts_holder():
    """A process in a uts namespace of its own: the namespace to join by path."""
    p = subprocess.Popen(["unshare", "--uts", "sleep", "60"])
    try:
        path = f"/proc/{p.pid}/ns/uts"
        for _ in range(200):  # until unshare has exec'd sleep in the new namespace
            if os.readlink(path) != os.readlink("/proc/self/ns/uts"):
                break
            subprocess.run(["sleep", "0.01"])
        yield p.pid, path
    finally:
        p.kill()
        p.wait()


def test_hostname_is_set_in_a_uts_namespace_joined_by_path(bundle, uts_holder):
    pid, path = uts_holder
    nss = bundle.linux["namespaces"]
    nss[:] = [n for n in nss if n["type"] != "uts"] + [{"type": "uts", "path": path}]
    bundle.config["hostname"] = "joined-uts"
    bundle.config["domainname"] = "joined.example"
    r = bundle.sh("hostname; cat /proc/sys/kernel/domainname; readlink /proc/self/ns/uts").run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["joined-uts", "joined.example", os.readlink(path)]
    seen = subprocess.run(["nsenter", f"--uts={path}", "hostname"], capture_output=True,
                          text=True, check=True).stdout
    assert seen == "joined-uts\n"
    assert socket.gethostname() != "joined-uts"  # the runtime's own is untouched
    assert_nothing_left(bundle)


def test_hostname_without_any_uts_namespace_is_refused(bundle):
    nss = bundle.linux["namespaces"]
    nss[:] = [n for n in nss if n["type"] != "uts"]
    bundle.config["hostname"] = "nope"
    r = bundle.run()
    assert r.returncode == 1 and r.stderr.startswith("runner: hostname: needs a uts namespace")
    assert_nothing_left(bundle)


def test_join_by_path_with_a_new_user_namespace_of_full_mapping(bundle):
    # the runtime's own network namespace, joined by path, in a new user namespace that
    # maps every id: the join happens with the runtime's privileges, before the userns
    make_reachable(bundle.path)
    host_net = f"/proc/{os.getpid()}/ns/net"
    nss = bundle.linux["namespaces"]
    nss[:] = [n for n in nss if n["type"] != "network"]
    nss += [{"type": "network", "path": host_net}, {"type": "user"}]
    bundle.linux["uidMappings"] = bundle.linux["gidMappings"] = FULL
    r = bundle.sh("readlink /proc/self/ns/net; readlink /proc/self/ns/user; "
                  "cat /proc/self/uid_map").run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == os.readlink(host_net)
    assert lines[1] != os.readlink("/proc/self/ns/user")
    assert lines[2].split() == ["0", "0", "4294967295"]
    assert_nothing_left(bundle)


def test_pid_1s_network_namespace_by_path(bundle):
    """/proc/1/ns/net, the case engines write: joined when this host lets us open it, and
    otherwise an error that says why (not that an existing path "does not exist")."""
    nss = bundle.linux["namespaces"]
    nss[:] = [n for n in nss if n["type"] != "network"] + [
        {"type": "network", "path": "/proc/1/ns/net"}]
    r = bundle.sh("readlink /proc/self/ns/net").run()
    try:
        want = os.readlink("/proc/1/ns/net")
    except PermissionError:
        # pid 1 is beyond this (sandboxed) host's reach, for runc and crun too
        assert r.returncode == 1
        assert r.stderr == (f"runner: linux.namespaces[{len(nss) - 1}].path: /proc/1/ns/net "
                            "cannot be opened: Permission denied\n"), r.stderr
    else:
        assert r.returncode == 0 and r.stdout == want + "\n", r.stderr
    assert_nothing_left(bundle)


# ---- no linux.namespaces at all: everything is the runtime's, the mount namespace too ------

KINDS = ("mnt", "net", "pid", "ipc", "uts", "cgroup", "user")


def no_namespaces(bundle):
    bundle.linux.pop("namespaces", None)
    bundle.config.pop("hostname", None)
    with open(os.path.join(bundle.rootfs, "marker"), "w") as f:
        f.write("in the rootfs\n")
    return bundle


def root_line() -> str:
    """mountinfo of the runtime's "/": its propagation must never change."""
    with open("/proc/self/mountinfo") as f:
        return next(l for l in f if l.split()[4] == "/")


def test_no_namespaces_at_all(bundle):
    no_namespaces(bundle)
    before = root_line()
    r = bundle.sh("for k in " + " ".join(KINDS) + "; do readlink /proc/self/ns/$k; done; "
                  "cat /marker; grep -c . /proc/self/mountinfo >/dev/null && echo mounts").run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:len(KINDS)] == [os.readlink(f"/proc/self/ns/{k}") for k in KINDS]
    assert lines[len(KINDS):] == ["in the rootfs", "mounts"]  # chrooted, /proc mounted
    assert root_line() == before
    # the rootfs bind and the mounts below it (proc, dev, sys…) are gone with the container
    assert_nothing_left(bundle)


def test_no_namespaces_exec_is_chrooted_and_delete_detaches(bundle):
    import secprobe

    no_namespaces(bundle)
    cid = secprobe.start_detached(bundle.sh("sleep 30"))
    try:
        with open("/proc/self/mountinfo") as f:
            assert any(l.split()[4].startswith(bundle.rootfs) for l in f)  # the runtime's
        r = bundle.runner("exec", cid, "sh", "-c", "cat /marker; readlink /proc/self/ns/mnt")
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["in the rootfs", os.readlink("/proc/self/ns/mnt")]
    finally:
        bundle.runner("delete", "--force", cid)
    assert_nothing_left(bundle)


def test_no_namespaces_failed_create_leaves_no_mounts(bundle):
    no_namespaces(bundle).set_args("/no/such/program")
    r = bundle.run()
    assert r.returncode == 127, r.stderr
    assert_nothing_left(bundle)
