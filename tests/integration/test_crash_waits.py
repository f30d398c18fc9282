"""Bounded waits: no verb waits without a bound on a process that may not die or go on — a
process frozen in someone else's freezer cgroup (crun's suite does this to `delete -f`), a
hook that never exits (its timeout, and the default), a `start` whose init is gone, frozen
or stopped. On a bound: a clear error, exit status 1, the state kept, and once the cause is
gone a later `delete --force` finishes the job."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from conftest import REPO, RUNNER, marked_pids, new_id

FREEZER = "/sys/fs/cgroup/freezer"


def create_fails_within(b, cid: str, seconds: float) -> str:
    """libcontainer.create of the bundle, in this process, fails with a StartError within
    `seconds` and leaves no state: the error's text."""
    import libcontainer

    t = time.monotonic()
    with open(os.devnull, "w") as null:
        with pytest.raises(libcontainer.StartError) as e:
            libcontainer.create(b.path, cid, root=b.root, stdio=(null, null, null))
    assert time.monotonic() - t < seconds
    assert not os.path.exists(os.path.join(b.root, cid))
    return str(e.value)


def runner(b, *args, timeout=30):
    """A runner command whose container may outlive it: files for its stdio, not pipes."""
    log = os.path.join(os.path.dirname(b.path), "runner.log")
    with open(log, "ab") as out, open(log + ".err", "w+") as err:
        t = time.monotonic()
        r = subprocess.run(RUNNER + ["--root", b.root] + list(args), stdin=subprocess.DEVNULL,
                           stdout=out, stderr=err, timeout=timeout, cwd=REPO)
        r.seconds = time.monotonic() - t
        err.seek(0)
        r.stderr = err.read()
    return r


def state(b, cid):
    r = b.runner("state", cid, check=True)
    return json.loads(r.stdout)


class ForeignFreezer:
    """A v1 freezer cgroup that is not the container's, as an administrator makes one."""

    def __init__(self):
        if not os.path.isdir(FREEZER):
            pytest.skip("no v1 freezer hierarchy on this host (the case is v1's: a v2 "
                        "frozen task still dies of SIGKILL)")
        self.path = f"{FREEZER}/runner-test-{new_id()}"
        os.mkdir(self.path)

    def freeze(self, pid: int) -> None:
        with open(f"{self.path}/cgroup.procs", "w") as f:
            f.write(str(pid))
        with open(f"{self.path}/freezer.state", "w") as f:
            f.write("FROZEN")

    def thaw(self) -> None:
        with open(f"{self.path}/freezer.state", "w") as f:
            f.write("THAWED")

    def remove(self) -> None:
        self.thaw()
        for _ in range(200):
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:  # tasks still leaving
                for pid in open(f"{self.path}/cgroup.procs").read().split():
                    with open(f"{FREEZER}/cgroup.procs", "w") as f:
                        f.write(pid)
                time.sleep(0.02)


@pytest.fixture
def freezer():
    f = ForeignFreezer()
    yield f
    f.remove()


def test_delete_force_of_a_process_frozen_elsewhere(bundle, freezer):
    """crun's test_delete: the init moved into a frozen freezer cgroup of the admin's. kill
    returns, delete --force says what holds it (exit 1, at once, state kept); after the
    thaw the SIGKILL already sent lands and delete --force removes everything."""
    bundle.sh("sleep 1000")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    assert runner(bundle, "run", "-d", "--bundle", bundle.path, cid).returncode == 0
    pid = state(bundle, cid)["pid"]
    freezer.freeze(pid)
    r = runner(bundle, "kill", cid, "KILL")
    assert r.returncode == 0, r.stderr
    r = runner(bundle, "delete", "--force", cid)
    assert r.returncode == 1, r.stderr
    assert f"process {pid} is frozen in the freezer cgroup {freezer.path}" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert state(bundle, cid)["status"] == "running"  # kept, with all it owns
    freezer.thaw()
    r = runner(bundle, "delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert not marked_pids(bundle.mark)


def test_start_of_an_init_frozen_elsewhere_or_gone(bundle, freezer):
    bundle.sh("echo started")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    assert runner(bundle, "create", "--bundle", bundle.path, cid).returncode == 0
    pid = state(bundle, cid)["pid"]
    freezer.freeze(pid)
    r = runner(bundle, "start", cid)
    assert r.returncode == 1 and f"is frozen in the freezer cgroup {freezer.path}" in r.stderr, \
        r.stderr
    assert state(bundle, cid)["status"] == "created"
    freezer.thaw()
    # gone: the init killed behind the runtime's back
    os.kill(pid, signal.SIGKILL)
    for _ in range(500):
        if state(bundle, cid)["status"] == "stopped":
            break
        time.sleep(0.02)
    r = runner(bundle, "start", cid)
    assert r.returncode == 1 and "stopped" in r.stderr, r.stderr
    assert runner(bundle, "delete", "--force", cid).returncode == 0


def test_start_of_a_stopped_init(bundle):
    bundle.sh("echo started")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    assert runner(bundle, "create", "--bundle", bundle.path, cid).returncode == 0
    pid = state(bundle, cid)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        r = runner(bundle, "start", cid)
        assert r.returncode == 1 and "is stopped (SIGSTOP)" in r.stderr, r.stderr
        assert state(bundle, cid)["status"] == "created"
    finally:
        os.kill(pid, signal.SIGCONT)
    assert runner(bundle, "delete", "--force", cid).returncode == 0


HANG = ["/bin/sh", "-c", "sleep 1000 & sleep 1000"]


@pytest.mark.parametrize("stage", ["createRuntime", "createContainer"])
def test_hook_that_never_exits_times_out(bundle, stage):
    """The hook's own timeout: create fails after it, naming the hook, and the hook is
    gone with what it started (its process group); nothing of the container is left."""
    bundle.sh("true")
    mark = "HOOK_MARK=" + new_id()
    bundle.config["hooks"] = {stage: [{"path": HANG[0], "args": HANG, "env": [mark],
                                       "timeout": 1}]}
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    r = runner(bundle, "create", "--bundle", bundle.path, cid)
    assert r.returncode == 1, r.stderr
    assert f"hooks.{stage}[0]" in r.stderr and "timed out" in r.stderr, r.stderr
    assert r.seconds < 10
    time.sleep(0.1)
    assert not marked_pids(mark), "the hook's children outlived its timeout"
    assert not os.path.exists(os.path.join(bundle.root, cid))


def test_hook_without_timeout_gets_the_default(bundle, monkeypatch):
    """No `timeout`: hooks.DEFAULT_TIMEOUT bounds it (shortened here through the library,
    in this process), in the runtime's namespace and in the container's."""
    from libcontainer import hooks

    monkeypatch.setattr(hooks, "DEFAULT_TIMEOUT", 1)
    bundle.sh("true")
    for stage in ("createRuntime", "createContainer"):
        bundle.config["hooks"] = {stage: [{"path": HANG[0], "args": HANG}]}
        bundle.write()
        cid = new_id()
        bundle.last_id = cid
        err = create_fails_within(bundle, cid, 10)
        assert f"hooks.{stage}[0]" in err and "timed out" in err


def test_kill_bound_for_a_process_that_does_not_die(bundle, freezer, monkeypatch):
    """The general bound, for what no check recognises (here the frozen process, with the
    check of foreign freezers switched off and the bound shortened, through the library):
    delete(force=True) gives up after KILL_TIMEOUT with the pids left; the state stays,
    and force_delete finishes once the process can die."""
    import libcontainer
    from libcontainer import cgroups

    bundle.sh("sleep 1000")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    with open(os.devnull, "w") as null:
        c = libcontainer.create(bundle.path, cid, root=bundle.root, stdio=(null, null, null))
    c.start()
    freezer.freeze(c.pid)
    monkeypatch.setattr(cgroups.manager, "KILL_TIMEOUT", 1.0)
    monkeypatch.setattr(cgroups.manager, "frozen_elsewhere", lambda pids, own: [])
    t = time.monotonic()
    with pytest.raises(libcontainer.ContainerError) as e:
        libcontainer.load(cid, bundle.root).delete(force=True)
    assert time.monotonic() - t < 8
    assert f"{c.pid}" in str(e.value) and "did not die within 1 s" in str(e.value), str(e.value)
    assert libcontainer.load(cid, bundle.root).status() == "running"
    freezer.thaw()
    removed = []
    libcontainer.force_delete(cid, bundle.root, report=removed.append)
    assert any(m.startswith("removed cgroup") for m in removed), removed
    c._reap()
    assert not marked_pids(bundle.mark)


def test_setup_bound_for_an_init_that_stops(bundle, tmp_path, monkeypatch):
    """The child stopped in the middle of its setup (a createRuntime hook SIGSTOPs it):
    create gives up after the setup bound (launch.SETUP_TIMEOUT, shortened here through the
    library), names the reason, and leaves nothing."""
    from libcontainer import launch

    monkeypatch.setattr(launch, "SETUP_TIMEOUT", 1.0)
    stopper = tmp_path / "stop-init.sh"
    stopper.write_text('#!/bin/sh\nread -r s\n'
                       'pid=$(echo "$s" | sed \'s/.*"pid": *\\([0-9]*\\).*/\\1/\')\n'
                       'kill -STOP "$pid"\n')
    stopper.chmod(0o755)
    bundle.sh("true")
    bundle.config["hooks"] = {"createRuntime": [{"path": str(stopper)}]}
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    err = create_fails_within(bundle, cid, 10)
    assert "did not go on with its setup for 1 s" in err, err
