"""Fault injection: `runner create`, `start` and `delete` killed with SIGKILL at every crash
point (RUNNER_CRASH_AT=K makes the runner kill itself at the K-th one, see state.py), then
`runner delete --force`: nothing of the container may remain — no process, no cgroup
directory in any hierarchy (v1 or v2), no mount, no state entry, no open fd — and until then
`runner list` shows what is left so that it can be found."""
from __future__ import annotations

import json
import os
import re
import time

import pytest

from conftest import (REPO, RUNNER, cgroup_dir_of, cgroup_dirs, marked_pids, new_id,
                      state_entries)


def runner(b, *args, env=None, timeout=60):
    """A runner command whose container may outlive it: its stdio must not be our pipes
    (the init keeps them), so it gets files."""
    import subprocess

    with open(b.log, "ab") as out, open(b.log + ".err", "w+") as err:
        r = subprocess.run(RUNNER + ["--root", b.root] + list(args), stdin=subprocess.DEVNULL,
                           stdout=out, stderr=err, timeout=timeout, cwd=REPO, env=env)
        err.seek(0)
        r.stderr = err.read()
    return r


def fds_into(*paths) -> list:
    """Open fds of any process that point into one of `paths`."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if any(target.startswith(p + "/") or target == p for p in paths):
                out.append(f"pid {pid} fd {fd} -> {target}")
    return out


def what_is_left(b, cid: str) -> list:
    left = []
    if os.path.isdir(b.root):
        entries = sorted(state_entries(b.root))
        if entries:
            left.append("state " + ",".join(
                f"{e}[{','.join(sorted(os.listdir(os.path.join(b.root, e))))}]"
                if os.path.isdir(os.path.join(b.root, e)) else e for e in entries))
    dirs = cgroup_dirs(cid)
    if dirs:
        left.append(f"{len(dirs)} cgroup dirs")
    pids = marked_pids(b.mark)
    if pids:
        left.append(f"{len(pids)} processes")
    with open("/proc/self/mountinfo") as f:
        mounts = [ln.split()[4] for ln in f if b.path in ln.split()[4]]
    if mounts:
        left.append(f"{len(mounts)} mounts")
    fds = fds_into(b.root, b.path)
    if fds:
        left.append(f"{len(fds)} fds")
    return left


def scrub(b, cid: str) -> None:
    """Remove by hand what delete --force failed to, so that a failing run leaves nothing
    on the machine either."""
    import shutil
    import time

    for pid in marked_pids(b.mark):
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    for d in sorted(cgroup_dirs(cid), key=len, reverse=True):
        for _ in range(100):
            try:
                for sub, dirs, _ in os.walk(d, topdown=False):
                    os.rmdir(sub)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)  # tasks still leaving
    shutil.rmtree(b.root, ignore_errors=True)


def prepare(b, tmp_path) -> None:
    b.sh("sleep 1000")
    b.config["hooks"] = {"createRuntime": [{"path": "/bin/true"}]}
    b.linux["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 64}}
    b.write()
    b.pid_file = str(tmp_path / "pid")
    b.log = str(tmp_path / "runner.log")


def listed(b, cid: str) -> str:
    """The status `runner list` shows for the container, "" if it is not listed."""
    r = b.runner("list", "--format", "json", check=True)
    for c in json.loads(r.stdout or "[]") or []:
        if c["id"] == cid:
            return c["status"]
    return ""


def sweep(b, verb: list, setup=None, limit: int = 80) -> list:
    """Kill `runner VERB… ID` at crash point 1, 2, … until it completes; after each kill,
    `delete --force` must leave nothing. Returns (point, name, what it left) rows."""
    rows = []
    base = b.root
    for k in range(1, limit):
        cid = new_id()
        b.last_id = cid
        b.root = f"{base}-{k}"  # each point's leftovers on their own
        if setup:
            setup(cid)
        fd_count = own_fd_count()
        r = runner(b, *verb, cid, env=dict(os.environ, RUNNER_CRASH_AT=str(k)))
        if r.returncode != -9:
            assert r.returncode == 0, f"{verb} without a crash: {r.stderr}"
            d = runner(b, "delete", "--force", cid)
            assert d.returncode == 0 and not what_is_left(b, cid), d.stderr
            return rows
        m = re.search(r"crash point (\d+): (.*)", r.stderr)
        name = (m.group(2) if m else "?").replace(cid, "ID")
        before = what_is_left(b, cid)
        status = listed(b, cid) if os.path.isdir(os.path.join(b.root, cid)) else "-"
        d = runner(b, "--debug", "delete", "--force", cid)
        left = what_is_left(b, cid)
        if d.returncode != 0:
            left.append(f"delete --force exit {d.returncode}: {d.stderr.strip()[:200]}")
        if own_fd_count() != fd_count:
            left.append("test process fds changed")
        rows.append((k, name, before, status, left))
        if left:
            scrub(b, cid)
    raise AssertionError(f"{verb} never completed within {limit} crash points")


def report(title: str, rows: list) -> None:
    print(f"\n{title}: {len(rows)} crash points")
    for k, name, before, status, left in rows:
        print(f"  {k:2d} {name:<50} list={status:<9} crashed: {'; '.join(before) or 'nothing'}"
              f" | after delete --force: {'; '.join(left) or 'nothing'}")


def check(rows: list) -> None:
    bad = [(k, name, left) for k, name, _, _, left in rows if left]
    assert not bad, f"left behind after delete --force: {bad}"
    unlisted = [(k, name) for k, name, before, status, _ in rows if before and status == ""]
    assert not unlisted, f"something was left but `runner list` did not show it: {unlisted}"
    # with no directory at the ID, a crash left at most a create's or a delete's private
    # directory: files, not a process, cgroup or mount
    hidden = [(k, name, before) for k, name, before, status, _ in rows if status == "-" and
              any(not re.fullmatch(r"state \.(creating|deleted)-[-0-9]+\[[^]]*\]", x) for x in before)]
    assert not hidden, f"left with no state dir at the ID: {hidden}"


def test_create_killed_at_every_point(bundle, tmp_path):
    prepare(bundle, tmp_path)
    rows = sweep(bundle, ["create", "--bundle", bundle.path, "--pid-file", bundle.pid_file])
    report("create", rows)
    assert len(rows) >= 10
    check(rows)


def test_start_killed_at_every_point(bundle, tmp_path):
    prepare(bundle, tmp_path)

    def created(cid):
        assert runner(bundle, "create", "--bundle", bundle.path, cid).returncode == 0

    rows = sweep(bundle, ["start"], setup=created)
    report("start", rows)
    check(rows)


def test_delete_killed_at_every_point(bundle, tmp_path):
    prepare(bundle, tmp_path)

    def running(cid):
        assert runner(bundle, "run", "-d", "--bundle", bundle.path, cid).returncode == 0

    rows = sweep(bundle, ["delete", "--force"], setup=running)
    report("delete --force", rows)
    check(rows)


def test_delete_force_of_nothing(bundle):
    """As with runc: --force of an ID with nothing left succeeds, plain delete says it does
    not exist; either leaves nothing."""
    cid = new_id()
    bundle.last_id = cid
    r = bundle.runner("delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    r = bundle.runner("delete", cid)
    assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr


def test_delete_force_finds_what_no_state_describes(bundle, tmp_path):
    """A running container whose state dir is damaged, then one whose state dir is gone:
    delete --force still kills its processes and removes its cgroups (named for the ID),
    says so with --debug, and `list` shows the damaged one so that it can be found."""
    prepare(bundle, tmp_path)
    for damage in ("garbage", "gone"):
        cid = new_id()
        bundle.last_id = cid
        assert runner(bundle, "run", "-d", "--bundle", bundle.path, cid).returncode == 0
        assert marked_pids(bundle.mark) and cgroup_dirs(cid)
        state = os.path.join(bundle.root, cid, "state.json")
        if damage == "garbage":
            with open(state, "w") as f:
                f.write('{"id": "half-writ')
            assert listed(bundle, cid) == "stopped"
            r = runner(bundle, "delete", cid)
            assert r.returncode == 1 and "damaged" in r.stderr, r.stderr
        else:
            import shutil

            shutil.rmtree(os.path.join(bundle.root, cid))
        r = runner(bundle, "--debug", "delete", "--force", cid)
        assert r.returncode == 0, r.stderr
        assert not what_is_left(bundle, cid)
        assert re.search(r"removed cgroup /sys/fs/cgroup/\S+/runner-" + cid, r.stderr), r.stderr
        assert "killed" in r.stderr, r.stderr
        if damage == "garbage":
            assert f"removed state directory {bundle.root}/{cid}" in r.stderr, r.stderr
        r = runner(bundle, "delete", "--force", cid)  # idempotent
        assert r.returncode == 0 and not r.stderr, r.stderr


def pids_root() -> str:
    """The pids controller's hierarchy (v1 pids, or cgroup2 where it has pids)."""
    d = cgroup_dir_of("pids")
    if d is None:
        pytest.skip("this host has no pids controller")
    return d


def test_cgroup_with_processes_is_refused_and_left_alone(bundle, tmp_path):
    """linux.cgroupsPath naming a cgroup that already has processes: refused, naming the
    field, and the processes there (not the container's) are not killed."""
    import subprocess
    import time

    prepare(bundle, tmp_path)
    other = new_id()
    holder = subprocess.Popen(["sleep", "60"])
    try:
        pids = pids_root()
        d = f"{pids}/{other}"
        os.mkdir(d)
        try:
            with open(f"{d}/cgroup.procs", "w") as f:
                f.write(str(holder.pid))
            bundle.linux["cgroupsPath"] = f"/{other}"
            bundle.write()
            cid = new_id()
            bundle.last_id = cid
            r = runner(bundle, "create", "--bundle", bundle.path, cid)
            assert r.returncode == 1 and "linux.cgroupsPath" in r.stderr, r.stderr
            time.sleep(0.1)
            assert holder.poll() is None, "the runner killed a process that was not its own"
            assert not os.path.exists(os.path.join(bundle.root, cid))
        finally:
            holder.kill()
            holder.wait()
            with open(f"{pids}/cgroup.procs", "w") as f:
                pass
            rmdir_when_empty(d)
            # the other hierarchies' directories of /<other> were made and removed by the
            # runner: nothing of them may be left
            assert not cgroup_dirs(other)
    finally:
        if holder.poll() is None:
            holder.kill()


def test_delete_force_of_an_id_leaves_a_cgroup_of_that_name_alone(bundle, tmp_path):
    """The default cgroup is runner-<id>, not <id>: `delete --force ID` with no state to go
    by looks for runner-ID only, so a cgroup of someone else's that happens to be named
    like the id keeps its processes and stays."""
    import subprocess

    prepare(bundle, tmp_path)
    cid = new_id()
    d = f"{pids_root()}/{cid}"
    holder = subprocess.Popen(["sleep", "60"])
    os.mkdir(d)
    try:
        with open(f"{d}/cgroup.procs", "w") as f:
            f.write(str(holder.pid))
        r = runner(bundle, "--debug", "delete", "--force", cid)
        assert r.returncode == 0 and "removed" not in r.stderr, r.stderr
        assert holder.poll() is None, "the runner killed a process of a cgroup not its own"
        assert os.path.isdir(d)
    finally:
        holder.kill()
        holder.wait()
        rmdir_when_empty(d)


def own_fd_count() -> int:
    """This (test) process's open fds, less the network namespaces libcontainer's pool
    keeps for in-process runs (netpool.py): those go once it idles, whenever that is."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += not os.readlink(f"/proc/self/fd/{fd}").startswith("net:[")
        except OSError:
            pass  # listdir's own, closed by now
    return n


def rmdir_when_empty(d: str) -> None:
    """Remove a cgroup the test made once its killed process has left it."""
    for _ in range(100):
        try:
            os.rmdir(d)
            return
        except OSError:
            time.sleep(0.02)


def test_delete_regex_removes_every_match(bundle, tmp_path):
    """crun's `delete -f --regex RE` (its suite cleans up with it): every container whose
    ID matches, running or not; the others stay."""
    prepare(bundle, tmp_path)
    tag = new_id()
    ids = [f"{tag}-a", f"{tag}-b", f"other-{tag}"]
    for cid in ids:
        bundle.last_id = cid
        assert runner(bundle, "run", "-d", "--bundle", bundle.path, cid).returncode == 0
    r = runner(bundle, "delete", "--force", "--regex", f"^{tag}-")
    assert r.returncode == 0, r.stderr
    assert sorted(state_entries(bundle.root)) == [f"other-{tag}"]
    assert not cgroup_dirs(ids[0]) and not cgroup_dirs(ids[1])
    r = runner(bundle, "delete", "--regex", "(")
    assert r.returncode == 1 and "not a regular expression" in r.stderr, r.stderr
    assert runner(bundle, "delete", "-f", "-r", tag).returncode == 0
    assert not state_entries(bundle.root) and not marked_pids(bundle.mark)


def test_create_killed_after_swept_delays(bundle, tmp_path):
    """The same from outside, as the issue measured it: `runner create` SIGKILLed after
    delays spread over the time a whole create takes here (so between crash points, in the
    middle of syscall sequences, while the child is being set up), then delete --force:
    nothing left."""
    import subprocess
    import time

    prepare(bundle, tmp_path)
    fast = os.path.join(REPO, ".venv", "bin", "runner")  # -IS: the start-up of `make venv`
    cmd = [fast] if os.access(fast, os.X_OK) else RUNNER
    base = bundle.root

    def create(cid, delay=None):
        with open(bundle.log, "ab") as out:
            t = time.monotonic()
            p = subprocess.Popen(cmd + ["--root", bundle.root, "create", "--bundle",
                                        bundle.path, cid], stdin=subprocess.DEVNULL,
                                 stdout=out, stderr=out, cwd=REPO)
            if delay is not None:
                time.sleep(delay)
                p.kill()
                p.wait()
                return 0, 0
            first = None  # when something first shows in the state root
            while p.poll() is None:
                if first is None and os.path.isdir(bundle.root) and state_entries(bundle.root):
                    first = time.monotonic() - t
                time.sleep(0.0005)
            return first or 0, time.monotonic() - t

    cid = new_id()
    bundle.last_id = cid
    bundle.root = f"{base}-whole"
    first, whole = create(cid)
    assert runner(bundle, "delete", "--force", cid).returncode == 0
    start = first * 0.8  # the interpreter's start-up before that changes nothing
    bad = []
    reached = 0
    n = 25
    for i in range(n):
        cid = new_id()
        bundle.last_id = cid
        bundle.root = f"{base}-d{i}"
        create(cid, start + (whole - start) * i / n)
        if os.path.isdir(os.path.join(bundle.root, cid)):
            reached += 1
            assert listed(bundle, cid) in ("stopped", "creating", "created")
        d = runner(bundle, "delete", "--force", cid)
        left = what_is_left(bundle, cid)
        if d.returncode or left:
            bad.append((i, d.stderr.strip(), left))
            scrub(bundle, cid)
    assert not bad, bad
    print(f"swept delays {start * 1000:.0f}..{whole * 1000:.0f} ms: {reached} of {n} kills "
          "came after the state dir was made")
