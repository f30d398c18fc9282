"""The OCI lifecycle through the CLI: create → start → stopped → delete, state, kill, list,
ps, and the errors for operations in the wrong status (runtime.md)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, new_id


def detached(bundle, *args, timeout=30):
    """A runner command whose container outlives it: its stdio must not be our pipes."""
    cmd = RUNNER + ["--root", bundle.root] + list(args)
    err_path = os.path.join(bundle.path, f"err-{os.getpid()}-{threading.get_ident()}.log")
    with open(os.path.join(bundle.path, "out.log"), "ab") as out, open(err_path, "w+") as err:
        r = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err, text=True,
                           timeout=timeout, cwd=REPO)
        err.seek(0)
        r.stderr = err.read()
    return r


def writable(bundle):
    bundle.config["root"]["readonly"] = False
    return bundle


def state(bundle, cid):
    r = bundle.runner("state", cid, check=True)
    return json.loads(r.stdout)


def wait_status(bundle, cid, want, tries=200):
    for _ in range(tries):
        s = state(bundle, cid)
        if s["status"] == want:
            return s
        time.sleep(0.02)
    raise AssertionError(f"{cid} never became {want}: {s}")


def create(bundle, cid=None, *extra):
    bundle.write()
    cid = cid or new_id()
    bundle.last_id = cid
    r = detached(bundle, "create", "--bundle", bundle.path, *extra, cid)
    assert r.returncode == 0, r.stderr
    return cid


def run_detached(bundle, *extra):
    """`run -d` the bundle's config under a new id; returns the id (bundle.last_id too)."""
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    r = detached(bundle, "run", "-d", "--bundle", bundle.path, *extra, cid)
    assert r.returncode == 0, r.stderr
    return cid


def test_create_start_delete(bundle):
    writable(bundle).sh("echo started > /started; sleep 0.2")
    cid = create(bundle)
    s = state(bundle, cid)
    assert s["status"] == "created"
    assert s["id"] == cid and s["bundle"] == bundle.path and s["ociVersion"]
    assert s["pid"] > 0
    # the init waits before execve: the user's process has not run
    assert not os.path.exists(os.path.join(bundle.rootfs, "started"))
    with open(f"/proc/{s['pid']}/status") as f:
        assert "NoNewPrivs:\t0" in f.read() or True  # still the runtime's init, alive
    bundle.runner("start", cid, check=True)
    wait_status(bundle, cid, "stopped")
    assert open(os.path.join(bundle.rootfs, "started")).read() == "started\n"
    assert state(bundle, cid)["pid"] == 0
    bundle.runner("delete", cid, check=True)
    assert bundle.runner("state", cid).returncode == 1
    assert_nothing_left(bundle)


def test_start_twice_and_wrong_status(bundle):
    bundle.sh("sleep 30")
    cid = create(bundle)
    try:
        bundle.runner("start", cid, check=True)
        assert state(bundle, cid)["status"] == "running"
        r = bundle.runner("start", cid)
        assert r.returncode == 1 and "running, not created" in r.stderr
        # delete without --force must fail and change nothing (the spec's MUST)
        r = bundle.runner("delete", cid)
        assert r.returncode == 1 and "not stopped" in r.stderr
        assert state(bundle, cid)["status"] == "running"
    finally:
        bundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(bundle)


def test_delete_refuses_created_container(bundle):
    cid = create(bundle)
    r = bundle.runner("delete", cid)
    assert r.returncode == 1 and "created" in r.stderr
    assert state(bundle, cid)["status"] == "created"
    bundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(bundle)


@pytest.mark.parametrize("sig", ["KILL", "SIGKILL", "9", "TERM"])
def test_kill_signal_names_and_numbers(bundle, sig):
    # sh as pid 1 gets a handler for TERM so that TERM can end it too
    bundle.sh("trap 'exit 3' TERM; while true; do sleep 0.05; done")
    cid = run_detached(bundle)
    wait_status(bundle, cid, "running")
    time.sleep(0.1)  # let sh install its trap
    bundle.runner("kill", cid, sig, check=True)
    wait_status(bundle, cid, "stopped")
    bundle.runner("delete", cid, check=True)
    assert_nothing_left(bundle)


@pytest.mark.parametrize("pid_ns", [True, False], ids=["own-pidns", "host-pidns"])
def test_kill_of_a_created_container(bundle, pid_ns):
    """A created container's init is still the runtime's: runc's (Go) ends on HUP, INT,
    TERM, QUIT… and ignores the rest, also as the init of a pid namespace, which the
    kernel shields from signals it has no handler for (issue 11, point 8)."""
    if not pid_ns:
        bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "pid"]
    bundle.set_args("sleep", "100")
    cid = create(bundle)
    for sig in ("USR1", "WINCH", "ALRM", "RTMIN+3"):
        bundle.runner("kill", cid, sig, check=True)
    time.sleep(0.1)
    assert state(bundle, cid)["status"] == "created"
    bundle.runner("kill", cid, "TERM", check=True)
    wait_status(bundle, cid, "stopped")
    bundle.runner("delete", cid, check=True)
    assert_nothing_left(bundle)
    # a created container that got nothing fatal still starts and runs its process
    bundle.sh("echo ran >> /out")
    writable(bundle)
    cid = create(bundle)
    bundle.runner("kill", cid, "USR2", check=True)
    bundle.runner("start", cid, check=True)
    wait_status(bundle, cid, "stopped")
    with open(os.path.join(bundle.rootfs, "out")) as f:
        assert f.read() == "ran\n"
    bundle.runner("delete", cid, check=True)


def test_kill_errors(bundle):
    r = bundle.runner("kill", "nosuch", "KILL")
    assert r.returncode == 1 and "does not exist" in r.stderr
    bundle.sh("sleep 30")
    cid = create(bundle)
    try:
        r = bundle.runner("kill", cid, "NOSIG")
        assert r.returncode == 1 and "unknown signal" in r.stderr
        assert state(bundle, cid)["status"] == "created"
    finally:
        bundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(bundle)


def test_kill_signal_zero_as_runc(bundle, tmp_path):
    """Signal 0 is kill(2)'s existence check (issue 17, point 8): `kill ID 0` and `kill
    --all ID 0` succeed on a created or running container and change nothing; on a stopped
    one `kill ID 0` fails ("not running") and `kill --all` does not, as runc's do. Side by
    side with runc on the same bundle; without runc, against what runc 1.1.5 answered."""
    import shutil

    runc = shutil.which("runc")
    bundle.sh("trap 'exit 3' TERM; while true; do sleep 0.05; done")

    def probe(kill, start, stop, status):
        out = []
        for when in ("created", "running", "stopped"):
            if when == "running":
                start()
                assert status() == "running"
            elif when == "stopped":
                stop()
            for flags in ([], ["--all"]):
                out.append((when, *flags, kill(*flags, "0")))
            assert status() == when  # signal 0 changed nothing
        return out

    cid = create(bundle)
    try:
        ours = probe(lambda *a: bundle.runner("kill", *a[:-1], cid, a[-1]).returncode,
                     lambda: bundle.runner("start", cid, check=True),
                     lambda: (bundle.runner("kill", cid, "KILL", check=True),
                              wait_status(bundle, cid, "stopped")),
                     lambda: state(bundle, cid)["status"])
    finally:
        bundle.runner("delete", "--force", cid)
    expected = [("created", 0), ("created", "--all", 0), ("running", 0),
                ("running", "--all", 0), ("stopped", 1), ("stopped", "--all", 0)]
    if runc:
        root = str(tmp_path / "runc-state")
        theirs = "runc-" + cid

        def rc(*args):
            with open(tmp_path / "runc.log", "w") as log:
                r = subprocess.run([runc, "--root", root, *args], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=log, timeout=30)
            return r

        def runc_status():
            r = subprocess.run([runc, "--root", root, "state", theirs], capture_output=True,
                               timeout=30)
            return json.loads(r.stdout)["status"]

        def runc_stop():
            rc("kill", theirs, "KILL")
            for _ in range(200):
                if runc_status() == "stopped":
                    return
                time.sleep(0.02)

        assert rc("create", "--bundle", bundle.path, theirs).returncode == 0
        try:
            expected = probe(lambda *a: rc("kill", *a[:-1], theirs, a[-1]).returncode,
                             lambda: rc("start", theirs), runc_stop, runc_status)
        finally:
            rc("delete", "--force", theirs)
    assert ours == expected
    assert_nothing_left(bundle)


@pytest.mark.parametrize("pid_ns,flags", [(True, ["--all"]), (False, ["--all"]), (False, [])],
                         ids=["own-pid-ns", "host-pid-ns", "host-pid-ns-without-all"])
def test_kill_all(bundle, pid_ns, flags):
    """--all reaches every process: through the pid namespace, or the cgroup without one.
    Without a pid namespace of its own the init's death takes nothing with it, so KILL
    goes to the whole cgroup even without --all, as runc's does."""
    if not pid_ns:
        import libcontainer.cgroups as cg
        if not hasattr(cg, "Manager"):
            pytest.skip("without a pid namespace the container's processes are its cgroup's")
        bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != "pid"]
    bundle.sh("trap '' TERM; sleep 30 & sleep 30 & wait")
    cid = run_detached(bundle)
    try:
        for _ in range(100):
            if len(json.loads(bundle.runner("ps", "--format", "json", cid).stdout)) >= 3:
                break
            time.sleep(0.02)
        pids = json.loads(bundle.runner("ps", "--format", "json", cid, check=True).stdout)
        assert len(pids) >= 3
        bundle.runner("kill", *flags, cid, "KILL", check=True)
        wait_status(bundle, cid, "stopped")
        time.sleep(0.1)
        assert not [p for p in pids if os.path.exists(f"/proc/{p}") and
                    open(f"/proc/{p}/stat").read().split(")")[1].split()[0] != "Z"]
    finally:
        bundle.runner("delete", "--force", cid)
    assert_nothing_left(bundle)


def test_sigkill_of_a_paused_container_kills_it(bundle):
    """A frozen task takes SIGKILL only when thawed: kill KILL thaws after signalling, so
    the container stops without a resume. Other signals leave it paused."""
    bundle.sh("trap '' TERM; sleep 30")
    cid = run_detached(bundle)
    try:
        bundle.runner("pause", cid, check=True)
        bundle.runner("kill", cid, "TERM", check=True)
        time.sleep(0.1)
        assert state(bundle, cid)["status"] == "paused"
        bundle.runner("kill", cid, "KILL", check=True)
        wait_status(bundle, cid, "stopped")
        bundle.runner("delete", cid, check=True)
    finally:
        bundle.runner("delete", "--force", cid)
    assert_nothing_left(bundle)


def test_list_and_ps(bundle):
    bundle.sh("sleep 30")
    cid = create(bundle)
    try:
        r = bundle.runner("list", check=True)
        assert r.stdout.splitlines()[0].split() == ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]
        assert cid in r.stdout and "created" in r.stdout
        assert bundle.runner("list", "-q", check=True).stdout == cid + "\n"
        listed = json.loads(bundle.runner("list", "--format", "json", check=True).stdout)
        assert [c["id"] for c in listed] == [cid]
        bundle.runner("start", cid, check=True)
        pids = json.loads(bundle.runner("ps", "--format", "json", cid, check=True).stdout)
        assert pids == [state(bundle, cid)["pid"]]
        # runc's table: ps -ef's own, the header and the container's processes only
        table = bundle.runner("ps", cid, check=True).stdout.splitlines()
        assert table[0].split()[:3] == ["UID", "PID", "PPID"]
        assert [line.split()[1] for line in table[1:]] == [str(pids[0])]
        assert table[1].endswith("sleep 30")
        # options after the id go to ps(1), dashes and all
        table = bundle.runner("ps", cid, "-o", "pid,comm", check=True).stdout.splitlines()
        assert [line.split() for line in table] == [["PID", "COMMAND"], [str(pids[0]), "sleep"]]
        # without ps(1): the runner's own table from /proc; options then cannot work
        no_ps = {"PATH": "/nonexistent"}
        table = bundle.runner("ps", cid, env=no_ps, check=True).stdout.splitlines()
        assert table[0].split() == ["UID", "PID", "PPID", "CMD"]
        assert table[1].split()[1] == str(pids[0]) and table[1].endswith("sleep 30")
        r = bundle.runner("ps", cid, "-ef", env=no_ps)
        assert r.returncode == 1 and "not installed" in r.stderr
        r = bundle.runner("ps", cid, "-o", "comm")
        assert r.returncode == 1 and "couldn't find PID field" in r.stderr
        r = bundle.runner("ps", "--format", "json", cid, "-ef")
        assert r.returncode == 1 and "--format json" in r.stderr
        r = bundle.runner("list", "--format", "yaml")
        assert r.returncode == 1 and "--format" in r.stderr
    finally:
        bundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(bundle)


def test_pid_file(bundle, tmp_path):
    bundle.sh("sleep 30")
    pid_file = str(tmp_path / "pid")
    cid = create(bundle, None, "--pid-file", pid_file)
    try:
        assert int(open(pid_file).read()) == state(bundle, cid)["pid"]
    finally:
        bundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(bundle)


def test_concurrent_creates_one_wins(bundle):
    bundle.sh("sleep 30")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    results = []

    def go():
        results.append(detached(bundle, "create", "--bundle", bundle.path, cid))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        codes = sorted(r.returncode for r in results)
        assert codes == [0, 1], [r.stderr for r in results]
        loser = next(r for r in results if r.returncode == 1)
        assert "already exists" in loser.stderr
        assert state(bundle, cid)["status"] == "created"
    finally:
        bundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(bundle)


def test_runner_killed_during_create(bundle):
    """A runner SIGKILLed midway leaves a container that `delete --force` removes whole."""
    bundle.config["hooks"] = {"createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"]}]}
    bundle.sh("sleep 30")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    p = subprocess.Popen(RUNNER + ["--root", bundle.root, "create", "--bundle", bundle.path, cid],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, cwd=REPO)
    try:
        for _ in range(500):  # until the init exists and the hook runs
            if os.path.exists(os.path.join(bundle.root, cid, "state.json")) and \
                    json.load(open(os.path.join(bundle.root, cid, "state.json")))["pid"]:
                break
            time.sleep(0.01)
        time.sleep(0.1)
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        subprocess.run(["pkill", "-f", "sleep 30$"], capture_output=True)  # the orphaned hook
        r = bundle.runner("delete", "--force", cid)
        assert r.returncode == 0, r.stderr
    finally:
        if p.poll() is None:
            p.kill()
    assert_nothing_left(bundle)


def test_unknown_container(bundle):
    for verb in (["state"], ["start"], ["delete"], ["kill"], ["ps"], ["exec"]):
        r = bundle.runner(*verb, "nosuch", *(["true"] if verb == ["exec"] else []))
        assert r.returncode == 1, verb
        assert "container does not exist" in r.stderr, (verb, r.stderr)
    assert bundle.runner("delete", "--force", "nosuch").returncode == 0
    # a file, not a directory, in the root: no container either, and not in the list
    os.makedirs(bundle.root, exist_ok=True)
    open(os.path.join(bundle.root, "afile"), "w").close()
    r = bundle.runner("state", "afile")
    assert r.returncode == 1 and r.stderr.endswith("container does not exist: afile\n"), r.stderr
    r = bundle.runner("list", "-q")
    assert r.returncode == 0 and "afile" not in r.stdout, r.stdout


def test_log_file_json(bundle, tmp_path):
    log = tmp_path / "log.json"
    r = subprocess.run(RUNNER + ["--root", bundle.root, "--log", str(log), "--log-format", "json",
                                 "state", "nosuch"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 1
    entry = json.loads(log.read_text().splitlines()[-1])
    assert entry["level"] == "error" and "does not exist" in entry["msg"]


def test_systemd_cgroup_without_systemd_is_refused_clearly(bundle, tmp_path):
    """No systemd to talk to: an error naming the flag, and nothing left (no state, no
    cgroup); verbs that need no cgroup still work with the flag."""
    env = dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=f"unix:path={tmp_path}/nobus")
    r = bundle.runner("--systemd-cgroup", "list", env=env)
    assert r.returncode == 0, r.stderr
    cid = new_id()
    bundle.write()
    bundle.last_id = cid
    r = bundle.runner("--systemd-cgroup", "run", "--bundle", bundle.path, cid, env=env)
    assert r.returncode == 1 and "--systemd-cgroup" in r.stderr and "nobus" in r.stderr
    assert "--systemd-cgroup" not in r.stderr.split("nobus")[1]  # said once
    assert not os.path.exists(os.path.join(bundle.root, cid))
    assert not any(os.path.exists(f"{m}/runner-{cid}") or os.path.exists(
        f"{m}/system.slice/runner-{cid}.scope") for m in _cgroup_mounts())
    bundle.linux["cgroupsPath"] = "/not/systemd"
    bundle.write()
    r = bundle.runner("--systemd-cgroup", "run", "--bundle", bundle.path, cid, env=env)
    assert r.returncode == 1 and "linux.cgroupsPath" in r.stderr
    assert "slice:prefix:name" in r.stderr
    assert not os.path.exists(os.path.join(bundle.root, cid))
    assert_nothing_left(bundle, cid)


def _cgroup_mounts() -> list:
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            if " - cgroup" in line:
                out.append(line.split()[4])
    return out


def test_run_detach_then_delete_force(bundle):
    bundle.sh("sleep 30")
    cid = run_detached(bundle)
    pid = state(bundle, cid)["pid"]
    assert state(bundle, cid)["status"] == "running"
    bundle.runner("delete", "--force", cid, check=True)
    time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}") or "Z" in open(f"/proc/{pid}/stat").read().split(")")[1][:3]
    assert_nothing_left(bundle)


def test_commands_on_one_container_are_serialised(bundle):
    """While one command holds the container's lock (here: a create whose createRuntime
    hook is still running), another command on the same id waits for it."""
    gate = os.path.join(bundle.path, "gate")
    bundle.config["hooks"] = {"createRuntime": [
        {"path": "/bin/sh", "args": ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"]}]}
    bundle.sh("sleep 30")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    creator = threading.Thread(target=detached, args=(bundle, "create", "--bundle", bundle.path, cid))
    creator.start()
    for _ in range(500):
        if os.path.exists(os.path.join(bundle.root, cid, "state.json")):
            break
        time.sleep(0.01)
    results = []
    deleter = threading.Thread(target=lambda: results.append(bundle.runner("delete", cid)))
    deleter.start()
    time.sleep(0.5)
    assert deleter.is_alive(), "delete did not wait for the create in progress"
    open(gate, "w").close()
    creator.join(30)
    deleter.join(30)
    # it ran after the create finished, so it saw a created container and refused
    assert results[0].returncode == 1 and "created" in results[0].stderr
    assert state(bundle, cid)["status"] == "created"
    bundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(bundle)


def test_delete_force_of_a_paused_container(bundle):
    """Frozen tasks take no signal until thawed: delete --force must still remove all."""
    bundle.sh("sleep 30 & sleep 30")
    cid = run_detached(bundle)
    bundle.runner("pause", cid, check=True)
    assert state(bundle, cid)["status"] == "paused"
    r = bundle.runner("delete", cid)
    assert r.returncode == 1 and "paused" in r.stderr
    bundle.runner("delete", "--force", cid, check=True, timeout=20)
    assert_nothing_left(bundle)


def test_damaged_state_is_reported_and_removable(bundle):
    d = os.path.join(bundle.root, "broken")
    os.makedirs(d)
    with open(os.path.join(d, "state.json"), "w") as f:
        f.write("{not json")
    r = bundle.runner("list")
    assert r.returncode == 0 and "broken" in r.stderr and "damaged" in r.stderr
    r = bundle.runner("state", "broken")
    assert r.returncode == 1 and "damaged" in r.stderr and "Traceback" not in r.stderr
    assert bundle.runner("delete", "broken").returncode == 1
    assert os.path.isdir(d)
    bundle.runner("delete", "--force", "broken", check=True)
    assert not os.path.exists(d)


def test_run_keep_leaves_a_stopped_container_to_inspect(bundle):
    r = bundle.sh("exit 3").run(None, "--keep")
    assert r.returncode == 3
    s = state(bundle, bundle.last_id)
    assert s["status"] == "stopped" and s["pid"] == 0
    bundle.runner("delete", bundle.last_id, check=True)
    assert_nothing_left(bundle)
