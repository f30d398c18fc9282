"""--systemd-cgroup against a real systemd (252, Debian bookworm, PID 1 of a container the
runner runs, with its own cgroup namespace: systemdkit.py), side by side with runc 1.1's
--systemd-cgroup in the same systemd: the same units (Slice, Delegate, the resource
properties `systemctl show` prints), the same cgroup paths and the same limits in the
files, kept over a `systemctl daemon-reload`; update through SetUnitProperties; the scope
gone after delete (and delete --force); a slice that does not exist made by systemd with its
dash-nested parents; bad input refused with nothing left.

The systemd rootfs is made by debootstrap once (cached under /var/cache/runner-tests):
without a reachable mirror these tests skip, saying so."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import sys

import pytest
from conftest import REPO, ROOTFS, need_root

sys.path.insert(0, os.path.dirname(__file__))
import systemdkit  # noqa: E402

RUNC = shutil.which("runc")
PY = sys.executable
IN_RUNNER = f"cd {REPO} && {PY} -m runner"
IN_RUNC = "/usr/local/sbin/runc"
CONTAINERD = ("containerd", "containerd-shim-runc-v2", "ctr")
PROPS = ("Slice", "Delegate", "DefaultDependencies", "MemoryAccounting", "CPUAccounting",
         "BlockIOAccounting", "IOAccounting", "TasksAccounting", "MemoryLimit", "CPUShares",
         "CPUQuotaPerSecUSec", "CPUQuotaPeriodUSec", "TasksMax", "AllowedCPUs",
         "AllowedMemoryNodes", "DevicePolicy", "DeviceAllow", "BlockIOWeight", "MemoryMax",
         "ControlGroup", "ActiveState")
LIMITS = ("memory/memory.limit_in_bytes", "cpu/cpu.shares",
          "cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us",
          "cpuset/cpuset.cpus", "cpuset/cpuset.mems", "pids/pids.max",
          "devices/devices.list")


@pytest.fixture(scope="module")
def sd(tmp_path_factory):
    yield from _systemd(tmp_path_factory, unified=False)


def _systemd(tmp_path_factory, unified: bool):
    need_root()
    if not os.path.exists(os.path.join(ROOTFS, "bin", "busybox")):
        pytest.skip("no busybox rootfs: run `make rootfs`")
    if not os.path.realpath(PY).startswith("/usr/") and not PY.startswith(REPO + "/"):
        pytest.skip(f"the interpreter {PY} is not reachable inside the systemd container")
    try:
        systemdkit.ensure()
    except RuntimeError as e:
        pytest.skip(f"no systemd rootfs: {e}")
    work = str(tmp_path_factory.mktemp("systemd"))
    binds = [systemdkit._bind(REPO)]
    if RUNC:
        binds.append(systemdkit._bind(os.path.realpath(RUNC), IN_RUNC))
    for tool in CONTAINERD:  # the host's containerd (Debian's: linked to libc only)
        if shutil.which(tool):
            binds.append(systemdkit._bind(shutil.which(tool), f"/usr/local/bin/{tool}"))
    runner = [PY, "-m", "runner"]
    box = systemdkit.Systemd(runner, work, f"sdct{'2' if unified else ''}-{os.getpid()}",
                             binds, unified=unified)
    try:
        box.__enter__()
    except RuntimeError as e:
        pytest.fail(str(e))  # the runner must be able to run systemd
    try:
        box.sh("mkdir -p /tmp/b")
        yield box
    finally:
        box.stop()


def bundle(sd, name: str, resources: dict | None = None, cgroups_path: str = "",
           args=("sleep", "1000"), annotations: dict | None = None) -> str:
    """A bundle inside the systemd container (its /tmp), on the read-only busybox rootfs."""
    from libcontainer.default_spec import default_config

    cfg = default_config(terminal=False)
    cfg["root"] = {"path": ROOTFS, "readonly": True}
    cfg["process"]["args"] = list(args)
    if resources:
        cfg["linux"]["resources"] = resources
    if cgroups_path:
        cfg["linux"]["cgroupsPath"] = cgroups_path
    if annotations:
        cfg["annotations"] = annotations
    path = f"/tmp/b/{name}"
    sd.sh(f"mkdir -p {path} && printf %s {shlex.quote(json.dumps(cfg))} > {path}/config.json")
    return path


def runtime(kind: str) -> str:
    return f"{IN_RUNNER} --root /run/sdtest-runner" if kind == "runner" else \
        f"{IN_RUNC} --root /run/sdtest-runc"


def start(sd, kind: str, cid: str, path: str, check=True):
    return sd.sh(f"{runtime(kind)} --systemd-cgroup run -d --bundle {path} {cid}",
                 check=check)


def show(sd, unit: str) -> dict:
    out = sd.sh(f"systemctl show {unit} -p {','.join(PROPS)}").stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def init_pid(sd, kind: str, cid: str) -> int:
    return json.loads(sd.sh(f"{runtime(kind)} state {cid}").stdout)["pid"]


def cgroup_of(sd, pid: int) -> dict:
    out = sd.sh(f"cat /proc/{pid}/cgroup").stdout
    return {line.split(":")[1]: line.split(":", 2)[2] for line in out.splitlines()}


def limits(sd, cg: dict) -> dict:
    out = {}
    for f in LIMITS:
        ctrl = f.split("/")[0]
        d = next((v for k, v in cg.items() if ctrl in k.split(",")), None)
        if d is not None:
            r = sd.sh(f"cat /sys/fs/cgroup/{ctrl}{d}/{f.split('/')[1]}", check=False)
            out[f] = r.stdout.strip() if r.returncode == 0 else None
            if f.endswith("devices.list") and out[f]:
                out[f] = "\n".join(sorted(out[f].splitlines()))  # the order of the writes
    return out


def gone(sd, unit: str) -> bool:
    s = show(sd, unit)
    return s.get("ActiveState") == "inactive" and not s.get("ControlGroup")


RES = {"memory": {"limit": 64 << 20}, "cpu": {"shares": 512, "quota": 50000,
                                             "period": 100000, "cpus": "0", "mems": "0"},
       "pids": {"limit": 50},
       "devices": [{"allow": False, "access": "rwm"},
                   {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]}


def both(sd, name: str, res, path_of=lambda kind, cid: ""):
    """Start the same bundle under each runtime; → {kind: (cid, unit, pid)}."""
    out = {}
    for kind in ("runner", "runc") if RUNC else ("runner",):
        cid = f"{name}-{kind}"
        cp = path_of(kind, cid)
        start(sd, kind, cid, bundle(sd, cid, res, cp))
        unit = (f"{cp.split(':')[1]}-{cp.split(':')[2]}.scope" if cp
                else f"{'runc' if kind == 'runc' else 'runner'}-{cid}.scope")
        out[kind] = (cid, unit, init_pid(sd, kind, cid))
    return out


def delete(sd, kind: str, cid: str, force=True):
    sd.sh(f"{runtime(kind)} delete {'--force ' if force else ''}{cid}", check=False)


def test_scope_as_runc_makes_it(sd):
    got = both(sd, "res", RES)
    try:
        seen = {}
        for kind, (cid, unit, pid) in got.items():
            props = show(sd, unit)
            assert props["ActiveState"] == "active", props
            assert props["Slice"] == "system.slice" and props["Delegate"] == "yes"
            assert props["DefaultDependencies"] == "no"
            assert props["MemoryLimit"] == str(64 << 20)    # hybrid: the v1 property
            assert props["CPUShares"] == "512" and props["TasksMax"] == "50"
            assert props["CPUQuotaPerSecUSec"] == "500ms"
            assert props["AllowedCPUs"] == "0" and props["DevicePolicy"] == "strict"
            cg = cgroup_of(sd, pid)
            assert cg["name=systemd"] == f"/system.slice/{unit}"
            assert cg["memory"] == f"/system.slice/{unit}"
            lim = limits(sd, cg)
            assert lim["memory/memory.limit_in_bytes"] == str(64 << 20)
            assert lim["pids/pids.max"] == "50" and lim["cpu/cpu.shares"] == "512"
            assert lim["cpu/cpu.cfs_quota_us"] == "50000"
            rules = lim["devices/devices.list"].splitlines()
            assert "c 1:3 rwm" in rules and "a *:* rwm" not in rules
            seen[kind] = ({k: v.replace(unit, "UNIT") for k, v in props.items()},
                          {k: v.replace(unit, "UNIT") for k, v in cg.items()}, lim)
        if "runc" in seen:
            assert seen["runner"] == seen["runc"]
        # systemd writes its properties again at a daemon-reload: every limit stays
        sd.sh("systemctl daemon-reload")
        for kind, (cid, unit, pid) in got.items():
            assert limits(sd, cgroup_of(sd, pid)) == seen[kind][2], kind
    finally:
        for kind, (cid, unit, _) in got.items():
            delete(sd, kind, cid)
    for kind, (cid, unit, _) in got.items():
        assert gone(sd, unit), (kind, show(sd, unit))
        r = sd.sh(f"ls -d /sys/fs/cgroup/*/system.slice/{unit}", check=False)
        assert r.stdout == "", r.stdout


def test_update_through_systemd(sd):
    got = both(sd, "upd", {"memory": {"limit": 64 << 20}, "pids": {"limit": 40}})
    try:
        for kind, (cid, unit, pid) in got.items():
            sd.sh(f"{runtime(kind)} update --memory 100000000 --pids-limit 77 --cpu-share 300 "
                  f"{cid}")
            props = show(sd, unit)
            assert props["MemoryLimit"] == "100000000" and props["TasksMax"] == "77"
            assert props["CPUShares"] == "300"
            sd.sh("systemctl daemon-reload")
            lim = limits(sd, cgroup_of(sd, pid))
            assert lim["memory/memory.limit_in_bytes"] == "99999744"  # page-rounded
            assert lim["pids/pids.max"] == "77" and lim["cpu/cpu.shares"] == "300"
    finally:
        for kind, (cid, unit, _) in got.items():
            delete(sd, kind, cid)


def test_update_the_kernel_refuses_puts_the_unit_back(sd):
    """A limit the kernel refuses after systemd took it (memory below what the container
    uses: EBUSY): the update fails, the files and the unit's properties are as before —
    the values systemd had, not ones recomputed (TasksMax was never ours to set)."""
    rt = runtime("runner")
    path = bundle(sd, "updk", {"memory": {"limit": 64 << 20}},
                  args=("sh", "-c", "x=$(head -c 3000000 /dev/zero | tr '\\0' a); "
                        "sleep 1000"))
    sd.sh(f"{rt} --systemd-cgroup run -d --bundle {path} updk")
    try:
        before = show(sd, "runner-updk.scope")
        files = limits(sd, cgroup_of(sd, init_pid(sd, "runner", "updk")))
        r = sd.sh(f"{rt} update --memory 65536 --pids-limit 20 updk", check=False)
        assert r.returncode != 0 and "memory" in r.stderr, r.stderr
        assert show(sd, "runner-updk.scope") == before
        assert limits(sd, cgroup_of(sd, init_pid(sd, "runner", "updk"))) == files
    finally:
        delete(sd, "runner", "updk")


def test_slice_made_as_systemd_would(sd):
    got = both(sd, "sl", {"pids": {"limit": 10}},
               lambda kind, cid: f"sdt{kind}-sub.slice:pfx:{cid}")
    try:
        for kind, (cid, unit, pid) in got.items():
            assert unit == f"pfx-{cid}.scope"
            props = show(sd, unit)
            assert props["Slice"] == f"sdt{kind}-sub.slice"
            cg = cgroup_of(sd, pid)
            assert cg["pids"] == f"/sdt{kind}.slice/sdt{kind}-sub.slice/{unit}"
            assert limits(sd, cg)["pids/pids.max"] == "10"
    finally:
        for kind, (cid, unit, _) in got.items():
            delete(sd, kind, cid)


def test_foreground_run_and_plain_delete(sd):
    path = bundle(sd, "fg", {"memory": {"limit": 32 << 20}},
                  args=("sh", "-c", "cat /proc/self/cgroup | grep memory"))
    r = sd.sh(f"{runtime('runner')} --systemd-cgroup run --bundle {path} fg")
    assert "/system.slice/runner-fg.scope" in r.stdout
    assert gone(sd, "runner-fg.scope")
    sd.sh(f"{runtime('runner')} --systemd-cgroup create --bundle {path} fgc")
    assert show(sd, "runner-fgc.scope")["ActiveState"] == "active"
    sd.sh(f"{runtime('runner')} start fgc; sleep 0.5; {runtime('runner')} delete fgc")
    assert gone(sd, "runner-fgc.scope")


@pytest.mark.parametrize("path, field", [
    ("not-a-systemd-path", "linux.cgroupsPath"),
    ("system.slice:x", "linux.cgroupsPath"),
    ("bad--name.slice:p:n", "linux.cgroupsPath"),
])
def test_bad_path_leaves_nothing(sd, path, field):
    b = bundle(sd, "bad", None, path)
    r = sd.sh(f"{runtime('runner')} --systemd-cgroup run -d --bundle {b} bad", check=False)
    assert r.returncode != 0 and field in r.stderr, r.stderr
    assert sd.sh(f"{runtime('runner')} list -q").stdout.strip() == ""
    units = sd.sh("systemctl list-units --all --no-legend '*bad*'").stdout
    assert "bad" not in units


def test_bad_resource_leaves_no_unit(sd):
    b = bundle(sd, "badres", {"memory": {"limit": 100, "swap": 50}})
    r = sd.sh(f"{runtime('runner')} --systemd-cgroup run -d --bundle {b} badres", check=False)
    assert r.returncode != 0 and "linux.resources.memory.swap" in r.stderr, r.stderr
    assert gone(sd, "runner-badres.scope")
    assert sd.sh(f"{runtime('runner')} list -q").stdout.strip() == ""


FILES = ("memory/memory.limit_in_bytes", "memory/memory.soft_limit_in_bytes",
         "memory/memory.memsw.limit_in_bytes", "memory/memory.swappiness",
         "memory/memory.oom_control", "cpu/cpu.shares", "cpu/cpu.cfs_quota_us",
         "cpu/cpu.cfs_period_us", "cpuset/cpuset.cpus", "cpuset/cpuset.mems",
         "pids/pids.max", "blkio/blkio.throttle.read_bps_device",
         "blkio/blkio.throttle.write_iops_device", "blkio/blkio.weight", "devices/devices.list")


def _block_device():
    """A whole disk's major:minor (throttle rules want one, not a partition)."""
    for name in sorted(os.listdir("/sys/block")):
        if name.startswith(("loop", "ram", "zram")):
            continue
        with open(f"/sys/block/{name}/dev") as f:
            major, minor = f.read().strip().split(":")
            return int(major), int(minor)
    return None


def test_every_field_as_runc(sd):
    """Every linux.resources field this host's controllers take, under both runtimes: the
    same unit properties and the same values in the cgroup files — also after a
    daemon-reload (systemd rewrites what it has a property for)."""
    if not RUNC:
        pytest.skip("runc is not installed")
    res = {"memory": {"limit": 128 << 20, "reservation": 64 << 20, "swap": 256 << 20,
                      "swappiness": 10, "disableOOMKiller": False},
           "cpu": {"shares": 256, "quota": 30000, "period": 50000, "cpus": "0",
                   "mems": "0"},
           "pids": {"limit": 33}}
    dev = _block_device()
    if dev:
        res["blockIO"] = {"throttleReadBpsDevice": [{"major": dev[0], "minor": dev[1],
                                                     "rate": 1048576}],
                          "throttleWriteIOPSDevice": [{"major": dev[0], "minor": dev[1],
                                                       "rate": 100}]}
    if os.path.exists("/sys/fs/cgroup/blkio/blkio.weight"):
        res.setdefault("blockIO", {})["weight"] = 300
    if not os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes"):
        del res["memory"]["swap"]
    got = both(sd, "all", res)
    try:
        seen = {}
        for kind, (cid, unit, pid) in got.items():
            cg = cgroup_of(sd, pid)
            files = {}
            for f in FILES:
                ctrl, name = f.split("/")
                d = next((v for k, v in cg.items() if ctrl in k.split(",")), None)
                r = sd.sh(f"cat /sys/fs/cgroup/{ctrl}{d}/{name}", check=False)
                files[f] = sorted(r.stdout.strip().splitlines()) if r.returncode == 0 else None
            props = {k: v.replace(unit, "UNIT") for k, v in show(sd, unit).items()}
            seen[kind] = (props, files)
        assert seen["runner"][0] == seen["runc"][0]
        assert seen["runner"][1] == seen["runc"][1]
        runner_files = seen["runner"][1]
        assert runner_files["memory/memory.soft_limit_in_bytes"] == [str(64 << 20)]
        assert runner_files["cpu/cpu.cfs_period_us"] == ["50000"]
        sd.sh("systemctl daemon-reload")
        for kind, (cid, unit, pid) in got.items():
            cg = cgroup_of(sd, pid)
            for f in ("memory/memory.limit_in_bytes", "cpu/cpu.shares", "cpu/cpu.cfs_quota_us",
                      "cpu/cpu.cfs_period_us", "pids/pids.max", "cpuset/cpuset.cpus"):
                ctrl, name = f.split("/")
                d = next((v for k, v in cg.items() if ctrl in k.split(",")), None)
                value = sd.sh(f"cat /sys/fs/cgroup/{ctrl}{d}/{name}").stdout
                assert sorted(value.strip().splitlines()) == seen[kind][1][f], (kind, f)
    finally:
        for kind, (cid, unit, _) in got.items():
            delete(sd, kind, cid)


def test_exec_pause_and_ps_in_the_scope(sd):
    path = bundle(sd, "ex", {"pids": {"limit": 20}})
    rt = runtime("runner")
    sd.sh(f"{rt} --systemd-cgroup run -d --bundle {path} ex")
    try:
        out = sd.sh(f"{rt} exec ex cat /proc/self/cgroup").stdout
        assert ":pids:/system.slice/runner-ex.scope" in out
        assert ":name=systemd:/system.slice/runner-ex.scope" in out
        sd.sh(f"{rt} pause ex")
        assert json.loads(sd.sh(f"{rt} state ex").stdout)["status"] == "paused"
        sd.sh(f"{rt} resume ex")
        assert "sleep" in sd.sh(f"{rt} ps ex").stdout
        assert show(sd, "runner-ex.scope")["ActiveState"] == "active"
        sd.sh(f"{rt} kill ex KILL")
        sd.sh(f"for i in $(seq 50); do {rt} state ex | grep -q stopped && break; sleep 0.1; done")
        sd.sh(f"{rt} delete ex")
        assert gone(sd, "runner-ex.scope")
    finally:
        delete(sd, "runner", "ex")


def test_podman_drives_the_runner_with_systemd_cgroups(sd):
    """podman --cgroup-manager systemd (machine.slice:libpod:ID, a libpod-ID.scope) with the
    runner as its runtime, side by side with runc: the same scope and limits."""
    rootfs = "/tmp/pmroot"
    sd.sh(f"rm -rf {rootfs} && cp -a {ROOTFS} {rootfs}")
    conf = "/tmp/pm-containers.conf"
    # no CAP_SYS_RESOURCE here: podman's default 1048576 nofile and nproc cannot be set
    sd.sh(f"printf '[containers]\\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\\n' > {conf}")
    out = {}
    for kind in ("runner", "runc") if RUNC else ("runner",):
        rt = f"{REPO}/.venv/bin/runner" if kind == "runner" else IN_RUNC
        pm = (f"CONTAINERS_CONF={conf} podman --root /tmp/pm-{kind}/root --runroot "
              f"/run/pm-{kind} --storage-driver vfs --cgroup-manager systemd --runtime {rt}")
        r = sd.sh(f"{pm} run --rm --network none --memory 48m --pids-limit 30 --rootfs "
                  f"{rootfs} sh -c 'cat /proc/self/cgroup; cat /sys/fs/cgroup/memory/"
                  f"memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max'", timeout=120,
                  check=False)
        assert r.returncode == 0, (kind, r.stdout, r.stderr)
        lines = r.stdout.split()
        mem = [x for x in lines if ":memory:" in x]
        assert mem and mem[0].split(":", 2)[2].startswith("/machine.slice/libpod-"), lines
        assert mem[0].endswith(".scope")
        out[kind] = [x.split(":", 2)[2].split("/libpod-")[0] if ":" in x else x for x in lines]
    assert str(48 << 20) in out["runner"] and "30" in out["runner"]
    if "runc" in out:
        assert out["runner"] == out["runc"]


ENV = "export PATH=/usr/local/bin:$PATH; "
CTR = "ctr --address /run/sdtest-ctd/sock"


@pytest.fixture(scope="module")
def ctd(sd):
    """A containerd in the systemd container (the host's, bound in), on private paths."""
    if not all(shutil.which(t) for t in CONTAINERD):
        pytest.skip("containerd is not installed")
    sd.sh(ENV + "mkdir -p /tmp/ctd; (containerd --root /tmp/ctd/root --state /run/sdtest-ctd "
          "--address /run/sdtest-ctd/sock >/tmp/ctd/log 2>&1 & echo $! >/tmp/ctd/pid); "
          f"for i in $(seq 100); do {CTR} version >/dev/null 2>&1 && break; sleep 0.1; done")
    try:
        yield sd
    finally:
        sd.sh("kill $(cat /tmp/ctd/pid)", check=False)  # the containerd started above


def ctr_binary(kind: str) -> str:
    return f"{REPO}/.venv/bin/runner" if kind == "runner" else IN_RUNC


def ctr_remove(sd, *cids) -> None:
    """Kill the tasks, wait for them to stop, delete tasks and containers."""
    for cid in cids:
        sd.sh(ENV + f"{CTR} task kill -s KILL {cid}; for i in $(seq 50); do {CTR} task ls "
              f"| grep -q '^{cid} .*RUNNING' || break; sleep 0.1; done; "
              f"{CTR} task delete {cid}; {CTR} container delete {cid}", check=False)


def test_containerd_systemd_cgroup_drives_the_runner(ctd):
    """containerd's runc shim with SystemdCgroup (ctr --runc-systemd-cgroup) calls the runner
    with --systemd-cgroup and a slice:prefix:name path, as it calls runc: the same scope,
    limit and teardown."""
    sd = ctd
    seen = {}
    for kind in ("runner", "runc") if RUNC else ("runner",):
        cid = f"ctd{kind}"
        unit = f"ctd-{cid}.scope"
        sd.sh(ENV + f"{CTR} run -d --runc-binary {ctr_binary(kind)} --runc-systemd-cgroup "
              f"--cgroup system.slice:ctd:{cid} --memory-limit 50000000 --rootfs {ROOTFS} "
              f"{cid} /bin/sleep 100")
        try:
            props = show(sd, unit)
            assert props["ActiveState"] == "active" and props["Delegate"] == "yes"
            assert props["MemoryLimit"] == "50000000" and props["Slice"] == "system.slice"
            limit = sd.sh(f"cat /sys/fs/cgroup/memory/system.slice/{unit}/"
                          "memory.limit_in_bytes").stdout.strip()
            seen[kind] = ({k: v.replace(unit, "UNIT") for k, v in props.items()}, limit)
        finally:
            ctr_remove(sd, cid)
        assert gone(sd, unit)
        assert sd.sh(f"ls -d /sys/fs/cgroup/*/system.slice/{unit}", check=False).stdout == ""
    if "runc" in seen:
        assert seen["runner"] == seen["runc"]


def test_containerd_cri_pod_shape(ctd):
    """What containerd's CRI plugin with SystemdCgroup = true does through the runc shim
    (critest, by hand, passes the same for both runtimes), in a form CI can run without
    cri-tools: a pod sandbox and a container joining its namespaces, each a
    cri-containerd-ID.scope in the pod's kubelet-style nested slice; exec through the shim
    in the scope; the shim's metrics read from the scope's cgroup; UpdateContainerResources
    (`update --resources -`, the shim's call) through systemd; pause/resume through the
    shim; both scopes gone after the pod. Side by side with runc."""
    sd = ctd
    seen = {}
    for kind in ("runner", "runc") if RUNC else ("runner",):
        pod = f"kubepods-besteffort-pod{kind}.slice"
        sb, app = f"sb{kind}", f"app{kind}"
        run = ENV + f"{CTR} run -d --runc-binary {ctr_binary(kind)} --runc-systemd-cgroup "
        try:
            sd.sh(run + f"--cgroup {pod}:cri-containerd:{sb} --rootfs {ROOTFS} {sb} "
                  "/bin/sleep 1000")
            sbpid = init_pid_ctr(sd, sb)
            joins = " ".join(f"--with-ns {ns}:/proc/{sbpid}/ns/{f}"
                             for ns, f in (("network", "net"), ("ipc", "ipc"), ("uts", "uts")))
            sd.sh(run + f"--cgroup {pod}:cri-containerd:{app} --memory-limit 60000000 {joins} "
                  f"--rootfs {ROOTFS} {app} /bin/sleep 1000")
            apppid = init_pid_ctr(sd, app)
            unit = f"cri-containerd-{app}.scope"
            cg = (f"/kubepods.slice/kubepods-besteffort.slice/{pod}/{unit}")
            props = show(sd, unit)
            assert props["Slice"] == pod and props["ControlGroup"] == cg, props
            assert show(sd, f"cri-containerd-{sb}.scope")["ActiveState"] == "active"
            assert sd.sh(f"readlink /proc/{sbpid}/ns/net").stdout == \
                sd.sh(f"readlink /proc/{apppid}/ns/net").stdout
            # (/bin/cat: ctr gives a rootfs container no PATH; runc then finds no `cat`
            # where the runner searches its default PATH, process.DEFAULT_PATH)
            out = sd.sh(ENV + f"{CTR} task exec --exec-id e1 {app} /bin/cat /proc/self/cgroup"
                        ).stdout
            assert f":memory:{cg}" in out, out
            metrics = sd.sh(ENV + f"{CTR} task metrics {app}").stdout
            limit = [x.split()[1] for x in metrics.splitlines()
                     if x.startswith("memory.limit_in_bytes")]
            assert limit == ["59998208"], metrics  # page-rounded, read by the shim
            root = "/run/containerd/runc/default"  # the shim's --root for ctr's namespace
            rt = f"{ctr_binary(kind)} --root {root}"
            sd.sh(f"echo '{{\"memory\": {{\"limit\": 80000000}}, \"cpu\": {{\"shares\": "
                  f"256}}}}' | {rt} update --resources - {app}")
            upd = show(sd, unit)
            assert upd["MemoryLimit"] == "80000000" and upd["CPUShares"] == "256", upd
            sd.sh(ENV + f"{CTR} task pause {app}")
            paused = sd.sh(ENV + f"{CTR} task ls").stdout
            sd.sh(ENV + f"{CTR} task resume {app}")
            assert any(x.split()[::2] == [app, "PAUSED"] for x in paused.splitlines()), paused
            seen[kind] = ({k: v.replace(kind, "KIND") for k, v in upd.items()},
                          out.replace(kind, "KIND"), limit)
        finally:
            ctr_remove(sd, app, sb)
        for c in (app, sb):
            assert gone(sd, f"cri-containerd-{c}.scope")
            assert sd.sh(f"ls -d /sys/fs/cgroup/*/kubepods.slice/*/{pod}/cri-containerd-{c}.scope",
                         check=False).stdout == ""
    if "runc" in seen:
        assert seen["runner"] == seen["runc"]


def init_pid_ctr(sd, cid: str) -> int:
    for line in sd.sh(ENV + f"{CTR} task ls").stdout.splitlines():
        if line.split()[:1] == [cid]:
            return int(line.split()[1])
    raise AssertionError(f"no task {cid}")


def test_annotations_set_unit_properties(sd):
    """org.systemd.property.NAME annotations (podman sets TimeoutStopUSec so) reach the
    unit as runc sends them; a malformed one is refused naming it, leaving nothing."""
    notes = {"org.systemd.property.TimeoutStopUSec": "uint64 123000000",
             "org.systemd.property.CollectMode": "'inactive-or-failed'",
             "org.systemd.property.RuntimeMaxSec": "3600"}
    seen = {}
    for kind in ("runner", "runc") if RUNC else ("runner",):
        cid = f"ann{kind}"
        start(sd, kind, cid, bundle(sd, cid, annotations=notes))
        unit = f"{'runc' if kind == 'runc' else 'runner'}-{cid}.scope"
        try:
            out = sd.sh(f"systemctl show {unit} -p TimeoutStopUSec,CollectMode,"
                        "RuntimeMaxUSec").stdout
            seen[kind] = out
        finally:
            delete(sd, kind, cid)
    assert "TimeoutStopUSec=2min 3s" in seen["runner"]
    assert "CollectMode=inactive-or-failed" in seen["runner"]
    assert "RuntimeMaxUSec=1h" in seen["runner"]
    if "runc" in seen:
        assert seen["runner"] == seen["runc"]
    b = bundle(sd, "annbad", annotations={"org.systemd.property.TimeoutStopUSec": "uint64 x"})
    r = sd.sh(f"{runtime('runner')} --systemd-cgroup run -d --bundle {b} annbad", check=False)
    assert r.returncode != 0
    assert "annotations.org.systemd.property.TimeoutStopUSec" in r.stderr, r.stderr
    assert gone(sd, "runner-annbad.scope")
    assert sd.sh(f"{runtime('runner')} list -q").stdout.strip() == ""


@pytest.fixture(scope="module")
def sd2(tmp_path_factory):
    """systemd in unified (v2) mode: /sys/fs/cgroup is cgroup2 alone, in its namespace."""
    yield from _systemd(tmp_path_factory, unified=True)


def test_unified_mode_scope_as_runc(sd2):
    """On cgroup v2 systemd puts the scope at /sys/fs/cgroup/<slice>/<unit> and accounts IO
    (IOAccounting, not BlockIOAccounting): the same for both runtimes."""
    assert sd2.sh("stat -f -c %T /sys/fs/cgroup").stdout.strip() == "cgroup2fs"
    got = both(sd2, "v2", None)
    try:
        seen = {}
        for kind, (cid, unit, pid) in got.items():
            props = show(sd2, unit)
            assert props["ActiveState"] == "active" and props["Delegate"] == "yes"
            assert props["ControlGroup"] == f"/system.slice/{unit}"
            v2line = [x for x in sd2.sh(f"cat /proc/{pid}/cgroup").stdout.splitlines()
                      if x.startswith("0::")]
            assert v2line == [f"0::/system.slice/{unit}"]
            seen[kind] = {k: v.replace(unit, "UNIT") for k, v in props.items()}
        if "runc" in seen:
            assert seen["runner"] == seen["runc"]
    finally:
        for kind, (cid, unit, _) in got.items():
            delete(sd2, kind, cid)
    for kind, (cid, unit, _) in got.items():
        assert gone(sd2, unit)
        assert sd2.sh(f"ls -d /sys/fs/cgroup/system.slice/{unit}", check=False).stdout == ""


def test_a_taken_unit_name_is_refused_and_left_alone(sd):
    """Another container (here runc's) holds the unit: the runner's create fails naming
    it, and neither kills nor removes anything of the other's."""
    if not RUNC:
        pytest.skip("runc is not installed")
    start(sd, "runc", "taken", bundle(sd, "taken", {"pids": {"limit": 9}},
                                      "system.slice:shared:taken"))
    try:
        pid = init_pid(sd, "runc", "taken")
        b = bundle(sd, "taken2", None, "system.slice:shared:taken")
        r = sd.sh(f"{runtime('runner')} --systemd-cgroup run -d --bundle {b} taken2",
                  check=False)
        assert r.returncode != 0 and "shared-taken.scope" in r.stderr, r.stderr
        assert sd.sh(f"{runtime('runner')} list -q").stdout.strip() == ""
        assert show(sd, "shared-taken.scope")["ActiveState"] == "active"
        assert sd.sh(f"kill -0 {pid}", check=False).returncode == 0
        assert sd.sh("cat /sys/fs/cgroup/pids/system.slice/shared-taken.scope/pids.max"
                     ).stdout.strip() == "9"
    finally:
        delete(sd, "runc", "taken")


# ---- rootless: a user's `systemd --user` (unified mode: it delegates only on cgroup v2) ----

UID = 1500
USER = "sdtuser"
AS_USER = systemdkit.as_user(UID, USER)
USER_PROPS = PROPS + ("DevicePolicy", "DeviceAllow", "IOAccounting", "TasksMax", "MemoryMax")
MANAGER_CG = f"/user.slice/user-{UID}.slice/user@{UID}.service"


@pytest.fixture(scope="module")
def sdu(sd2):
    """A user with lingering on in the unified systemd (systemdkit.user_session)."""
    systemdkit.user_session(sd2, UID, USER)
    if sd2.sh(f"{AS_USER} test -x {PY} -a -r {ROOTFS}/bin/busybox", check=False).returncode:
        pytest.skip(f"{USER} cannot reach {PY} or {ROOTFS} (a checkout under a private "
                    "directory)")
    yield sd2


def user_runtime(kind: str) -> str:
    return (f"{AS_USER} {PY} -m runner --root /run/user/{UID}/runner" if kind == "runner"
            else f"{AS_USER} {IN_RUNC} --root /run/user/{UID}/runc")


def user_bundle(sd, name: str, resources: dict | None = None, cgroups_path: str = "") -> str:
    """A rootless bundle (spec --rootless: a user namespace mapping the user alone)."""
    from libcontainer.default_spec import default_config

    ids = [{"containerID": 0, "hostID": UID, "size": 1}]
    cfg = default_config(rootless=True, terminal=False, uid_mappings=ids, gid_mappings=ids)
    cfg["root"] = {"path": ROOTFS, "readonly": True}
    cfg["process"]["args"] = ["sleep", "1000"]
    if resources:
        cfg["linux"]["resources"] = resources
    if cgroups_path:
        cfg["linux"]["cgroupsPath"] = cgroups_path
    path = f"/home/{USER}/b/{name}"
    write = f"mkdir -p {path} && printf %s {shlex.quote(json.dumps(cfg))} > {path}/config.json"
    sd.sh(f"{AS_USER} sh -c {shlex.quote(write)}")
    return path


def user_show(sd, unit: str) -> dict:
    out = sd.sh(f"{AS_USER} systemctl --user show {unit} -p {','.join(USER_PROPS)}").stdout
    props = {}
    for line in out.splitlines():
        k, _, v = line.partition("=")
        props[k] = props[k] + "\n" + v if k in props else v  # DeviceAllow: one a line
    return props


def user_gone(sd, unit: str) -> bool:
    s = user_show(sd, unit)
    return s.get("ActiveState") == "inactive" and not s.get("ControlGroup")


def test_rootless_user_scope_as_runc(sdu):
    """The same user unit (user.slice of the user's manager, or a dash-nested slice of
    its own), the same properties in `systemctl --user show` and the same cgroup as runc
    1.1.5 rootless; exec, pause and ps in the scope; delete stops it."""
    seen = {}
    for path in ("", "sdtu-sub.slice:pfx:{cid}"):
        for kind in ("runner", "runc") if RUNC else ("runner",):
            cid = f"u{'n' if path else 'd'}{kind}"
            cp = path.format(cid=cid)
            rt = user_runtime(kind)
            sdu.sh(f"{rt} --systemd-cgroup run -d --bundle {user_bundle(sdu, cid, None, cp)} "
                   f"{cid}")
            unit = f"pfx-{cid}.scope" if cp else f"{kind}-{cid}.scope"
            try:
                props = user_show(sdu, unit)
                pid = json.loads(sdu.sh(f"{rt} state {cid}").stdout)["pid"]
                v2 = [x for x in sdu.sh(f"cat /proc/{pid}/cgroup").stdout.splitlines()
                      if x.startswith("0::")]
                seen[path, kind] = ({k: v.replace(unit, "UNIT") for k, v in props.items()},
                                    [x.replace(unit, "UNIT") for x in v2])
                if kind == "runner":  # (runc 1.1 leaves an exec outside: 0::/)
                    out = sdu.sh(f"{rt} exec {cid} cat /proc/self/cgroup").stdout
                    assert f"0::{props['ControlGroup']}" in out.splitlines(), out
                    sdu.sh(f"{rt} pause {cid}")
                    assert json.loads(sdu.sh(f"{rt} state {cid}").stdout)["status"] == "paused"
                    sdu.sh(f"{rt} resume {cid}")
                    assert "sleep" in sdu.sh(f"{rt} ps {cid}").stdout
            finally:
                sdu.sh(f"{rt} delete --force {cid}", check=False)
            assert user_gone(sdu, unit), user_show(sdu, unit)
            assert sdu.sh(f"find /sys/fs/cgroup{MANAGER_CG} -name {unit}").stdout == ""
    props, cg = seen["", "runner"]
    assert props["Slice"] == "user.slice" and props["Delegate"] == "yes"
    assert props["DefaultDependencies"] == "no" and props["ActiveState"] == "active"
    assert props["ControlGroup"] == f"{MANAGER_CG}/user.slice/UNIT"
    assert cg == [f"0::{MANAGER_CG}/user.slice/UNIT"]
    assert props["DevicePolicy"] == "strict" and "/dev/char/1:3 rwm" in props["DeviceAllow"]
    props, cg = seen["sdtu-sub.slice:pfx:{cid}", "runner"]
    assert cg == [f"0::{MANAGER_CG}/sdtu.slice/sdtu-sub.slice/UNIT"]
    if RUNC:
        for path in ("", "sdtu-sub.slice:pfx:{cid}"):
            assert seen[path, "runner"] == seen[path, "runc"], path


def test_rootless_limits_and_update(sdu):
    """A limit needs its controller in the user's subtree (this host's cgroup2 has none of
    memory, pids or cpu): refused by both runtimes, nothing left; an update that cannot be
    applied changes nothing, not even the unit's property (runc 1.1 leaves TasksMax set)."""
    res = {"pids": {"limit": 50}}
    controllers = sdu.sh(f"cat /sys/fs/cgroup{MANAGER_CG}/cgroup.controllers").stdout.split()
    for kind in ("runner", "runc") if RUNC else ("runner",):
        cid = f"ul{kind}"
        r = sdu.sh(f"{user_runtime(kind)} --systemd-cgroup run -d --bundle "
                   f"{user_bundle(sdu, cid, res)} {cid}", check=False)
        unit = f"{kind}-{cid}.scope"
        try:
            if "pids" in controllers:
                assert r.returncode == 0, r.stderr
                assert user_show(sdu, unit)["TasksMax"] == "50"
            else:
                assert r.returncode != 0, kind
                if kind == "runner":
                    assert "linux.resources.pids.limit" in r.stderr, r.stderr
                assert user_gone(sdu, unit)
                assert sdu.sh(f"{user_runtime(kind)} list -q").stdout.strip() == ""
        finally:
            sdu.sh(f"{user_runtime(kind)} delete --force {cid}", check=False)
    if "pids" in controllers:
        return
    rt = user_runtime("runner")
    sdu.sh(f"{rt} --systemd-cgroup run -d --bundle {user_bundle(sdu, 'uupd')} uupd")
    try:
        before = user_show(sdu, "runner-uupd.scope")
        r = sdu.sh(f"{rt} update --pids-limit 66 uupd", check=False)
        assert r.returncode != 0 and "linux.resources.pids.limit" in r.stderr, r.stderr
        assert user_show(sdu, "runner-uupd.scope") == before
    finally:
        sdu.sh(f"{rt} delete --force uupd", check=False)
    assert user_gone(sdu, "runner-uupd.scope")


@pytest.mark.parametrize("env, says", [
    ("DBUS_SESSION_BUS_ADDRESS=unix:path=/tmp/no-such-bus", "unix:path=/tmp/no-such-bus"),
    ("XDG_RUNTIME_DIR=", "XDG_RUNTIME_DIR"),
])
def test_rootless_without_the_user_bus(sdu, env, says):
    """No user bus: a clear error naming --systemd-cgroup and where it looked; no unit,
    no state (runc: "failed to connect to dbus")."""
    b = user_bundle(sdu, "ubus")
    r = sdu.sh(f"{AS_USER} {env} {PY} -m runner --root /run/user/{UID}/runner "
               f"--systemd-cgroup run -d --bundle {b} ubus", check=False)
    assert r.returncode != 0
    assert "--systemd-cgroup" in r.stderr and says in r.stderr, r.stderr
    assert sdu.sh(f"{user_runtime('runner')} list -q").stdout.strip() == ""
    assert user_gone(sdu, "runner-ubus.scope")


def test_rootless_on_hybrid_is_refused(sd):
    """A user's systemd delegates no v1 controller: rootless --systemd-cgroup on a hybrid
    systemd is refused by both runtimes, the runner naming the flag, nothing left."""
    sd.sh(f"id {USER} >/dev/null 2>&1 || useradd -m -u {UID} {USER}; "
          f"install -d -o {UID} -g {UID} -m 700 /run/user/{UID}")  # the state roots' parent
    for kind in ("runner", "runc") if RUNC else ("runner",):
        cid = f"uh{kind}"
        r = sd.sh(f"{user_runtime(kind)} --systemd-cgroup run -d --bundle "
                  f"{user_bundle(sd, cid)} {cid}", check=False)
        assert r.returncode != 0, (kind, r.stdout)
        if kind == "runner":
            assert "--systemd-cgroup" in r.stderr and "cgroup v2" in r.stderr, r.stderr
        else:  # "cannot use rootless systemd cgroups manager on cgroup v1"
            assert "cgroup v1" in r.stderr, r.stderr
        assert sd.sh(f"{user_runtime(kind)} list -q", check=False).stdout.strip() == ""
        assert sd.sh("systemctl list-units --all --no-legend '*uh*'").stdout == ""
