"""libcontainer.sandbox run by an unprivileged user this module creates: with cgroups
delegated to it every limit holds (memory bomb → ML from the kernel's counter, CPU time of
the whole run, pids); without, the Sandbox refuses, naming the limits, unless
rlimits_only=True. Everything the user made is removed and checked at the end."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import uuid

import pytest

from conftest import REPO, ROOTFS, need_root

TAG = uuid.uuid4().hex[:6]
CONTROLLERS = ("memory", "pids", "cpuacct")


def _reachable() -> bool:
    d = REPO
    while d != "/":
        if not os.stat(d).st_mode & 0o001:
            return False
        d = os.path.dirname(d)
    return True


@pytest.fixture(scope="module")
def user():
    need_root()
    if not os.path.exists(os.path.join(ROOTFS, "bin", "busybox")):
        pytest.skip("no busybox rootfs: run `make rootfs`")
    if not _reachable():
        pytest.skip("the checkout is not reachable by other users")
    import pwd

    from test_sandbox_hostile import _hostile

    name = f"sbx{TAG}"
    top = tempfile.mkdtemp(prefix="sbx-rootless-", dir="/tmp")
    os.chmod(top, 0o755)
    subprocess.run(["useradd", "--no-create-home", "--home-dir", top, "--shell", "/bin/sh",
                    name], check=True, capture_output=True)
    pw = pwd.getpwnam(name)
    rootfs = os.path.join(top, "rootfs")
    shutil.copytree(ROOTFS, rootfs, symlinks=True)
    shutil.copy(_hostile(), os.path.join(rootfs, "bin", "hostile"))
    xdg = os.path.join(top, "xdg")
    os.mkdir(xdg, 0o700)
    subprocess.run(["chown", "-R", f"{pw.pw_uid}:{pw.pw_gid}", top], check=True)
    u = type("U", (), dict(name=name, uid=pw.pw_uid, gid=pw.pw_gid, top=top, rootfs=rootfs,
                           xdg=xdg))
    try:
        yield u
    finally:
        left = _user_pids(u.uid)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)
        assert left == [], "processes left by the sandbox's user"


def _user_pids(uid: int) -> list:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/status") as f:
                    st = dict(line.split(":", 1) for line in f if ":" in line)
                if int(st["Uid"].split()[0]) == uid and not st["State"].strip().startswith("Z"):
                    out.append(int(p))
            except (OSError, KeyError, ValueError):
                pass
    return out


def _v1_mounts() -> dict:
    from libcontainer import cgroups

    return cgroups.detect().v1


@pytest.fixture
def delegated(user):
    """v1 cgroups (memory, pids, cpuacct) below ours, made the user's as a delegating
    manager would: the directory, cgroup.procs and tasks; the user's process is put there."""
    from libcontainer import cgroups

    host = cgroups.detect()
    made = []
    for ctrl in CONTROLLERS:
        mnt = host.v1.get(ctrl)
        if not mnt:
            pytest.skip(f"no v1 {ctrl} hierarchy to delegate on this host")
        d = os.path.join(mnt + host.own.get(ctrl, "/"), f"sbxdeleg-{TAG}")
        if d in made:
            continue
        os.mkdir(d)
        made.append(d)
        for f in ("", "cgroup.procs", "tasks"):
            os.chown(os.path.join(d, f), user.uid, user.gid)
    try:
        yield made
    finally:
        for d in reversed(made):
            for sub in sorted(os.listdir(d)):
                if os.path.isdir(os.path.join(d, sub)):
                    os.rmdir(os.path.join(d, sub))
            os.rmdir(d)


def run_as(user, code: str, cgroups: list = ()) -> dict:
    """Python `code` as the user (first moved into `cgroups`); it prints one JSON line."""
    script = os.path.join(user.top, f"t{uuid.uuid4().hex[:6]}.py")
    with open(script, "w") as f:
        f.write(PRELUDE + textwrap.dedent(code))
    os.chmod(script, 0o644)
    env = {"PATH": "/usr/bin:/bin", "HOME": user.top, "XDG_RUNTIME_DIR": user.xdg,
           "PYTHONPATH": REPO}
    join = "".join(f'echo $$ > {d}/cgroup.procs && ' for d in cgroups)
    args = ["sh", "-c", join + f'exec setpriv --reuid={user.uid} --regid={user.gid} '
            f'--clear-groups -- "$0" "$1"', sys.executable, script]
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=user.top, timeout=120)
    assert r.returncode == 0 and r.stdout.strip(), (r.stdout, r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


PRELUDE = """
import json, os
from libcontainer import sandbox
def res(r):
    return dict(status=r.status, out=r.stdout.decode(), err=r.stderr.decode(),
                cpu=r.cpu_time, oom=r.oom_killed, wall=r.wall_timed_out, sig=r.signal)
"""


def test_without_a_cgroup_limits_are_refused_or_rlimits_accepted(user):
    out = run_as(user, f"""
    out = {{}}
    try:
        sandbox.Sandbox({user.rootfs!r}, readonly_root=True)
    except sandbox.LimitsUnavailable as e:
        out["refused"] = str(e)
    try:
        sandbox.Sandbox({user.rootfs!r})
    except Exception as e:
        out["writable"] = str(e)
    lim = sandbox.Limits(cpu_time=1, wall_time=20, memory="64m", pids=16)
    with sandbox.Sandbox({user.rootfs!r}, lim, readonly_root=True, rlimits_only=True) as b:
        out["id"] = res(b.run(["sh", "-c", "id -u; cat /proc/self/uid_map; touch /x"]))
        out["spin"] = res(b.run(["hostile", "spin"]))
        out["mem"] = res(b.run(["hostile", "membomb"]))
        out["tmp"] = res(b.run(["sh", "-c", "dd if=/dev/zero of=/tmp/f bs=1M count=200"]))
        out["files"] = res(b.run(["sh", "-c", "cat in; echo made > out"],
                                 files={{"in": b"given\\n"}}))
        with b.workdir() as wd:
            b.run(["sh", "-c", "echo kept > k; ln -s /etc/passwd l"], workdir=wd)
            out["wd"] = [wd.read("k").decode(), b.run(["cat", "k"], workdir=wd).stdout.decode()]
            try:
                wd.read("l")
            except Exception as e:
                out["link"] = type(e).__name__
        b.flush()
        out["state"] = os.listdir(b._state)
        path = b.path
    out["gone"] = not os.path.exists(path)
    print(json.dumps(out))
    """)
    for name in ("limits.cpu_time", "limits.memory", "limits.pids", "rlimits_only=True"):
        assert name in out["refused"]
    assert "readonly_root" in out["writable"]
    uid_line = out["id"]["out"].splitlines()
    assert uid_line[0] == "0" and uid_line[1].split() == ["0", str(user.uid), "1"]
    assert "Read-only file system" in out["id"]["err"]
    assert out["spin"]["status"] == "TO", out["spin"]  # RLIMIT_CPU, per process
    assert out["mem"]["status"] in ("RE", "SG")  # RLIMIT_AS: malloc fails, no OOM kill
    # /tmp's size (ENOSPC), or RLIMIT_FSIZE: SIGXFSZ ends dd, as it would anywhere (its
    # init is not the command, which as pid 1 would be spared the signal: EFBIG instead)
    assert "No space left" in out["tmp"]["err"] or "File too large" in out["tmp"]["err"] or \
        out["tmp"]["sig"] == 25, out["tmp"]
    assert out["files"]["out"] == "given\n"
    assert out["wd"] == ["kept\n", "kept\n"] and out["link"] == "InvalidArgument"
    assert out["state"] == [] and out["gone"]


def test_delegated_cgroup_holds_every_limit(user, delegated):
    out = run_as(user, f"""
    lim = sandbox.Limits(cpu_time=1, wall_time=30, memory="64m", pids=16)
    out = {{}}
    with sandbox.Sandbox({user.rootfs!r}, lim, readonly_root=True) as b:
        out["ok"] = res(b.run(["sh", "-c", "echo hi"]))
        out["mem"] = res(b.run(["hostile", "membomb"]))
        out["cpu"] = res(b.run(["sh", "-c", "hostile spin & hostile spin & wait"]))
        out["fork"] = res(b.run(["sh", "-c", "for i in $(seq 40); do sleep 5 & done; wait"]))
        short = lim.but(wall_time=2, output=4096, disk="8m")
        out["sleep"] = res(b.run(["sleep", "100"], limits=short))
        out["big"] = res(b.run(["sh", "-c", "yes | head -c 50000000; echo done >&2"],
                               limits=short))
        out["big_trunc"] = b.run(["yes"], limits=short).output_truncated
        out["tmp"] = res(b.run(["sh", "-c", "dd if=/dev/zero of=/tmp/f bs=1M count=50"],
                               limits=short))
        out["bg"] = res(b.run(["sh", "-c", "sleep 300 & setsid sleep 301 & echo bg"]))
        out["bg_dur"] = b.run(["hostile", "daemon"]).duration
        out["net"] = res(b.run(["ls", "/sys/class/net"]))
        b.flush()
        out["state"] = os.listdir(b._state)
        out["left"] = [p for p in os.listdir("/proc") if p.isdigit() and p != str(os.getpid())
                       and os.stat("/proc/" + p).st_uid == os.getuid()]
    print(json.dumps(out))
    """, cgroups=delegated)
    assert out["ok"]["status"] == "OK" and out["ok"]["out"] == "hi\n"
    assert out["mem"]["status"] == "ML" and out["mem"]["oom"]
    assert out["cpu"]["status"] == "TO" and not out["cpu"]["wall"]
    assert 1.0 <= out["cpu"]["cpu"] < 1.8  # two processes, one budget: the cgroup's
    assert "can't fork" in out["fork"]["err"] or "Resource temporarily" in out["fork"]["err"]
    # the limits that need no cgroup hold as for root: the wall clock, the output cap
    # (read past it and thrown away, no stall), the /tmp size; nothing outlives a run
    assert out["sleep"]["status"] == "TO" and out["sleep"]["wall"]
    assert out["big"]["status"] == "OK" and len(out["big"]["out"]) == 4096
    assert out["big"]["err"] == "done\n" and out["big_trunc"] is True
    assert "No space left" in out["tmp"]["err"] or "File too large" in out["tmp"]["err"] or \
        out["tmp"]["sig"] == 25, out["tmp"]
    assert out["bg"]["status"] == "OK" and out["bg"]["out"] == "bg\n" and out["bg_dur"] < 3
    assert out["net"]["out"].split() == ["lo"]
    assert out["left"] == [] and _user_pids(user.uid) == []
    assert out["state"] == []
    for d in delegated:  # the runs' cgroups are gone
        assert [s for s in os.listdir(d) if os.path.isdir(os.path.join(d, s))] == []


def test_cli_as_the_user(user):
    """`runner sandbox` run by the user: refused without a cgroup, unless --rlimits-only."""
    env = {"PATH": "/usr/bin:/bin", "HOME": user.top, "XDG_RUNTIME_DIR": user.xdg,
           "PYTHONPATH": REPO}
    base = ["setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--",
            sys.executable, "-m", "runner", "sandbox"]
    r = subprocess.run(base + [user.rootfs, "--", "id", "-u"], capture_output=True, text=True,
                       env=env, cwd=REPO, timeout=60)
    assert r.returncode == 1 and "limits.memory" in r.stderr and "rlimits" in r.stderr
    r = subprocess.run(base + ["--rlimits-only", "--json", user.rootfs, "--", "id", "-u"],
                       capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    out = json.loads(r.stdout)
    assert r.returncode == 0 and out["status"] == "OK" and out["stdout"] == "0\n", r.stderr
