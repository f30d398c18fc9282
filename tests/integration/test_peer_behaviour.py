"""Behaviours found by running a peer runtime's own test suite against the runner, each
checked here on a container that runs (or is refused, leaving nothing)."""
import os
import time

import pytest
from conftest import assert_nothing_left, new_id
from test_exec import _console_server, _recv_fd
from test_lifecycle import detached, state, wait_status


@pytest.mark.parametrize("uts", [True, False])
def test_sysctl_kernel_hostname_is_refused(bundle, uts):
    # runc and crun refuse it even with a uts namespace: the hostname field says it
    if not uts:
        bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "uts"]
    bundle.linux["sysctl"] = {"kernel.hostname": "foo"}
    r = bundle.run()
    assert r.returncode == 1
    assert r.stderr.startswith("runner: linux.sysctl.kernel.hostname:"), r.stderr
    assert "hostname" in r.stderr.split(":", 2)[2]
    assert_nothing_left(bundle)


def test_sysctl_kernel_domainname_in_own_uts_namespace(bundle):
    bundle.linux["sysctl"] = {"kernel.domainname": "peerdomain"}
    r = bundle.sh("cat /proc/sys/kernel/domainname").run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "peerdomain"
    with open("/proc/sys/kernel/domainname") as f:
        assert f.read().strip() != "peerdomain"


def test_exec_tty_into_a_container_with_a_console(bundle, tmp_path):
    """`exec -t` gives the new process a pty of its own and leaves /dev/console (the init's,
    a bind mount) alone: replacing it failed with EBUSY (runc's bats tty.bats)."""
    bundle.process["terminal"] = True
    bundle.set_args("sleep", "30")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    sock_path = str(tmp_path / "c.sock")
    srv = _console_server(sock_path)
    try:
        r = bundle.runner("run", "-d", "--bundle", bundle.path, "--console-socket", sock_path, cid)
        assert r.returncode == 0, r.stderr
        _, master = _recv_fd(srv)
        r = bundle.runner("exec", "-t", cid, "sh", "-c",
                          "readlink /proc/self/fd/0; readlink /proc/self/fd/1; "
                          "stat -c %t:%T /dev/console; stat -L -c %t:%T /proc/1/fd/0")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.replace("\r", "").split()
        assert lines[0].startswith("/dev/pts/") and lines[1] == lines[0]
        assert lines[0] != "/dev/pts/0"  # not the init's pty
        assert lines[2] == lines[3]  # /dev/console is still the init's pty
        os.close(master)
    finally:
        srv.close()
        bundle.runner("delete", "--force", cid)
    assert_nothing_left(bundle)


def test_terminal_with_a_read_only_dev(bundle):
    """/dev mounted `ro` and process.terminal: the console is still bound on /dev/console
    and /dev is read-only inside (runc's bats mounts.bats; it failed with ELOOP)."""
    for m in bundle.config["mounts"]:
        if m["destination"] == "/dev":
            m["options"] = m.get("options", []) + ["ro"]
    bundle.process["terminal"] = True
    r = bundle.sh("grep '^tmpfs /dev ' /proc/mounts; [ -t 0 ] && echo tty; "
                  "stat -c %t:%T /dev/console; stat -L -c %t:%T /proc/self/fd/0; "
                  "touch /dev/x 2>/dev/null || echo dev-ro").run(input="")
    assert r.returncode == 0, r.stderr
    out = r.stdout.replace("\r", "").splitlines()
    assert " ro," in out[0] or out[0].split()[3].startswith("ro"), out
    assert out[1:] == ["tty", out[3], out[3], "dev-ro"], out  # console = our pty
    assert_nothing_left(bundle)


def test_exec_into_a_created_container(bundle):
    """runc execs into a created container (runc's bats create.bats): its namespaces and
    rootfs are there; it stays created, and start still runs its process."""
    bundle.config["root"]["readonly"] = False
    bundle.sh("echo started > /started")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    assert detached(bundle, "create", "--bundle", bundle.path, cid).returncode == 0
    try:
        r = bundle.runner("exec", cid, "sh", "-c",
                          "hostname; stat -L -c %i /proc/self/ns/mnt; ls /started")
        assert r.returncode == 1, (r.stdout, r.stderr)  # not started: no /started yet
        init_mnt = os.stat(f"/proc/{state(bundle, cid)['pid']}/ns/mnt").st_ino
        assert r.stdout.split() == [bundle.config["hostname"], str(init_mnt)]
        assert state(bundle, cid)["status"] == "created"
        bundle.runner("start", cid, check=True)
        wait_status(bundle, cid, "stopped")
        with open(f"{bundle.path}/rootfs/started") as f:
            assert f.read() == "started\n"
    finally:
        bundle.runner("delete", "--force", cid)
    assert_nothing_left(bundle)


def test_a_frozen_cgroup_is_refused_at_once(bundle):
    """cgroupsPath naming a cgroup someone froze: refused at once naming the field, as runc
    refuses it (runc's bats cgroups.bats), not a 30 s setup timeout; ours is left as is."""
    name = f"peers-frozen-{new_id()}"
    if os.path.isdir("/sys/fs/cgroup/freezer"):
        d, freeze, thaw = f"/sys/fs/cgroup/freezer/{name}", ("freezer.state", "FROZEN"), "THAWED"
    else:
        d, freeze, thaw = f"/sys/fs/cgroup/{name}", ("cgroup.freeze", "1"), "0"
    os.mkdir(d)
    try:
        with open(os.path.join(d, freeze[0]), "w") as f:
            f.write(freeze[1])
        bundle.linux["cgroupsPath"] = "/" + name
        t0 = time.monotonic()
        r = bundle.run()
        assert r.returncode == 1
        assert r.stderr.startswith("runner: linux.cgroupsPath:") and "frozen" in r.stderr, r.stderr
        assert time.monotonic() - t0 < 20
        assert os.path.isdir(d)  # not the runner's to remove
        with open(os.path.join(d, freeze[0]), "w") as f:
            f.write(thaw)
    finally:
        os.rmdir(d)
    assert_nothing_left(bundle)


def test_an_empty_v1_cpuset_parent_is_filled(bundle):
    """A pod cgroup made by someone else with an empty cpuset (a plain mkdir on v1): the
    container still runs below it, the parent's cpus and mems filled from its own parent,
    as runc does (runc's bats update.bats); it failed with ENOSPC on joining."""
    if not os.path.exists("/sys/fs/cgroup/cpuset/cpuset.cpus"):
        pytest.skip("no v1 cpuset hierarchy: a v2 cpuset is never empty for its tasks")
    name = f"peers-pod-{new_id()}"
    pod = f"/sys/fs/cgroup/cpuset/{name}"
    os.mkdir(pod)
    try:
        bundle.linux["cgroupsPath"] = f"/{name}/ctr"
        r = bundle.sh("cat /proc/self/cgroup | grep cpuset").run()
        assert r.returncode == 0, r.stderr
        assert f":/{name}/ctr" in r.stdout or r.stdout.strip().endswith(":/"), r.stdout
        for f in ("cpuset.cpus", "cpuset.mems"):
            with open(f"{pod}/{f}") as a, open(f"/sys/fs/cgroup/cpuset/{f}") as b:
                assert a.read() == b.read()
        assert not os.path.exists(f"{pod}/ctr")
    finally:
        os.rmdir(pod)
    assert_nothing_left(bundle)
