"""Rootless: real unprivileged users that this module creates (one with /etc/subuid and
/etc/subgid ranges, one without) run `runner spec --rootless` bundles, the lifecycle verbs
and the Python API under their default state root, side by side with runc and crun on the
same bundle. Everything runs from a directory under /tmp; the users, their files,
processes and cgroups are removed at the end, and the module checks that nothing is left."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from conftest import REPO, RUNNER, leftovers, need_root, new_id

TAG = uuid.uuid4().hex[:6]


class Code:
    """The interpreter and code the users run: the checkout and its venv when others can
    reach them, else (a checkout under /root) a copy the `top` fixture makes."""
    python = sys.executable
    path = ""     # PYTHONPATH for it ("" with the reachable checkout's own venv)
    cwd = REPO

    @classmethod
    def runner(cls) -> list:
        return [cls.python, "-m", "runner"]

    @classmethod
    def copy_to(cls, dest: str) -> None:
        """libcontainer and runner (with the built shim) and what they import at run time,
        for the system's interpreter (the venv's is a link to it)."""
        import importlib.util

        ignore = shutil.ignore_patterns("__pycache__")
        for pkg in ("libcontainer", "runner"):
            shutil.copytree(os.path.join(REPO, pkg), os.path.join(dest, pkg), ignore=ignore)
        site = os.path.join(dest, "site")
        os.mkdir(site)
        for name in ("cffi", "_cffi_backend", "pyroute2"):
            spec = importlib.util.find_spec(name)
            if spec is None or not spec.origin:
                continue
            if spec.submodule_search_locations:  # a package: its directory
                src = os.path.dirname(spec.origin)
                shutil.copytree(src, os.path.join(site, os.path.basename(src)), ignore=ignore)
            else:
                shutil.copy2(spec.origin, site)
        cls.python = os.path.realpath(sys.executable)
        cls.path = f"{dest}:{site}"
        cls.cwd = dest


class User:
    def __init__(self, name: str, top: str, ranges: bool):
        import pwd

        self.name = name
        self.home = os.path.join(top, "home-" + name)
        cmd = ["useradd", "--no-create-home", "--home-dir", self.home, "--shell", "/bin/sh"]
        if not ranges:  # Debian's useradd: a count of 0 writes no /etc/subuid line
            cmd += ["-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0"]
        subprocess.run(cmd + [name], check=True, capture_output=True)
        pw = pwd.getpwnam(name)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.subuid = _range("/etc/subuid", name)
        self.subgid = _range("/etc/subgid", name)
        assert bool(self.subuid) == ranges and bool(self.subgid) == ranges

    def env(self, **extra) -> dict:
        env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "LANG": "C.UTF-8"}
        if Code.path:
            env["PYTHONPATH"] = Code.path
        env.update({k: v for k, v in extra.items() if v is not None})
        return env

    def run(self, *args, env=None, cgroup: str = "", input=None, timeout=60, cwd=None,
            detached=False):
        """ARGS as this user (with `cgroup`: first moved into that cgroup by root, as a
        delegating manager such as systemd does for a user's session). `detached`: what
        it starts keeps our stdout and stderr, so they are files, read once it exits."""
        if detached:
            with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
                r = self._run(list(args), env, cgroup, None, timeout, cwd, stdout=out,
                              stderr=err)
                out.seek(0)
                err.seek(0)
                r.stdout, r.stderr = out.read(), err.read()
                return r
        return self._run(args, env, cgroup, input, timeout, cwd, capture_output=True)

    def _run(self, args, env, cgroup, input, timeout, cwd, **io):
        args = list(args)
        cwd = cwd or Code.cwd
        kw: dict = {}
        if cgroup:
            args = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && u=$1 g=$2 && shift 2 && '
                    'exec setpriv --reuid="$u" --regid="$g" --clear-groups -- "$@"',
                    cgroup, str(self.uid), str(self.gid)] + args
        else:
            kw = dict(user=self.uid, group=self.gid, extra_groups=[])
        if input is None:
            io.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(args, text=True, cwd=cwd, timeout=timeout,
                              env=env if env is not None else self.env(), input=input, **io, **kw)

    def runner(self, *args, **kw):
        return self.run(*Code.runner(), *args, **kw)

    def pids(self) -> list:
        """Processes whose real uid is this user's (a container's root, too). (Subordinate
        ids are not looked for: other tests map containers onto the same host ids.)"""
        out = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                st = _proc_status(int(entry))
                uid = int(st["Uid"].split()[0])
            except (OSError, KeyError, ValueError):
                continue
            # a dead container's init that the machine's pid 1 has yet to reap is no leftover
            if uid == self.uid and not st["State"].startswith("Z"):
                out.append(int(entry))
        return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        st = _proc_status(pid)
        return f"{cmd} ({st['State']}, parent {st['PPid']})"
    except OSError:
        return "?"


def _range(path: str, name: str):
    with open(path) as f:
        for line in f:
            parts = line.strip().split(":")
            if parts[0] == name:
                return int(parts[1]), int(parts[2])
    return None


def _reachable(path: str) -> str:
    """"" if every directory above `path` lets others through, else the one that does not."""
    d = os.path.dirname(os.path.abspath(path))
    while d != "/":
        if not os.stat(d).st_mode & 0o001:
            return d
        d = os.path.dirname(d)
    return ""


@pytest.fixture(scope="module")
def top():
    need_root()
    path = tempfile.mkdtemp(prefix="runner-rootless-", dir="/tmp")
    os.chmod(path, 0o755)
    try:
        if _reachable(os.path.join(REPO, "libcontainer")) or _reachable(sys.executable):
            Code.copy_to(os.path.join(path, "code"))  # e.g. a checkout under /root (0700)
        yield path
    finally:
        Code.python, Code.path, Code.cwd = sys.executable, "", REPO
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def users(top):
    made = []
    try:
        sub = User(f"rl{TAG}s", top, ranges=True)
        made.append(sub)
        os.mkdir(sub.home, 0o700)
        os.chown(sub.home, sub.uid, sub.gid)
        nosub = User(f"rl{TAG}n", top, ranges=False)  # and no home directory
        made.append(nosub)
        yield sub, nosub
    finally:
        stray = {}
        for u in made:
            stray[u.name] = {pid: _cmdline(pid) for pid in u.pids()}
            for pid in stray[u.name]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            subprocess.run(["userdel", u.name], capture_output=True)
        left = {n: p for n, p in stray.items() if p}
        for u in made:
            with open("/etc/passwd") as f:
                assert not any(l.startswith(u.name + ":") for l in f)
            for path in ("/etc/subuid", "/etc/subgid", "/etc/group"):
                with open(path) as f:
                    assert not any(l.startswith(u.name + ":") for l in f), path
        assert not left, f"processes left by the rootless users: {left}"


@pytest.fixture
def sub(users):
    return users[0]


@pytest.fixture
def nosub(users):
    return users[1]


class RBundle:
    """A bundle owned by `user`, made by `runner spec --rootless` run as that user."""

    def __init__(self, user: User, top: str, template: str):
        self.user = user
        self.dir = tempfile.mkdtemp(prefix="b-", dir=top)
        os.chmod(self.dir, 0o755)
        self.path = os.path.join(self.dir, "bundle")
        os.mkdir(self.path)
        self.rootfs = os.path.join(self.path, "rootfs")
        subprocess.run(["cp", "-a", template, self.rootfs], check=True)
        subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", self.dir], check=True)
        self.spec = user.runner("spec", "--rootless", "--bundle", self.path)
        assert self.spec.returncode == 0, self.spec.stderr
        with open(os.path.join(self.path, "config.json")) as f:
            self.config = json.load(f)
        self.config["process"]["terminal"] = False
        self.mark = "RUNNER_TEST_MARK=" + uuid.uuid4().hex
        self.config["process"]["env"].append(self.mark)
        self.ids: list = []

    def sh(self, script: str) -> "RBundle":
        self.config["process"]["args"] = ["sh", "-c", script]
        return self

    def write(self) -> None:
        path = os.path.join(self.path, "config.json")
        with open(path, "w") as f:
            json.dump(self.config, f, indent=1)

    def new_id(self) -> str:
        cid = new_id()
        self.ids.append(cid)
        return cid

    def left(self, root: str) -> list:
        return [x for cid in self.ids for x in leftovers(root, cid, self.path, self.mark)]


@pytest.fixture
def rbundle(top, rootfs_template):
    made = []

    def make(user: User) -> RBundle:
        b = RBundle(user, top, rootfs_template)
        made.append(b)
        return b

    yield make
    for b in made:
        shutil.rmtree(b.dir, ignore_errors=True)


def _crun_as(user: User, cwd: str, *args):
    """crun as `user`, in a mount namespace of its own without /sys/fs/cgroup/unified."""
    script = ('mountpoint -q /sys/fs/cgroup/unified && umount /sys/fs/cgroup/unified; '
              'u=$1 g=$2; shift 2; exec setpriv --reuid="$u" --regid="$g" --clear-groups -- "$@"')
    return subprocess.run(["unshare", "-m", "sh", "-c", script, "sh", str(user.uid), str(user.gid),
                           "crun", *args], capture_output=True, text=True, cwd=cwd,
                          env=user.env(), timeout=60)


def _default_root(user: User) -> str:
    return os.path.join(user.home, ".local", "state", "runner")


def _proc_status(pid: int) -> dict:
    with open(f"/proc/{pid}/status") as f:
        return {k: v.strip() for k, _, v in (l.partition(":") for l in f)}


# ---- id maps ----------------------------------------------------------------------------

def test_spec_rootless_maps_the_subordinate_ranges(sub, nosub, rbundle, top):
    b = rbundle(sub)
    start, count = sub.subuid
    gstart, _ = sub.subgid
    assert b.spec.stderr == ""
    assert b.config["linux"]["uidMappings"] == [
        {"containerID": 0, "hostID": sub.uid, "size": 1},
        {"containerID": 1, "hostID": start, "size": min(count, 65536)}]
    assert b.config["linux"]["gidMappings"][1] == {"containerID": 1, "hostID": gstart,
                                                   "size": min(count, 65536)}
    # a user without ranges: one id, and the warning says what to add
    n = rbundle(nosub)
    assert n.config["linux"]["uidMappings"] == [{"containerID": 0, "hostID": nosub.uid, "size": 1}]
    assert n.config["linux"]["gidMappings"] == [{"containerID": 0, "hostID": nosub.gid, "size": 1}]
    warn = n.spec.stderr
    assert warn.startswith("runner: warning: the container gets one uid and one gid"), warn
    assert "/etc/subuid and /etc/subgid have no range for " + nosub.name in warn
    assert f"usermod --add-subuids 100000-165535 --add-subgids 100000-165535 {nosub.name}" in warn
    # it runs, with that one id: chown to an unmapped id is what fails
    n.config["root"]["readonly"] = False
    for k in ("bounding", "effective", "permitted"):
        n.config["process"]["capabilities"][k].append("CAP_CHOWN")
    n.sh("cat /proc/self/uid_map; touch /f; chown 1000 /f 2>&1; true").write()
    xdg = os.path.join(top, "xdg-" + nosub.name)
    os.mkdir(xdg, 0o700)
    os.chown(xdg, nosub.uid, nosub.gid)
    r = nosub.runner("run", "--bundle", n.path, n.new_id(), env=nosub.env(XDG_RUNTIME_DIR=xdg))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["0", str(nosub.uid), "1"] and len(lines) == 2
    assert "Invalid argument" in lines[1]
    # a map of ids that are not the user's: newuidmap refuses, and the error says where
    n.config["linux"]["uidMappings"] = b.config["linux"]["uidMappings"][:1] + [
        {"containerID": 1, "hostID": start, "size": 10}]
    n.config["linux"]["uidMappings"][0]["hostID"] = nosub.uid
    n.write()
    cid = n.new_id()
    r = nosub.runner("run", "--bundle", n.path, cid, env=nosub.env(XDG_RUNTIME_DIR=xdg))
    assert r.returncode == 1
    assert r.stderr.startswith("runner: linux.uidMappings: newuidmap refused the map"), r.stderr
    assert "/etc/subuid" in r.stderr
    assert not n.left(os.path.join(xdg, "runner"))


# ---- the lifecycle under the default root, and runc on the same bundle -----------------

def test_lifecycle_under_the_default_root(sub, rbundle):
    b = rbundle(sub)
    start, _ = sub.subuid
    b.config["root"]["readonly"] = False
    for k in ("bounding", "effective", "permitted"):
        b.config["process"]["capabilities"][k].append("CAP_CHOWN")
    b.sh("id; cat /proc/self/uid_map /proc/self/gid_map; rm -f /owned; touch /owned && "
         "chown 1000:1000 /owned && stat -c '%u %g' /owned").write()
    r = sub.runner("run", "--bundle", b.path, b.new_id())
    assert r.returncode == 0, r.stderr
    ours = r.stdout.splitlines()
    assert ours[0].startswith("uid=0(root) gid=0(root)")
    assert ours[1].split() == ["0", str(sub.uid), "1"]
    assert ours[2].split() == ["1", str(start), "65536"]
    assert ours[-1] == "1000 1000"
    st = os.stat(os.path.join(b.rootfs, "owned"))
    assert (st.st_uid, st.st_gid) == (start + 999, sub.subgid[0] + 999)
    root = _default_root(sub)
    mode = os.stat(root)
    assert mode.st_uid == sub.uid and stat.S_IMODE(mode.st_mode) == 0o1700
    # runc, as the same user, on the same bundle
    if shutil.which("runc"):
        r = sub.run("runc", "--root", os.path.join(sub.home, "runc"), "run", new_id(),
                    cwd=b.path)
        assert r.returncode == 0, r.stderr
        assert [l.split() for l in r.stdout.splitlines()[1:]] == [l.split() for l in ours[1:]]
    # and crun (which refuses a hybrid host's cgroups: it runs where `unified` is unmounted)
    if shutil.which("crun"):
        crun_cfg = dict(b.config, ociVersion="1.0.2")  # crun 1.8 knows no later version
        with open(os.path.join(b.path, "crun.json"), "w") as f:
            json.dump(crun_cfg, f)
        r = _crun_as(sub, b.path, "--root", os.path.join(sub.home, "crun"), "run", "-f",
                     "crun.json", new_id())
        assert r.returncode == 0, r.stderr
        assert [l.split() for l in r.stdout.splitlines()[1:]] == [l.split() for l in ours[1:]]

    # create / start / exec / ps / list / kill / delete, no --root anywhere
    b.config["process"]["args"] = ["sleep", "60"]
    b.write()
    cid = b.new_id()
    pid_file = os.path.join(b.dir, "pid")
    r = sub.runner("create", "--bundle", b.path, "--pid-file", pid_file, cid, detached=True)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(os.path.join(root, cid)).st_mode) & 0o022 == 0
    r = sub.runner("list", "--format", "json")
    assert [(c["id"], c["status"]) for c in json.loads(r.stdout)] == [(cid, "created")]
    assert sub.runner("start", cid).returncode == 0
    pid = int(open(pid_file).read())
    status = _proc_status(pid)
    assert status["Uid"].split()[0] == str(sub.uid)  # the host sees the user, never root
    assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    r = sub.runner("exec", cid, "sh", "-c",
                   "id -u; wc -l < /proc/self/uid_map; tr '\\0' ' ' < /proc/1/cmdline")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "2", "sleep", "60"]
    r = sub.runner("ps", cid)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()
    assert rows[0].split()[:2] == ["UID", "PID"]
    assert any(str(pid) in row.split() for row in rows[1:])
    assert sub.runner("kill", cid, "KILL").returncode == 0
    for _ in range(200):
        if json.loads(sub.runner("state", cid).stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    assert sub.runner("delete", cid).returncode == 0
    assert sub.runner("list", "-q").stdout == ""
    assert not b.left(root)


def test_python_api_unprivileged_with_xdg_runtime_dir(sub, rbundle, top):
    """libcontainer, imported by an unprivileged process: run, create, start, exec into its
    own container, kill, wait, delete, under $XDG_RUNTIME_DIR/runner."""
    b = rbundle(sub)
    b.sh("exit 3").write()
    xdg = os.path.join(top, "xdg-" + sub.name)
    os.mkdir(xdg, 0o700)
    os.chown(xdg, sub.uid, sub.gid)
    script = f"""
import json, os, sys, tempfile
import libcontainer
from libcontainer import state
out = {{"root": state.default_root()}}
out["run"] = libcontainer.run({b.path!r}, "api-run")
cfg = json.load(open({b.path!r} + "/config.json"))
cfg["process"]["args"] = ["sleep", "60"]
json.dump(cfg, open({b.path!r} + "/config.json", "w"))
c = libcontainer.create({b.path!r}, "api-c")
out["created"] = c.status()
c.start()
out["listed"] = [(x.id, x.status()) for x in libcontainer.list_containers()]
with tempfile.TemporaryFile("w+") as f:
    out["exec"] = c.exec(libcontainer.Process(args=["sh", "-c", "id -u; exit 5"], cwd="/"),
                         stdio=(None, f, f))
    f.seek(0)
    out["exec_out"] = f.read()
c.kill(9)
out["wait"] = c.wait()
c.delete()
out["after"] = libcontainer.list_containers()
print(json.dumps(out))
"""
    r = sub.run(Code.python, "-c", script, env=sub.env(XDG_RUNTIME_DIR=xdg), detached=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out == {"root": os.path.join(xdg, "runner"), "run": 3, "created": "created",
                   "listed": [["api-c", "running"]], "exec": 5, "exec_out": "0\n",
                   "wait": 137, "after": []}
    st = os.stat(os.path.join(xdg, "runner"))
    assert st.st_uid == sub.uid and stat.S_IMODE(st.st_mode) == 0o1700  # sticky, as runc
    b.ids += ["api-run", "api-c"]
    assert not b.left(os.path.join(xdg, "runner"))


def test_no_private_state_root_is_an_error(nosub, rbundle):
    """No XDG_RUNTIME_DIR, no /run/user/UID, no home of its own: no guess at a shared path."""
    b = rbundle(nosub)
    b.sh("true").write()
    for args in (("list",), ("run", "--bundle", b.path, b.new_id())):
        r = nosub.runner(*args)
        assert r.returncode == 1
        assert r.stderr.startswith(f"runner: --root: no private place for the state of uid "
                                   f"{nosub.uid}: XDG_RUNTIME_DIR is not set"), r.stderr
        assert f"its home directory {nosub.home} does not exist" in r.stderr
    assert not os.path.exists(nosub.home)
    # --root still wins
    root = os.path.join(b.dir, "state")
    r = nosub.runner("--root", root, "run", "--bundle", b.path, b.new_id())
    assert r.returncode == 0, r.stderr
    assert not b.left(root)


def test_root_of_a_user_namespace_is_rootless(sub, rbundle, top):
    """`unshare -r runner …` (or a runner inside a rootless engine's container): uid 0, but
    not the host's root. As runc: the state goes to $XDG_RUNTIME_DIR/runner, and the
    host's cgroups, which are not its, are left alone (limits refused)."""
    b = rbundle(sub)
    for key in ("uidMappings", "gidMappings"):  # the outer namespace has only its id 0
        b.config["linux"][key] = [{"containerID": 0, "hostID": 0, "size": 1}]
    b.sh("id -u; cat /proc/self/uid_map").write()
    xdg = os.path.join(top, "xdg-nested-" + sub.name)
    os.mkdir(xdg, 0o700)
    os.chown(xdg, sub.uid, sub.gid)
    env = sub.env(XDG_RUNTIME_DIR=xdg)
    r = sub.run("unshare", "-r", *Code.runner(), "run", "--bundle", b.path, b.new_id(), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "0", "0", "1"]
    assert os.path.isdir(os.path.join(xdg, "runner"))
    b.config["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
    b.write()
    r = sub.run("unshare", "-r", *Code.runner(), "run", "--bundle", b.path, b.new_id(), env=env)
    assert r.returncode == 1
    assert r.stderr.startswith("runner: linux.resources.memory: cannot be applied: the runner "
                               "runs as root of a user namespace and the memory cgroup is not "
                               "delegated to it"), r.stderr
    assert not b.left(os.path.join(xdg, "runner"))


# ---- cgroups ----------------------------------------------------------------------------

def _cgroup2_mount() -> str:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[0] == "cgroup2":
                return left.split()[4]
    return ""


def test_without_a_delegated_cgroup_limits_are_refused(sub, rbundle, top):
    """No cgroup delegated: the container runs without one (as runc), and a config that
    asks for a limit is refused with the field named, leaving nothing (runc refuses too)."""
    b = rbundle(sub)
    root = os.path.join(b.dir, "state")
    b.config["linux"]["resources"] = {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}}
    b.sh("true").write()
    cid = b.new_id()
    r = sub.runner("--root", root, "run", "--bundle", b.path, cid)
    assert r.returncode == 1
    assert r.stderr.startswith("runner: linux.resources.memory: cannot be applied: the runner "
                               f"runs as uid {sub.uid} and the memory cgroup is not delegated "
                               "to it ("), r.stderr
    assert "delegate a cgroup v2 subtree to this user" in r.stderr
    assert not b.left(root) and not os.path.exists(os.path.join(root, cid))
    if shutil.which("runc"):
        r = sub.run("runc", "--root", os.path.join(b.dir, "runc"), "run", new_id(), cwd=b.path)
        assert r.returncode != 0 and "limit: container could not join or create cgroup" in r.stderr
    # an explicit cgroupsPath that cannot be made is an error too (runc: the same)
    del b.config["linux"]["resources"]
    b.config["linux"]["cgroupsPath"] = f"/rootless-{TAG}"
    b.write()
    r = sub.runner("--root", root, "run", "--bundle", b.path, b.new_id())
    assert r.returncode == 1
    assert r.stderr.startswith(f"runner: linux.cgroupsPath: /rootless-{TAG}: the runner runs as "
                               f"uid {sub.uid} and may not create it"), r.stderr
    # no limits asked: it runs without a cgroup; pause says why it cannot
    del b.config["linux"]["cgroupsPath"]
    b.config["process"]["args"] = ["sleep", "60"]
    b.write()
    cid = b.new_id()
    r = sub.runner("--root", root, "run", "-d", "--bundle", b.path, cid, detached=True)
    assert r.returncode == 0, r.stderr
    pid = json.loads(sub.runner("--root", root, "state", cid).stdout)["pid"]
    with open(f"/proc/{pid}/cgroup") as f, open("/proc/self/cgroup") as mine:
        assert f.read() == mine.read()  # where the runner was: no cgroup of its own
    r = sub.runner("--root", root, "pause", cid)
    assert r.returncode == 1
    assert r.stderr == (f"runner: cannot pause container {cid!r}: it has no cgroup (uid "
                        f"{sub.uid} created it, and no cgroup was delegated to that user)\n")
    assert sub.runner("--root", root, "delete", "--force", cid).returncode == 0
    assert not b.left(root)


@pytest.fixture
def delegated(sub):
    """A cgroup v2 subtree delegated to `sub` as systemd delegates one: the directory and its
    cgroup.procs, cgroup.subtree_control and cgroup.threads are the user's, and the user's
    processes start in a leaf of it."""
    mnt = _cgroup2_mount()
    if not mnt:
        pytest.skip("no cgroup2 hierarchy is mounted on this host: nothing to delegate")
    top = os.path.join(mnt, f"runner-rootless-{TAG}")
    leaf = os.path.join(top, "session")
    os.mkdir(top)
    try:
        os.mkdir(leaf)
        for path in (top, leaf):
            for name in ("", "cgroup.procs", "cgroup.subtree_control", "cgroup.threads"):
                os.chown(os.path.join(path, name), sub.uid, sub.gid)
        yield top, leaf
    finally:
        for base, dirs, _ in os.walk(top, topdown=False):
            try:
                with open(os.path.join(base, "cgroup.kill"), "w") as f:
                    f.write("1")
            except OSError:
                pass
        left = [base for base, _, _ in os.walk(top) if base not in (top, leaf)]
        for base, dirs, _ in os.walk(top, topdown=False):
            for _ in range(100):
                try:
                    os.rmdir(base)
                    break
                except OSError:
                    time.sleep(0.02)
        assert not os.path.exists(top)
        assert not left, f"cgroups left in the delegated subtree: {left}"


def test_delegated_cgroup_v2_subtree(sub, rbundle, delegated):
    """A delegated subtree: the container's cgroup is made in it, its limits are applied,
    exec joins it, pause freezes it, kill --all empties it, delete removes it."""
    top, leaf = delegated
    mnt = _cgroup2_mount()
    with open(os.path.join(mnt, "cgroup.subtree_control")) as f:
        offered = f.read().split()
    b = rbundle(sub)
    root = os.path.join(b.dir, "state")
    limit, check = {}, None
    if "pids" in offered:
        limit = {"pids": {"limit": 42}}
        check = ("pids.max", "42")
    elif "hugetlb" in offered:
        limit = {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 21}]}
        check = ("hugetlb.2MB.max", str(4 << 21))
    b.config["linux"]["resources"] = limit
    b.config["process"]["args"] = ["sleep", "60"]
    b.write()
    cid = b.new_id()
    r = sub.runner("--root", root, "run", "-d", "--bundle", b.path, cid, cgroup=leaf, detached=True)
    assert r.returncode == 0, r.stderr
    cg = os.path.join(top, "runner-" + cid)  # the default: runner-<id> beside the user's cgroup
    pid = json.loads(sub.runner("--root", root, "state", cid).stdout)["pid"]
    with open(os.path.join(cg, "cgroup.procs")) as f:
        assert f.read().split() == [str(pid)]
    if check:
        with open(os.path.join(cg, check[0])) as f:
            assert f.read().strip() == check[1]
    # update and events use it too; a limit it has no controller for is refused
    if check:
        new = ({"pids": {"limit": 43}} if "pids" in limit else
               {"hugepageLimits": [{"pageSize": "2MB", "limit": 6 << 21}]})
        r = sub.runner("--root", root, "update", "--resources", "-", cid, input=json.dumps(new),
                       cgroup=leaf)
        assert r.returncode == 0, r.stderr
        with open(os.path.join(cg, check[0])) as f:
            assert f.read().strip() == ("43" if "pids" in limit else str(6 << 21))
        r = sub.runner("--root", root, "events", "--stats", cid)
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)["data"]
        assert ("pids" if "pids" in limit else "hugetlb") in data
    if os.path.isdir("/sys/fs/cgroup/memory") and "memory" not in offered:
        r = sub.runner("--root", root, "update", "--memory", "64m", cid, cgroup=leaf)
        assert r.returncode == 1
        assert r.stderr == ("runner: linux.resources.memory: cannot be applied: the container "
                            "has no memory cgroup\n")
    # from outside the delegated subtree the kernel refuses the move: said, nothing left
    r = sub.runner("--root", root, "exec", cid, "sh", "-c", "echo ran")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("runner: adding ") and "Permission denied (unprivileged, the " \
        "runner must itself run inside the subtree delegated to it" in r.stderr, r.stderr
    with open(os.path.join(cg, "cgroup.procs")) as f:
        assert f.read().split() == [str(pid)]
    r = sub.runner("--root", root, "exec", cid, "cat", "/proc/self/cgroup", cgroup=leaf)
    assert r.returncode == 0, r.stderr
    assert f"0::/{os.path.relpath(cg, mnt)}" in r.stdout.splitlines()
    assert sub.runner("--root", root, "pause", cid, cgroup=leaf).returncode == 0
    with open(os.path.join(cg, "cgroup.freeze")) as f:
        assert f.read().strip() == "1"
    assert json.loads(sub.runner("--root", root, "state", cid).stdout)["status"] == "paused"
    assert sub.runner("--root", root, "resume", cid, cgroup=leaf).returncode == 0
    r = sub.runner("--root", root, "ps", cid)
    assert str(pid) in r.stdout, r.stderr
    assert sub.runner("--root", root, "kill", "--all", cid, "KILL", cgroup=leaf).returncode == 0
    for _ in range(200):
        if json.loads(sub.runner("--root", root, "state", cid).stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    assert sub.runner("--root", root, "delete", cid, cgroup=leaf).returncode == 0
    assert not os.path.exists(cg) and os.path.isdir(top)  # the delegated subtree stays
    # a limit on a controller that is not in the delegated subtree (on a hybrid host: on v1)
    v1_memory = os.path.isdir("/sys/fs/cgroup/memory") and "memory" not in offered
    if v1_memory:
        b.config["linux"]["resources"] = {"memory": {"limit": 64 << 20}}
        b.write()
        cid = b.new_id()
        r = sub.runner("--root", root, "run", "--bundle", b.path, cid, cgroup=leaf)
        assert r.returncode == 1
        assert r.stderr.startswith("runner: linux.resources.memory: cannot be applied: the "
                                   f"runner runs as uid {sub.uid} and the memory cgroup is "
                                   "not delegated to it"), r.stderr
    assert not b.left(root)


# ---- what degrades, what is refused ---------------------------------------------------

def _refused(user, b, root, prefix):
    cid = b.new_id()
    b.write()
    r = user.runner("--root", root, "run", "--bundle", b.path, cid)
    assert r.returncode == 1, r.stdout
    assert r.stderr.startswith("runner: " + prefix), r.stderr
    assert not b.left(root)
    return r.stderr


def test_refusals_name_the_field(sub, rbundle):
    b = rbundle(sub)
    root = os.path.join(b.dir, "state")
    b.sh("true")
    base = json.loads(json.dumps(b.config))
    # id-mapped mounts need root
    b.config["mounts"].append({"destination": "/mnt", "type": "bind", "source": b.dir,
                               "options": ["bind", "idmap"]})
    n = len(b.config["mounts"]) - 1
    _refused(sub, b, root, f"mounts[{n}].options: idmap: id-mapped mounts need a runtime "
                           "running as root")
    # netDevices need root
    b.config = json.loads(json.dumps(base))
    b.config["linux"]["netDevices"] = {"lo": {"name": "eth0"}}
    _refused(sub, b, root, "linux.netDevices: moving host network devices needs a runtime "
                           "running as root")
    # a device the host lacks: devices are bound from the host, never made
    b.config = json.loads(json.dumps(base))
    b.config["linux"]["devices"] = [{"path": "/dev/runner-nosuch", "type": "c", "major": 1,
                                     "minor": 3}]
    _refused(sub, b, root, "linux.devices[0].path: /dev/runner-nosuch does not exist on the "
                           "host; in a user namespace devices are bind-mounted from the host")
    # no user namespace at all
    b.config = json.loads(json.dumps(base))
    b.config["linux"]["namespaces"] = [n for n in b.config["linux"]["namespaces"]
                                       if n["type"] != "user"]
    del b.config["linux"]["uidMappings"], b.config["linux"]["gidMappings"]
    _refused(sub, b, root, "linux.namespaces: running as an unprivileged user needs a user "
                           "namespace")


def test_devices_sysfs_overlay_and_nothing_to_gain(sub, rbundle, rootfs_template):
    """Devices are the host's nodes, bound, with the host's permissions; sysfs is mounted
    (own network namespace) or bound; an overlay mounts[] entry works in the user namespace;
    a host directory of root's stays root's; no file of ours is setuid."""
    b = rbundle(sub)
    root = os.path.join(b.dir, "state")
    ov = {d: os.path.join(b.dir, d) for d in ("lower", "upper", "work")}
    for d in ov.values():
        os.mkdir(d)
        os.chown(d, sub.uid, sub.gid)
    with open(os.path.join(ov["lower"], "from-lower"), "w") as f:
        f.write("low\n")
    rootonly = os.path.join(b.dir, "rootonly")
    os.mkdir(rootonly, 0o755)  # root's
    b.config["mounts"] += [
        {"destination": "/ov", "type": "overlay", "source": "overlay",
         "options": [f"lowerdir={ov['lower']},upperdir={ov['upper']},workdir={ov['work']}"]},
        {"destination": "/hostroot", "type": "bind", "source": rootonly,
         "options": ["rbind", "rw"]},
    ]
    for m in b.config["mounts"]:  # sysfs asked for (spec --rootless binds the host's)
        if m["destination"] == "/sys":
            m.update(type="sysfs", source="sysfs", options=["nosuid", "noexec", "nodev", "ro"])
    fuse = os.path.exists("/dev/fuse")
    if fuse:
        b.config["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10,
                                         "minor": 229}]
    b.sh("cat /ov/from-lower; echo up > /ov/new; ls /ov | tr '\\n' ' '; echo; "
         "grep -c ' /dev/null ' /proc/self/mountinfo; "
         "ls /sys/class/net | tr '\\n' ' '; echo; "
         "touch /hostroot/x 2>&1; "
         + ("stat -c '%t %T' /dev/fuse; cat /dev/fuse 2>&1; " if fuse else "")
         + "true").write()
    r = sub.runner("--root", root, "run", "--bundle", b.path, b.new_id())
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "low" and out[1].split() == ["from-lower", "new"]
    assert out[2] == "1"  # /dev/null is a bind mount of the host's node
    assert out[3].split() == ["lo"]  # a network namespace of its own: its own sysfs
    assert "Permission denied" in out[4]
    if fuse:
        assert out[5] == "a e5" and "Permission denied" in out[6]  # 10:229, host mode 0600
    with open(os.path.join(ov["upper"], "new")) as f:
        assert f.read() == "up\n"
    assert os.stat(os.path.join(ov["upper"], "new")).st_uid == sub.uid
    assert os.listdir(rootonly) == []
    # without a network namespace sysfs is the host's, bound
    b.config["linux"]["namespaces"] = [n for n in b.config["linux"]["namespaces"]
                                       if n["type"] != "network"]
    b.config["mounts"] = [m for m in b.config["mounts"]
                          if m["destination"] not in ("/ov", "/hostroot")]
    b.config["linux"].pop("devices", None)
    b.sh("ls /sys/class/net").write()
    r = sub.runner("--root", root, "run", "--bundle", b.path, b.new_id())
    assert r.returncode == 0, r.stderr
    host = set(os.listdir("/sys/class/net")) - {"lo"}
    assert not host or set(r.stdout.split()) & host  # the host's devices: its sysfs, bound
    assert not b.left(root)
    # nothing of ours is setuid or setgid: the only privileged helpers are newuidmap and
    # newgidmap, Debian's
    found = subprocess.run(["find", os.path.join(REPO, "libcontainer"),
                            os.path.join(REPO, "runner"),
                            os.path.join(REPO, "bin"), os.path.dirname(sys.executable),
                            *([Code.cwd] if Code.path else []),
                            "-perm", "/6000"], capture_output=True, text=True)
    assert found.stdout == ""


def test_features_say_what_rootless_supports(sub):
    r = sub.runner("features")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    mine = subprocess.run(RUNNER + ["features"], capture_output=True, text=True, cwd=REPO)
    as_root = json.loads(mine.stdout)
    assert as_root["linux"]["mountExtensions"]["idmap"]["enabled"] is True
    assert doc["linux"]["mountExtensions"]["idmap"]["enabled"] is False
    assert doc["linux"]["netDevices"]["enabled"] is False
    assert "idmap" not in doc["mountOptions"] and "ridmap" not in doc["mountOptions"]
    notes = doc["annotations"]
    assert notes["io.github.runner.rootless"] == "true"
    assert "newuidmap" in notes["io.github.runner.rootless.idMappings"]
    assert "delegated" in notes["io.github.runner.rootless.cgroup"]
    assert "io.github.runner.rootless" not in as_root["annotations"]


def test_no_pivot_leaves_no_bare_procfs_rootless(sub, rbundle):
    """--no-pivot as an unprivileged user: the host's procfs cannot be detached in a user
    namespace, so it is covered; a process inside that makes its own user and pid
    namespaces may still not mount a fresh procfs (issue 11, point 11; runc: EPERM)."""
    import secprobe

    b = rbundle(sub)
    probe = os.path.join(b.rootfs, "bin", "secprobe")
    shutil.copy(secprobe.binary(), probe)
    os.chown(probe, sub.uid, sub.gid)
    b.config["process"]["args"] = ["/bin/secprobe", "procmount"]
    b.write()
    for flags in ((), ("--no-pivot",)):
        r = sub.runner("run", *flags, "--bundle", b.path, b.new_id())
        assert (r.returncode, r.stdout) == (0, "mount EPERM\n"), (flags, r.stderr)
    assert not b.left(_default_root(sub))


# ---- an engine: rootless podman ----------------------------------------------------------

def test_rootless_podman_drives_the_runner(sub, top, rootfs_template):
    """Rootless podman runs its OCI runtime as root of the user's own user namespace, with
    no user namespace in the config: the runner takes that as rootless (devices bound, the
    state under $XDG_RUNTIME_DIR/runner, no host cgroups). run -d, exec and rm work."""
    if shutil.which("podman") is None or shutil.which("conmon") is None:
        pytest.skip("podman (and conmon) are not installed: `make test` installs them")
    base = tempfile.mkdtemp(prefix="podman-", dir=top)
    os.chmod(base, 0o755)
    xdg = os.path.join(base, "xdg")
    os.mkdir(xdg, 0o700)
    log = os.path.join(base, "calls.log")
    wrapper = os.path.join(base, "runtime")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\n"
                f"echo \"$*\" >> {log}\n"
                f"exec env PYTHONPATH={Code.path or REPO} {Code.python} -m runner \"$@\"\n")
    os.chmod(wrapper, 0o755)
    subprocess.run(["chown", "-R", f"{sub.uid}:{sub.gid}", base], check=True)
    env = sub.env(XDG_RUNTIME_DIR=xdg)
    pod = ["podman", "--cgroup-manager", "cgroupfs", "--events-backend", "file",
           "--storage-driver", "vfs"]
    run = pod + ["run", "--network", "none", "--runtime", wrapper]
    try:
        tar = subprocess.run(["tar", "-C", rootfs_template, "-c", "."], capture_output=True,
                             check=True).stdout
        r = subprocess.run(pod + ["import", "-", "localhost/rl-busybox"], input=tar,
                           capture_output=True, user=sub.uid, group=sub.gid, extra_groups=[],
                           env=env, cwd=base, timeout=120)
        assert r.returncode == 0, r.stderr
        # (detached: podman's own foreground `run` waits 20 s here for its cleanup process,
        # with runc as with the runner)
        r = sub.run(*run, "-d", "--name", "rl-d", "localhost/rl-busybox", "sleep", "60",
                    env=env, cwd=base, timeout=120, detached=True)
        assert r.returncode == 0, r.stderr
        r = sub.run(*pod, "exec", "rl-d", "sh", "-c",
                    "id -u; cat /proc/1/comm /proc/self/uid_map; stat -c %t:%T /dev/null; "
                    "grep -c ' /dev/null ' /proc/self/mountinfo", env=env, cwd=base)
        assert r.returncode == 0, r.stderr
        out = r.stdout.splitlines()
        assert out[:2] == ["0", "sleep"]
        assert out[2].split() == ["0", str(sub.uid), "1"]
        assert out[3].split() == ["1", str(sub.subuid[0]), str(min(sub.subuid[1], 65536))]
        assert out[4:] == ["1:3", "1"]  # the host's /dev/null, bound
        r = sub.run(*pod, "rm", "-f", "-t", "0", "rl-d", env=env, cwd=base)
        assert r.returncode == 0, r.stderr
        verbs = [line.split()[0] for line in open(log) if line.strip()]
        assert {"create", "start", "exec", "delete"} <= set(verbs), verbs
        assert not any(line.startswith("--root") for line in open(log))  # the default root
        assert os.listdir(os.path.join(xdg, "runner")) == []
    finally:
        # rootless podman keeps a pause process holding its user namespace: ours to end
        try:
            with open(os.path.join(xdg, "libpod", "tmp", "pause.pid")) as f:
                pause = int(f.read().strip())
            os.kill(pause, signal.SIGKILL)
            for _ in range(250):  # gone, or a zombie for the machine's init to reap
                if pause not in sub.pids():
                    break
                time.sleep(0.02)
        except (OSError, ValueError):
            pass
        # podman's lock file for the user, in /dev/shm: the test made the user, so it is ours
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"/dev/shm/libpod_rootless_lock_{sub.uid}")
