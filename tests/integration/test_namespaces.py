"""Namespaces: each kind created (or not), joined by path, user namespaces with id maps, the
time namespace with offsets, and lo up in a new network namespace — seen from inside."""
import os
import signal
import subprocess
import time

import pytest
from conftest import assert_nothing_left, make_reachable

# config type → /proc/self/ns name
PROC_NS = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
           "cgroup": "cgroup", "time": "time", "user": "user"}
USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


def ns_links(bundle, kinds=PROC_NS) -> dict:
    """{config type: inode link} as the container's process sees its namespaces."""
    script = "; ".join(f"readlink /proc/self/ns/{PROC_NS[k]}" for k in kinds)
    r = bundle.sh(script).run()
    assert r.returncode == 0, r.stderr
    return dict(zip(kinds, r.stdout.split()))


def host_link(kind: str, pid="self") -> str:
    return os.readlink(f"/proc/{pid}/ns/{PROC_NS[kind]}")


def use_userns(bundle, mapping=USERNS_MAP):
    make_reachable(bundle.path)
    bundle.linux["namespaces"].append({"type": "user"})
    bundle.linux["uidMappings"] = [dict(m) for m in mapping]
    bundle.linux["gidMappings"] = [dict(m) for m in mapping]


@pytest.mark.parametrize("kind", ["pid", "network", "ipc", "uts", "cgroup", "time", "user"])
def test_a_listed_namespace_is_new_and_an_unlisted_one_is_the_hosts(bundle, kind):
    nss = bundle.linux["namespaces"]
    nss[:] = [n for n in nss if n["type"] != kind]
    if kind == "uts":
        bundle.config.pop("hostname")
    without = ns_links(bundle, [kind])[kind]
    assert without == host_link(kind)
    if kind == "user":
        use_userns(bundle)
    else:
        nss.append({"type": kind})
        if kind == "uts":
            bundle.config["hostname"] = "h"
    with_ns = ns_links(bundle, [kind])[kind]
    assert with_ns != host_link(kind)
    assert_nothing_left(bundle)


def test_mount_namespace_is_new(bundle):
    assert ns_links(bundle, ["mount"])["mount"] != host_link("mount")


def test_new_network_namespace_has_only_lo_and_it_is_up(bundle):
    r = bundle.sh("ip -o link show; cat /sys/class/net/lo/flags").run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    links = [l for l in lines if ": " in l]
    assert len(links) == 1 and links[0].split(": ")[1] == "lo"
    assert "UP" in links[0].split("<")[1].split(">")[0].split(",")
    assert int(lines[-1], 16) & 1  # IFF_UP
    # traffic over lo: wait until the server listens (or died), no sleeping
    r = bundle.sh("echo hi | nc -l -p 5555 127.0.0.1 & srv=$!; "
                  "until netstat -ltn | grep -q ':5555 '; do kill -0 $srv || exit 9; done; "
                  "nc 127.0.0.1 5555 </dev/null; wait").run()
    assert r.stdout == "hi\n", r.stderr


def test_ipc_namespace_hides_the_hosts_shared_memory(bundle):
    r = bundle.sh("ipcs -m | grep -c '^0x' || true").run()
    assert r.stdout.strip() == "0"


def test_cgroup_namespace_root_is_the_containers_cgroup(bundle):
    bundle.linux["namespaces"].append({"type": "cgroup"})
    r = bundle.sh("cat /proc/self/cgroup").run()
    assert r.returncode == 0, r.stderr
    for line in r.stdout.splitlines():
        assert line.split(":", 2)[2] == "/", r.stdout


def test_time_namespace_offsets(bundle):
    ten_years = 10 * 365 * 86400
    bundle.linux["namespaces"].append({"type": "time"})
    bundle.linux["timeOffsets"] = {"boottime": {"secs": ten_years, "nanosecs": 0},
                                   "monotonic": {"secs": ten_years // 2}}
    r = bundle.sh("cat /proc/uptime; cat /proc/self/timens_offsets").run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    inside = float(lines[0].split()[0])
    with open("/proc/uptime") as f:
        outside = float(f.read().split()[0])
    assert inside >= ten_years > outside
    assert inside - ten_years < outside + 60
    offsets = {l.split()[0]: int(l.split()[1]) for l in lines[1:]}
    # the kernel prints the clocks by number: monotonic 1, boottime 7
    assert offsets in ({"monotonic": ten_years // 2, "boottime": ten_years},
                       {"1": ten_years // 2, "7": ten_years})


def test_time_namespace_without_offsets_keeps_the_clock(bundle):
    bundle.linux["namespaces"].append({"type": "time"})
    r = bundle.sh("cat /proc/uptime").run()
    with open("/proc/uptime") as f:
        outside = float(f.read().split()[0])
    assert 0 <= outside - float(r.stdout.split()[0]) < 60


# ---- user namespaces -------------------------------------------------------------------

def test_user_namespace_maps_and_root_inside(bundle):
    use_userns(bundle)
    r = bundle.sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; "
                  "stat -c %u /proc/self/status").run()
    assert r.returncode == 0, r.stderr
    lines = [l.split() for l in r.stdout.splitlines()]
    assert lines[0] == ["0", "100000", "65536"]
    assert lines[1] == ["0", "100000", "65536"]
    assert lines[2:] == [["0"], ["0"], ["0"]]
    assert_nothing_left(bundle)


def test_user_namespace_process_runs_as_the_mapped_host_uid(bundle):
    use_userns(bundle)
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.sh("echo ready; read x")
    bundle.write()
    p = subprocess.Popen(bundle_cmd(bundle), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout.readline() == "ready\n"
        pids = marked(bundle)
        assert pids
        for pid in pids:
            with open(f"/proc/{pid}/status") as f:
                st = dict(l.split(":", 1) for l in f.read().splitlines())
            assert st["Uid"].split() == ["101000"] * 4
            assert st["Gid"].split() == ["101000"] * 4
    finally:
        p.communicate("\n", timeout=20)
    assert p.returncode == 0


def bundle_cmd(bundle, *extra):
    from conftest import RUNNER, new_id

    bundle.last_id = new_id()
    return RUNNER + ["--root", bundle.root, "run", "-b", bundle.path, *extra, bundle.last_id]


def marked(bundle):
    from conftest import marked_pids

    return marked_pids(bundle.mark)


def test_user_namespace_devices_are_the_hosts_bound_and_unchanged(bundle):
    before = os.stat("/dev/null")
    use_userns(bundle)
    bundle.linux["devices"] = [{"path": "/dev/zero", "type": "c", "major": 1, "minor": 5}]
    # a listed device gets no rule of its own, and a listed default loses the default one
    # (runc's rules): its allow rule comes with it, as engines add one
    bundle.linux.setdefault("resources", {}).setdefault("devices", []).append(
        {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"})
    r = bundle.sh("for d in null zero full random urandom tty; do "
                  "stat -c '%n %F %t:%T' /dev/$d; done; echo x > /dev/null && echo wrote; "
                  "head -c 3 /dev/zero | od -An -tx1").run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    want = {"/dev/null": "1:3", "/dev/zero": "1:5", "/dev/full": "1:7", "/dev/random": "1:8",
            "/dev/urandom": "1:9", "/dev/tty": "5:0"}
    for line in lines[:6]:
        name, rest = line.split(" ", 1)
        assert rest.startswith("character special file"), line
        maj, mnr = rest.split()[-1].split(":")
        assert f"{int(maj, 16)}:{int(mnr, 16)}" == want[name]
    assert lines[6] == "wrote"
    assert lines[7].split() == ["00", "00", "00"]
    after = os.stat("/dev/null")
    assert (after.st_uid, after.st_gid, after.st_mode) == (0, 0, before.st_mode)
    assert after.st_mode & 0o777 == 0o666


def test_user_namespace_device_is_made_by_the_runtime_as_configured(bundle):
    # mknod is refused in a user namespace: the runtime makes the node on the host and binds
    # it in (test_devices_owned.py), so neither a name the host lacks nor a host node of
    # other numbers matters; /dev/zero asked as 1:3 is 1:3, not the host's 1:5
    use_userns(bundle)
    bundle.linux["devices"] = [
        {"path": "/dev/no-such-device", "type": "c", "major": 1, "minor": 3},
        {"path": "/dev/zero", "type": "c", "major": 1, "minor": 3}]
    r = bundle.sh("stat -c '%t:%T' /dev/no-such-device /dev/zero").run()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "1:3\n1:3\n"
    assert_nothing_left(bundle)


# ---- joining namespaces by path ----------------------------------------------------------

@pytest.fixture
def holder():
    """Processes holding namespaces (started with unshare), killed in teardown."""
    procs = []

    def start(*unshare_args, script="exec sleep 600"):
        # a session of its own: with --fork the holder is unshare's child, which killing
        # unshare alone would leave running
        p = subprocess.Popen(["unshare", *unshare_args, "sh", "-c", script],
                             start_new_session=True)
        procs.append(p)
        return p

    yield start
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait()


def wait_for(cond, what: str):
    for _ in range(200):
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"gave up waiting for {what}")


def test_join_network_uts_and_ipc_namespaces_by_path(bundle, holder):
    p = holder("--net", "--uts", "--ipc",
               script="hostname joined-host && ip link set lo up && echo > /dev/null && exec sleep 600")
    wait_for(lambda: host_link("uts", p.pid) != host_link("uts") and
             open(f"/proc/{p.pid}/cmdline").read().startswith("sleep"), "the holder")
    bundle.config.pop("hostname")
    for n in bundle.linux["namespaces"]:
        if n["type"] in ("network", "uts", "ipc"):
            n["path"] = f"/proc/{p.pid}/ns/{PROC_NS[n['type']]}"
    got = ns_links(bundle, ["network", "uts", "ipc", "pid"])
    for kind in ("network", "uts", "ipc"):
        assert got[kind] == host_link(kind, p.pid)
    assert got["pid"] != host_link("pid")
    r = bundle.sh("hostname").run()
    assert r.stdout == "joined-host\n"
    assert_nothing_left(bundle)


def test_join_pid_namespace_by_path(bundle, holder):
    p = holder("--pid", "--fork", "--mount-proc", script="exec sleep 600")
    # the namespace's init is unshare's child
    init = wait_for(lambda: _child_of(p.pid), "the pid namespace's init")
    bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "pid"]
    bundle.linux["namespaces"].append({"type": "pid", "path": f"/proc/{init}/ns/pid"})
    r = bundle.sh("echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; readlink /proc/self/ns/pid").run()
    assert r.returncode == 0, r.stderr
    pid, cmd, link = r.stdout.splitlines()
    assert pid != "1"
    assert cmd.startswith("sleep 600")
    assert link == host_link("pid", init)
    assert_nothing_left(bundle)


def _child_of(pid: int):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            kids = f.read().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def test_join_user_namespace_by_path(bundle, holder):
    p = holder("--user", script="exec sleep 600")
    wait_for(lambda: host_link("user", p.pid) != host_link("user"), "the user namespace")
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{p.pid}/{name}", "w") as f:
            f.write("0 200000 65536\n")
    make_reachable(bundle.path)
    bundle.linux["namespaces"].append({"type": "user", "path": f"/proc/{p.pid}/ns/user"})
    r = bundle.sh("cat /proc/self/uid_map; readlink /proc/self/ns/user; id -u").run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["0", "200000", "65536"]
    assert lines[1] == host_link("user", p.pid)
    assert lines[2] == "0"
    assert_nothing_left(bundle)


def test_joining_a_path_that_is_not_a_namespace_fails_cleanly(bundle):
    bundle.linux["namespaces"].append({"type": "cgroup", "path": "/etc/hostname"})
    r = bundle.run()
    assert r.returncode == 1
    assert "linux.namespaces[" in r.stderr and "/etc/hostname" in r.stderr
    assert_nothing_left(bundle)


def test_joining_a_namespace_of_the_wrong_type_fails_cleanly(bundle):
    bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "ipc"]
    bundle.linux["namespaces"].append({"type": "ipc", "path": "/proc/self/ns/net"})
    r = bundle.run()
    assert r.returncode == 1
    assert "linux.namespaces[" in r.stderr
    assert_nothing_left(bundle)


def test_bind_source_the_user_namespace_cannot_reach(bundle, tmp_path):
    """A bind source under a mode-700 directory of the host's root: the container's root
    is an unprivileged host uid, yet the mount is made (by the runtime, as runc opens such
    sources in its parent), with its options, for the init and for a later exec (issue 11,
    point 12)."""
    from test_lifecycle import run_detached

    priv = tmp_path / "priv"
    (priv / "vol").mkdir(parents=True)
    (priv / "vol" / "f").write_text("volume data\n")
    os.chmod(priv, 0o700)
    os.mkdir(os.path.join(bundle.rootfs, "vol"))  # the rootfs is not the user namespace's
    use_userns(bundle)
    bundle.config["mounts"].append({"destination": "/vol", "type": "bind",
                                    "source": str(priv / "vol"), "options": ["rbind", "ro"]})
    r = bundle.sh("cat /vol/f; touch /vol/x 2>/dev/null || echo read-only").run()
    assert (r.returncode, r.stdout) == (0, "volume data\nread-only\n"), r.stderr
    cid = run_detached(bundle.sh("sleep 60"))
    try:
        r = bundle.runner("exec", "--cwd", "/vol", cid, "cat", "f")
        assert (r.returncode, r.stdout) == (0, "volume data\n"), r.stderr
    finally:
        bundle.runner("delete", "--force", cid)
    assert_nothing_left(bundle)
