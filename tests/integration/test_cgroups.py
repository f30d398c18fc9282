"""cgroups through the CLI, for real: limits hold (OOM, pids, devices, cpu quota), pause and
resume, update, events, and nothing is left. Containers live under a parent cgroup this
test run owns (`cgroupsPath` relative: below the runner's own cgroup)."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, cgroup_offers, new_id

PARENT = "runner-test-" + uuid.uuid4().hex[:8]


@pytest.fixture(scope="module", autouse=True)
def parent_removed():
    yield
    left = _dirs_named(PARENT)
    assert not left, f"test parent cgroup left behind: {left}"


def _dirs_named(name: str) -> list:
    found = []
    for base, dirs, _ in os.walk("/sys/fs/cgroup"):
        if name in dirs:
            found.append(os.path.join(base, name))
        if base.count("/") > 7:
            dirs[:] = []
    return found


def limited(bundle, resources: dict, cid: str | None = None) -> str:
    cid = cid or new_id()
    bundle.linux["cgroupsPath"] = f"{PARENT}/{cid}"
    bundle.linux["resources"] = resources
    bundle.last_id = cid
    return cid


def detached(bundle, *args, timeout=30):
    """A runner command whose container outlives it: its stdio must not be our pipes."""
    cmd = RUNNER + ["--root", bundle.root] + list(args)
    with open(os.path.join(bundle.path, "out.log"), "ab") as out, \
            open(os.path.join(bundle.path, f"err-{uuid.uuid4().hex}.log"), "w+") as err:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True,
                           timeout=timeout, cwd=REPO)
        err.seek(0)
        r.stderr = err.read()
    return r


def create(bundle, cid: str) -> dict:
    bundle.write()
    r = detached(bundle, "create", "--bundle", bundle.path, cid)
    assert r.returncode == 0, r.stderr
    with open(os.path.join(bundle.root, cid, "state.json")) as f:
        return json.load(f)


def cg_file(st: dict, ctrl: str, name: str) -> str:
    if ctrl != "unified" and ctrl not in st["cgroups"]["paths"]:
        # this file reads v1 files; test_cgroups_v2.py has the v2 ones
        pytest.skip(f"the {ctrl} controller is not on a cgroup v1 hierarchy on this host")
    d = st["cgroups"]["unified"] if ctrl == "unified" else st["cgroups"]["paths"][ctrl]
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


def delete(bundle, cid: str) -> None:
    bundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(bundle, cid)


TYPICAL = {
    "memory": {"limit": 256 << 20, "reservation": 128 << 20, "swap": 256 << 20,
               "swappiness": 0, "kernelTCP": 64 << 20},
    "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10000, "cpus": "0",
            "mems": "0"},
    "pids": {"limit": 64},
}


def typical() -> dict:
    """TYPICAL less what this host's kernel cannot apply: swap without swap accounting
    (memory.memsw.*), kernelTCP where the kernel has dropped kmem.tcp (6.x without it, v2),
    burst before Linux 5.14."""
    res = json.loads(json.dumps(TYPICAL))
    if not cgroup_offers("memory", "memory.memsw.limit_in_bytes"):
        del res["memory"]["swap"]
    if not cgroup_offers("memory", "memory.kmem.tcp.limit_in_bytes"):
        del res["memory"]["kernelTCP"]
    if not cgroup_offers("cpu", "cpu.cfs_burst_us"):
        del res["cpu"]["burst"]
    return res


def test_limits_are_in_place_before_the_process_runs(bundle):
    bundle.sh("cat /proc/self/cgroup > /dev/null")
    res = typical()
    cid = limited(bundle, res)
    st = create(bundle, cid)
    # status created: the init exists (blocked before execve) and is already confined
    assert cg_file(st, "memory", "memory.limit_in_bytes") == str(256 << 20)
    if "swap" in res["memory"]:
        assert cg_file(st, "memory", "memory.memsw.limit_in_bytes") == str(256 << 20)
    assert cg_file(st, "memory", "memory.soft_limit_in_bytes") == str(128 << 20)
    assert cg_file(st, "memory", "memory.swappiness") == "0"
    if "kernelTCP" in res["memory"]:
        assert cg_file(st, "memory", "memory.kmem.tcp.limit_in_bytes") == str(64 << 20)
    assert cg_file(st, "cpu", "cpu.shares") == "512"
    assert cg_file(st, "cpu", "cpu.cfs_quota_us") == "50000"
    if "burst" in res["cpu"]:
        assert cg_file(st, "cpu", "cpu.cfs_burst_us") == "10000"
    assert cg_file(st, "cpuset", "cpuset.cpus") == "0"
    assert cg_file(st, "pids", "pids.max") == "64"
    for ctrl in ("memory", "pids", "cpu", "devices", "freezer"):
        assert str(st["pid"]) in cg_file(st, ctrl, "cgroup.procs").split()
    if st["cgroups"]["unified"]:
        assert str(st["pid"]) in cg_file(st, "unified", "cgroup.procs").split()
    # the child's own view agrees
    with open(f"/proc/{st['pid']}/cgroup") as f:
        assert f"{PARENT}/{cid}" in f.read()
    delete(bundle, cid)


def test_memory_hog_is_oom_killed_and_reported(bundle):
    bundle.sh("dd if=/dev/zero of=/dev/null bs=64M count=1; echo dd=$?")
    cid = limited(bundle, {"memory": {"limit": 24 << 20, "swap": 24 << 20}})
    create(bundle, cid)
    ev = subprocess.Popen(RUNNER + ["--root", bundle.root, "events", "--interval", "200ms", cid],
                          stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        first = json.loads(ev.stdout.readline())  # the watch is set up before the first line
        assert first["type"] == "stats" and first["data"]["memory"]["usage"]["limit"] == 24 << 20
        r = detached(bundle, "start", cid)
        assert r.returncode == 0, r.stderr
        events = [json.loads(line) for line in ev.stdout]  # ends when the container stops
    finally:
        ev.kill()
        ev.wait()
    assert {"type": "oom", "id": cid} in events
    with open(os.path.join(bundle.path, "out.log")) as f:
        assert "dd=137" in f.read()  # SIGKILLed by the OOM killer
    delete(bundle, cid)


def test_fork_bomb_stops_at_pids_limit(bundle):
    # every `&` forks; ash exits on the first fork that fails
    bundle.sh("i=0; while [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); echo $i; done")
    limited(bundle, {"pids": {"limit": 12}})
    r = bundle.run(bundle.last_id)
    counts = [int(x) for x in r.stdout.split()]
    assert r.returncode != 0
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr
    assert counts[-1] == 11  # the shell + 11 children = the limit


@pytest.mark.parametrize("allow", [False, True])
def test_device_rules(bundle, allow):
    bundle.config["mounts"].append({"destination": "/dev/lp", "type": "bind",
                                    "source": "/dev/loop0", "options": ["bind"]})
    bundle.sh("(exec 3</dev/lp) && echo opened; echo null > /dev/null && echo null-ok")
    rules = [{"allow": False, "access": "rwm"}]
    if allow:
        rules.append({"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"})
    limited(bundle, {"devices": rules})
    r = bundle.run(bundle.last_id)
    assert "null-ok" in r.stdout  # the default devices stay usable
    if allow:
        assert "opened" in r.stdout
    else:
        assert "opened" not in r.stdout and "Operation not permitted" in r.stderr


def test_device_update_never_denies_the_running_container(bundle, monkeypatch):
    """v1 devices: an update writes only the difference. The full list starts with a reset
    ("a"), which denies every device to the running processes until the allows after it
    land: a container writing to /dev/null in a loop saw EPERM during `update`."""
    import libcontainer
    from libcontainer.cgroups import devices

    deny_all = {"allow": False, "access": "rwm"}
    loop0 = {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"}
    bundle.sh("while :; do echo x 2>&1 > /dev/null || echo FAIL; done 2>&1")
    cid = limited(bundle, {"devices": [deny_all]})
    st = create(bundle, cid)
    assert detached(bundle, "start", cid).returncode == 0
    writes = []  # (file, rule) as written, in order
    real = devices._v1_write

    def spy(lines, directory):
        writes.extend((f"{directory}/{name}", line) for name, line in lines)
        return real(lines, directory)

    monkeypatch.setattr(devices, "_v1_write", spy)
    c = libcontainer.load(cid, bundle.root)
    for i in range(60):
        c.update({"devices": [deny_all, loop0] if i % 2 == 0 else [deny_all]})
        listed = cg_file(st, "devices", "devices.list").splitlines()
        assert ("b 7:0 r" in listed) == (i % 2 == 0)
        assert "c 1:3 rwm" in listed
    with open(os.path.join(bundle.path, "out.log")) as f:
        assert "FAIL" not in f.read()
    device_writes = [(os.path.basename(p), d) for p, d in writes if "/devices." in p]
    assert ("devices.allow", "b 7:0 r") in device_writes
    assert ("devices.deny", "b 7:0 r") in device_writes
    assert all(d != "a" for _, d in device_writes), device_writes
    # a new default needs a reset: straight to it, then the exceptions (the kernel's own
    # reset empties the list before it flips the default, so this one may deny briefly)
    c.update({"devices": [{"allow": True, "access": "rwm"},
                          {"allow": False, "type": "c", "major": 10, "minor": 229, "access": "w"}]})
    assert cg_file(st, "devices", "devices.list") == "a *:* rwm"
    assert writes[-2:] == [(st["cgroups"]["paths"]["devices"] + "/devices.allow", "a"),
                           (st["cgroups"]["paths"]["devices"] + "/devices.deny", "c 10:229 w")]
    c.update({"devices": [deny_all]})
    listed = cg_file(st, "devices", "devices.list").splitlines()
    assert "c 1:3 rwm" in listed and "b 7:0 r" not in listed
    delete(bundle, cid)


def test_cpu_quota_holds_a_busy_loop(bundle):
    bundle.sh("while :; do :; done")
    cid = limited(bundle, {"cpu": {"quota": 20000, "period": 100000}})
    st = create(bundle, cid)
    assert detached(bundle, "start", cid).returncode == 0
    acct = os.path.join(st["cgroups"]["paths"]["cpuacct"], "cpuacct.usage")
    t0, u0 = time.monotonic(), int(open(acct).read())
    time.sleep(1.0)
    t1, u1 = time.monotonic(), int(open(acct).read())
    share = (u1 - u0) / 1e9 / (t1 - t0)
    throttled = dict(line.split() for line in open(
        os.path.join(st["cgroups"]["paths"]["cpu"], "cpu.stat")))
    delete(bundle, cid)
    assert int(throttled["nr_throttled"]) > 0
    assert 0.05 < share < 0.35, share  # 20% of one cpu, with room for accounting slack


def _counter(st: dict) -> int:
    try:
        with open(f"/proc/{st['pid']}/root/dev/shm/n") as f:
            return int(f.read().strip() or 0)
    except (OSError, ValueError):
        return -1


def _changes(st: dict, tries: int = 200) -> bool:
    a = _counter(st)
    for _ in range(tries):
        time.sleep(0.01)
        if _counter(st) != a:
            return True
    return False


def test_pause_stops_a_counter_that_resume_lets_go_on(bundle):
    bundle.sh("i=0; while :; do i=$((i+1)); echo $i > /dev/shm/n; done")
    cid = limited(bundle, {})
    st = create(bundle, cid)
    assert detached(bundle, "start", cid).returncode == 0
    assert _changes(st)
    bundle.runner("pause", cid, check=True)
    assert json.loads(bundle.runner("state", cid, check=True).stdout)["status"] == "paused"
    assert cg_file(st, "freezer", "freezer.state") == "FROZEN"
    a = _counter(st)
    time.sleep(0.3)
    assert _counter(st) == a
    bundle.runner("resume", cid, check=True)
    assert json.loads(bundle.runner("state", cid, check=True).stdout)["status"] == "running"
    assert _changes(st)
    delete(bundle, cid)


def test_update_changes_live_limits(bundle):
    bundle.sh("sleep 100")
    cid = limited(bundle, {"memory": {"limit": 64 << 20}, "pids": {"limit": 10}})
    st = create(bundle, cid)
    bundle.runner("update", "--pids-limit", "7", "--memory", "96m", "--cpu-quota", "30000",
                  cid, check=True)
    assert cg_file(st, "pids", "pids.max") == "7"
    assert cg_file(st, "memory", "memory.limit_in_bytes") == str(96 << 20)
    assert cg_file(st, "cpu", "cpu.cfs_quota_us") == "30000"
    r = bundle.runner("update", "--resources", "-", cid,
                      input=json.dumps({"pids": {"limit": 5}, "cpu": {"shares": 300}}))
    assert r.returncode == 0, r.stderr
    assert cg_file(st, "pids", "pids.max") == "5"
    assert cg_file(st, "cpu", "cpu.shares") == "300"
    # bad input: named, refused, nothing changed
    r = bundle.runner("update", "--resources", "-", cid, input='{"pids": {"limit": "x"}}')
    assert r.returncode == 1 and "linux.resources.pids.limit" in r.stderr
    r = bundle.runner("update", "--memory", "lots", cid)
    assert r.returncode == 1 and "--memory" in r.stderr
    r = bundle.runner("update", "--resources", "-", cid, input='{"cpu": {"cpus": "63"}}')
    assert r.returncode == 1 and "linux.resources.cpu.cpus" in r.stderr and "cpuset.cpus" in r.stderr
    r = bundle.runner("update", "--cpu-share", "1", "--pids-limit", "9", cid)
    assert r.returncode == 1 and "minimum allowed cpu-shares is 2" in r.stderr, r.stderr
    assert cg_file(st, "pids", "pids.max") == "5"
    delete(bundle, cid)


def test_events_stats(bundle):
    bundle.sh("sleep 100")
    cid = limited(bundle, {"memory": {"limit": 64 << 20}, "pids": {"limit": 10}})
    create(bundle, cid)
    r = bundle.runner("events", "--stats", cid, check=True)
    ev = json.loads(r.stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    data = ev["data"]
    assert data["memory"]["usage"]["limit"] == 64 << 20
    assert {"usage", "max", "failcnt"} <= set(data["memory"]["usage"])
    assert data["pids"] == {"current": 1, "limit": 10}
    assert data["cpu"]["usage"]["total"] > 0
    assert "ioServiceBytesRecursive" in data["blkio"]
    delete(bundle, cid)


def test_delete_kills_everything_left(bundle):
    bundle.sh("sleep 100 & sleep 100 & sleep 100")
    # without a pid namespace, init's death would not take the others with it
    bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "pid"]
    cid = limited(bundle, {})
    st = create(bundle, cid)
    assert detached(bundle, "start", cid).returncode == 0
    for _ in range(500):
        if len(cg_file(st, "pids", "cgroup.procs").split()) >= 3:
            break
        time.sleep(0.01)
    assert len(cg_file(st, "pids", "cgroup.procs").split()) == 3  # sh exec()s the last sleep
    delete(bundle, cid)  # checks: no process with the bundle's mark, no cgroup, no state


@pytest.mark.parametrize("resources, field, words", [
    ({"memory": {"limit": "lots"}}, "linux.resources.memory.limit", "integer"),
    ({"cpu": {"cpus": "0-1-2"}}, "linux.resources.cpu.cpus", "list"),
    ({"cpu": {"cpus": "63"}}, "linux.resources.cpu.cpus", "cpuset.cpus"),
    ({"network": {"classID": 5}}, "linux.resources.network", "net_cls controller is not mounted"),
    ({"rdma": {"mlx5_1": {"hcaHandles": 3}}}, "linux.resources.rdma", "rdma"),
    ({"unified": {"memory.high": "1"}}, "linux.resources.unified.memory.high", "memory"),
    ({"devices": [{"allow": True, "access": "rwx"}]}, "linux.resources.devices[0].access", "rwx"),
    # the kernel would clamp them (to 2 and 262144) without a word; runc refuses them
    ({"cpu": {"shares": 1}}, "linux.resources.cpu.shares", "minimum allowed cpu-shares is 2"),
    ({"cpu": {"shares": 262145}}, "linux.resources.cpu.shares",
     "maximum allowed cpu-shares is 262144"),
])
def test_bad_resources_are_named_and_leave_nothing(bundle, resources, field, words):
    limited(bundle, resources)
    r = bundle.run(bundle.last_id)
    assert r.returncode == 1, r.stderr
    assert field in r.stderr and words in r.stderr, r.stderr
    assert_nothing_left(bundle)
    assert not any(_dirs_named(bundle.last_id))


def test_bad_cgroups_path(bundle):
    bundle.linux["cgroupsPath"] = "system.slice:runner:x"
    r = bundle.run()
    assert r.returncode == 1 and "linux.cgroupsPath" in r.stderr
    bundle.linux["cgroupsPath"] = "a/../../b"
    r = bundle.run()
    assert r.returncode == 1 and "linux.cgroupsPath" in r.stderr


def test_default_path_is_under_runner(bundle):
    bundle.sh("cat /proc/self/cgroup")
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    # /proc/self/cgroup: "N:pids:/…" on a v1 pids hierarchy, "0::/…" on v2
    from libcontainer import cgroups

    where = "pids" if "pids" in cgroups.detect().v1 else ""
    assert f":{where}:/runner-{bundle.last_id}\n" in r.stdout, r.stdout


def test_200_create_destroy_cycles_leave_nothing():
    from conftest import need_root
    need_root()
    from libcontainer import cgroups

    res = typical()
    for i in range(200):
        m = cgroups.Manager.create(f"cycle-{i}", f"{PARENT}/cycles/c{i}", res)
        m.destroy()
    # PARENT is this run's own name: another checkout's suite may run the same test at once
    assert not _dirs_named(PARENT)


def _cgroup2_mount_point() -> str:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if line.split(" - ")[1].split()[0] == "cgroup2":
                return line.split()[4]
    return ""


def _run_under(bundle, cover: str, cid: str):
    """`runner run` in a mount namespace of its own where `cover` is under a plain tmpfs."""
    bundle.write()
    cmd = " ".join(RUNNER + ["--root", bundle.root, "run", "--bundle", bundle.path, cid])
    # (a warm server refuses a caller in another mount namespace, and the plain path runs:
    # asked for here, so that RUNNER_TEST_WARM=1's no-refusal check holds)
    return subprocess.run(["unshare", "-m", "sh", "-c",
                           f"mount -t tmpfs cover {cover} && exec {cmd}"],
                          capture_output=True, text=True, timeout=60, cwd=REPO,
                          env=dict(os.environ, RUNNER_WARM="0"))


def test_a_covered_cgroup_mount_point_is_not_used(bundle):
    """What is mounted decides the layout, not what mountinfo lists: a cgroup2 mount point
    under a plain tmpfs (how crun is run on hybrid hosts) is not a hierarchy to use, and
    all of them covered is a clear error, never an internal one (issue 11, point 9)."""
    unified = _cgroup2_mount_point()
    if unified == "/sys/fs/cgroup":
        pytest.skip("a pure cgroup v2 host: there is no second hierarchy to fall back on")
    if unified:
        cid = limited(bundle, {"pids": {"limit": 30}})
        bundle.sh("cat /proc/self/cgroup")
        r = _run_under(bundle, unified, cid)
        assert r.returncode == 0 and "internal error" not in r.stderr, r.stderr
        pids = [l for l in r.stdout.splitlines() if ":pids:" in l]
        assert pids and pids[0].endswith(f"/{PARENT}/{cid}"), r.stdout
        assert_nothing_left(bundle, cid)
    cid = new_id()
    bundle.last_id = cid
    bundle.linux.pop("cgroupsPath", None)
    bundle.linux.pop("resources", None)
    r = _run_under(bundle, "/sys/fs/cgroup", cid)
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("runner: linux.resources: no cgroup hierarchy is mounted"), r.stderr
    assert_nothing_left(bundle, cid)


@pytest.mark.parametrize("userns", [False, True], ids=["no-userns", "userns"])
def test_cgroup_mount_shows_the_containers_own_cgroup(bundle, userns):
    """Without a cgroup namespace, a `type: cgroup` mount shows each hierarchy with the
    container's own cgroup at its root, as runc does: its limits are what the process
    reads, and nothing of the rest of the host's tree is there (issue 11, point 2)."""
    cid = limited(bundle, {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}})
    bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "cgroup"]
    if userns:
        from test_namespaces import use_userns

        use_userns(bundle)
    assert any(m["type"] == "cgroup" for m in bundle.config["mounts"])
    unified = _cgroup2_mount_point()
    script = ("cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max" if unified == "/sys/fs/cgroup"
              else "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max;"
                   " ls /sys/fs/cgroup/memory | grep -v '^memory\\.' | grep -v '^cgroup\\.' |"
                   " grep -v -e notify_on_release -e tasks -e release_agent || echo no-subdirs")
    if unified and unified != "/sys/fs/cgroup":
        script += "; cat /sys/fs/cgroup/unified/cgroup.procs"
    r = bundle.sh(script).run(cid)
    assert r.returncode == 0, r.stderr
    out = r.stdout.split()
    assert out[:2] == [str(64 << 20), "50"], r.stdout
    if unified != "/sys/fs/cgroup":
        assert out[2] == "no-subdirs", r.stdout
        if unified:
            assert out[3:] == ["1"]  # the container's own v2 cgroup holds just its init
    assert_nothing_left(bundle, cid)
