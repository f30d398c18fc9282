"""NOTIFY_SOCKET (sd_notify, systemd Type=notify units, podman --sdnotify=container): the
container gets a socket of the runtime's at /run/notify/notify.sock, and what it says
READY=1 on reaches the host's socket with MAINPID, as runc does. A host-side datagram
socket of the test listens; a static sender (sdnotify.c) notifies from the busybox rootfs.
runc runs side by side on the same bundle and socket."""
from __future__ import annotations

import array
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import pytest
from conftest import (REPO, RUNNER, assert_nothing_left, make_reachable, mount_options,
                      mountinfo_line, new_id)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "sdnotify.c")
BIN = os.path.join(REPO, "build", "test-bin", "sdnotify")
IN_CONTAINER = "/run/notify/notify.sock"


def sender() -> str:
    """Build the sender once (static: the rootfs has no libc)."""
    if os.path.exists(BIN) and os.path.getmtime(BIN) >= os.path.getmtime(SRC):
        return BIN
    if shutil.which("gcc") is None:
        pytest.skip("gcc is needed to build the sd_notify test sender")
    os.makedirs(os.path.dirname(BIN), exist_ok=True)
    tmp = f"{BIN}.{os.getpid()}"
    r = subprocess.run(["gcc", "-static", "-O2", "-o", tmp, SRC], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot build the sd_notify test sender: {r.stderr[-500:]}")
    os.rename(tmp, BIN)
    return BIN


class HostSocket:
    """What systemd would be: a datagram socket that records each message (an fd passed
    with one, as BARRIER=1 carries, is closed at once: the barrier is passed)."""

    def __init__(self, address: str):
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        if not address.startswith("@"):
            os.chmod(address, 0o777)  # a rootless runtime connects too
        self.sock.settimeout(0.1)
        self.messages: list = []
        self._stop = False
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self):
        while not self._stop:
            try:
                data, anc, _, _ = self.sock.recvmsg(4096, socket.CMSG_SPACE(16))
            except socket.timeout:
                continue
            fds = array.array("i")
            for level, kind, raw in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(raw[:len(raw) - len(raw) % fds.itemsize])
            # recorded before the barrier passes: the runtime returns once it has
            self.messages.append(data.decode() + (" +fd" if fds else ""))
            for fd in fds:
                os.close(fd)

    def wait_for(self, n: int, timeout: float = 10) -> list:
        deadline = time.monotonic() + timeout
        while len(self.messages) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.messages)

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()
        if not self.address.startswith("@"):
            os.unlink(self.address)


@pytest.fixture
def host(tmp_path):
    s = HostSocket(str(tmp_path / "host.sock"))
    yield s
    s.close()


@pytest.fixture
def nbundle(bundle):
    """The bundle with the sender in its rootfs."""
    shutil.copy(sender(), os.path.join(bundle.rootfs, "bin", "sdnotify"))
    return bundle


def env_with(sock: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
    if sock is not None:
        env["NOTIFY_SOCKET"] = sock
    return env


@pytest.fixture
def runc():
    """runc's command with a state root of its own, short: runc binds its notify socket by
    path, and a socket address holds 108 bytes (this runtime's test roots are deeper)."""
    import tempfile

    exe = shutil.which("runc")
    if exe is None:
        pytest.skip("runc is not installed (the Makefile's test packages install it)")
    root = tempfile.mkdtemp(prefix="rn-", dir="/tmp")
    yield [exe, "--root", root]
    shutil.rmtree(root, ignore_errors=True)


def spawn(cmd: list, sock: str, tmp_path, name: str) -> subprocess.Popen:
    """A foreground run: its pid is the MAINPID the host must hear."""
    with open(tmp_path / f"{name}.out", "w") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env_with(sock), cwd=REPO)


def output(p: subprocess.Popen, tmp_path, name: str) -> str:
    p.wait(timeout=60)
    with open(tmp_path / f"{name}.out") as f:
        return f.read()


INSIDE = ('echo "NOTIFY_SOCKET=$NOTIFY_SOCKET"; ls -lnd /run/notify /run/notify/notify.sock; cat /proc/self/mountinfo; '
          'sdnotify "STATUS=starting" "READY=1"; echo "sent=$?"')


def test_run_relays_ready_with_mainpid_as_runc(nbundle, host, runc, tmp_path):
    """A foreground run: the process finds NOTIFY_SOCKET=/run/notify/notify.sock on a
    read-only, nosuid, nodev, noexec bind; the host hears the READY line and MAINPID=the
    runtime's own pid (the process a Type=notify unit watches), as from runc."""
    nbundle.sh(INSIDE)
    nbundle.write()
    cid = new_id()
    nbundle.last_id = cid
    ours = spawn(RUNNER + ["--root", nbundle.root, "run", "-b", nbundle.path, cid], host.address,
                 tmp_path, "ours")
    out = output(ours, tmp_path, "ours")
    assert ours.returncode == 0, out
    got = host.wait_for(3)
    assert got == ["READY=1\n", f"MAINPID={ours.pid}\n", "BARRIER=1 +fd"], (got, out)
    assert f"NOTIFY_SOCKET={IN_CONTAINER}" in out and "sent=0" in out, out
    assert mount_options(mountinfo_line(out, "/run/notify")) >= {"ro", "nosuid", "nodev",
                                                                  "noexec"}
    assert_nothing_left(nbundle, cid)
    host.messages.clear()

    theirs = spawn(runc + ["run", "-b", nbundle.path, "runc-" + cid], host.address,
                   tmp_path, "runc")
    rout = output(theirs, tmp_path, "runc")
    assert theirs.returncode == 0, rout
    got = host.wait_for(2)
    # runc 1.1 sends no BARRIER=1 (runc 1.2 does, as this runtime)
    assert got[:2] == ["READY=1\n", f"MAINPID={theirs.pid}\n"], (got, rout)
    assert f"NOTIFY_SOCKET={IN_CONTAINER}" in rout and "sent=0" in rout
    assert (mount_options(mountinfo_line(rout, "/run/notify"))
            >= {"ro", "nosuid", "nodev", "noexec"})
    # the socket: mode 0777 in a directory others may enter, in both
    for text in (out, rout):
        modes = {l.split()[-1]: l.split()[0] for l in text.splitlines()
                 if l.startswith(("d", "s")) and l.split()[-1].startswith("/run/notify")}
        assert modes == {"/run/notify": "drwxr-xr-x", IN_CONTAINER: "srwxrwxrwx"}, text


def detached(cmd: list, env: dict) -> tuple:
    """A command that leaves a container behind, its stdio not a pipe (the container's
    process would hold it open): (exit status, stderr)."""
    import tempfile

    with tempfile.TemporaryFile("w+") as err:
        r = subprocess.run(cmd, env=env, cwd=REPO, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        err.seek(0)
        return r.returncode, err.read()


def create(cmd: list, bundle, cid: str, env: dict) -> None:
    bundle.write()
    code, err = detached(cmd + ["create", "-b", bundle.path, cid], env)
    assert code == 0, err


def _start_waits(cmd: list, bundle, host, cid: str, env: dict):
    """create, then start: returns (seconds start took, messages heard when it returned,
    the init's pid)."""
    create(cmd, bundle, cid, env)
    assert host.messages == []  # nothing is relayed before start
    import json

    pid = json.loads(subprocess.run(cmd + ["state", cid], capture_output=True, text=True,
                                    check=True).stdout)["pid"]
    t0 = time.monotonic()
    r = subprocess.run(cmd + ["start", cid], env=env, cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    heard = host.wait_for(2)
    st = json.loads(subprocess.run(cmd + ["state", cid], capture_output=True, text=True,
                                   check=True).stdout)
    assert st["status"] == "running"  # READY is not the end: the process goes on
    subprocess.run(cmd + ["delete", "--force", cid], capture_output=True, timeout=60)
    return took, heard, pid


def test_start_waits_for_ready_as_runc(nbundle, host, runc):
    """runc create + runc start: the process runs only at start, and start returns once it
    said READY=1 (a second in), with MAINPID=the container's init."""
    nbundle.sh("sleep 1; sdnotify READY=1; exec sleep 60")
    nbundle.write()
    cid = new_id()
    nbundle.last_id = cid
    env = env_with(host.address)
    took, heard, pid = _start_waits(RUNNER + ["--root", nbundle.root], nbundle, host, cid, env)
    assert took >= 0.9
    assert heard == ["READY=1\n", f"MAINPID={pid}\n", "BARRIER=1 +fd"]
    assert_nothing_left(nbundle, cid)
    host.messages.clear()
    took, heard, pid = _start_waits(runc, nbundle, host, "runc-" + cid, env)
    assert took >= 0.9
    assert heard[:2] == ["READY=1\n", f"MAINPID={pid}\n"]


def test_detached_run_returns_after_ready(nbundle, host):
    nbundle.sh("sleep 0.5; sdnotify READY=1; exec sleep 60")
    nbundle.write()
    nbundle.last_id = new_id()
    t0 = time.monotonic()
    code, err = detached(RUNNER + ["--root", nbundle.root, "run", "-d", "-b", nbundle.path,
                                   nbundle.last_id], env_with(host.address))
    took = time.monotonic() - t0
    assert code == 0, err
    assert took >= 0.4
    import json

    pid = json.loads(nbundle.runner("state", nbundle.last_id, check=True).stdout)["pid"]
    assert host.messages == ["READY=1\n", f"MAINPID={pid}\n", "BARRIER=1 +fd"]
    nbundle.runner("delete", "--force", nbundle.last_id, check=True)
    assert_nothing_left(nbundle)


def test_no_ready_no_wait(nbundle, host):
    """A process that exits without READY: a foreground run gives its status (runc 1.1
    hangs here), start returns; the host hears nothing."""
    nbundle.sh("exit 3")
    r = nbundle.run(None, env=env_with(host.address), timeout=30)
    assert r.returncode == 3, r.stderr
    assert_nothing_left(nbundle)
    cid = new_id()
    nbundle.last_id = cid
    env = env_with(host.address)
    create(RUNNER + ["--root", nbundle.root], nbundle, cid, env)
    r = nbundle.runner("start", cid, env=env, timeout=30)
    assert r.returncode == 0, r.stderr
    nbundle.runner("delete", cid, check=True)
    assert host.messages == []
    assert_nothing_left(nbundle, cid)


def test_abstract_host_socket(nbundle, tmp_path):
    """NOTIFY_SOCKET=@name (an abstract socket, as sd_notify takes it): the runtime relays
    from the host's network namespace, whatever the container's."""
    host = HostSocket(f"@runner-test-{os.getpid()}-{new_id()}")
    try:
        nbundle.sh("sdnotify READY=1")
        r = nbundle.run(None, env=env_with(host.address))
        assert r.returncode == 0, r.stderr
        assert host.wait_for(1)[:1] == ["READY=1\n"]
    finally:
        host.close()
    assert_nothing_left(nbundle)


def test_deep_state_root(nbundle, host, tmp_path):
    """A state root so deep that <root>/<id>/notify/notify.sock is longer than a socket
    address holds: still bound and relayed (runc fails: bind: invalid argument)."""
    nbundle.root = str(tmp_path / ("d" * 100) / "state")
    nbundle.sh("sdnotify READY=1")
    r = nbundle.run(None, env=env_with(host.address))
    assert r.returncode == 0, r.stderr
    assert host.wait_for(1)[:1] == ["READY=1\n"]
    assert_nothing_left(nbundle)


@pytest.mark.parametrize("value,why", [
    ("/nonexistent/notify.sock", "No such file or directory"),
    ("relative.sock", "not an absolute path"),
    ("/etc/hostname", "Connection refused"),
])
def test_bad_notify_socket_is_refused_leaving_nothing(nbundle, value, why):
    nbundle.sh("echo ran")
    for verb in ("run", "create"):
        nbundle.write()
        cid = new_id()
        nbundle.last_id = cid
        r = nbundle.runner(verb, "-b", nbundle.path, cid, env=env_with(value))
        assert r.returncode == 1, (verb, r.stdout, r.stderr)
        assert "NOTIFY_SOCKET" in r.stderr and why in r.stderr, r.stderr
        assert "ran" not in r.stdout
        assert not os.path.isdir(nbundle.root) or os.listdir(nbundle.root) == []
        assert_nothing_left(nbundle, cid)


def test_create_killed_after_the_socket_dir_was_made(nbundle, host):
    """A runner killed midway through create leaves the notify directory in the state dir:
    delete --force removes it with the rest."""
    nbundle.sh("sleep 60").write()
    env = env_with(host.address)
    for k in range(2, 9):
        cid = new_id()
        nbundle.last_id = cid
        code, err = detached(RUNNER + ["--root", nbundle.root, "create", "-b", nbundle.path,
                                       cid], dict(env, RUNNER_CRASH_AT=str(k)))
        assert code == -9 or code == 137, err
        made = os.path.isdir(os.path.join(nbundle.root, cid, "notify"))
        r = nbundle.runner("delete", "--force", cid)
        assert r.returncode == 0, r.stderr
        assert_nothing_left(nbundle, cid)
        if made:
            break
    assert made, "no crash point after the notify directory was made"


def test_start_with_socket_of_a_container_created_without(nbundle, host, runc):
    """runc refuses too (its socket directory is missing); the container stays created."""
    nbundle.sh("echo ran")
    nbundle.write()
    cid = new_id()
    nbundle.last_id = cid
    create(RUNNER + ["--root", nbundle.root], nbundle, cid, env_with(None))
    r = nbundle.runner("start", cid, env=env_with(host.address))
    assert r.returncode == 1 and "NOTIFY_SOCKET" in r.stderr, r.stderr
    assert '"created"' in nbundle.runner("state", cid, check=True).stdout
    nbundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(nbundle, cid)
    create(runc, nbundle, "runc-" + cid, env_with(None))
    rs = subprocess.run(runc + ["start", "runc-" + cid], env=env_with(host.address),
                        capture_output=True, timeout=60)
    subprocess.run(runc + ["delete", "--force", "runc-" + cid], capture_output=True, timeout=60)
    assert rs.returncode == 1


def test_user_namespace_and_non_root_user_can_notify(nbundle, host):
    """The socket is the container's to use whoever its process is: uid 1000 in a user
    namespace mapped to unprivileged host ids."""
    nbundle.config["linux"]["namespaces"].append({"type": "user"})
    nbundle.config["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    nbundle.config["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    nbundle.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    make_reachable(nbundle.rootfs)
    # the rootfs the container's root owns, as an engine prepares it (it makes /run/notify)
    subprocess.run(["chown", "-R", "200000:200000", nbundle.rootfs], check=True)
    nbundle.sh("id -u; sdnotify READY=1")
    r = nbundle.run(None, env=env_with(host.address))
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1000"]
    assert host.wait_for(1)[:1] == ["READY=1\n"]
    assert_nothing_left(nbundle)


def test_without_notify_socket_nothing_is_loaded(nbundle):
    """A run without NOTIFY_SOCKET imports no notify code and gives the process none."""
    nbundle.sh('echo "[$NOTIFY_SOCKET]"; test -e /run/notify && echo mounted; true')
    nbundle.write()
    cid = new_id()
    nbundle.last_id = cid
    code = ("import sys\nfrom runner.__main__ import main\n"
            f"code = main(['--root', {nbundle.root!r}, 'run', '-b', {nbundle.path!r}, {cid!r}])\n"
            "sys.stdout.flush()\n"
            "print(code, 'libcontainer.notify' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env_with(None), cwd=REPO, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[]", "0", "False"], r.stdout
    assert_nothing_left(nbundle, cid)


# ---- rootless: an unprivileged user runs the runtime ------------------------------------

from test_rootless import Code, rbundle, sub, top, users  # noqa: E402,F401  (its fixtures)


def test_rootless_run_and_start_relay_as_runc(sub, rbundle):
    """An unprivileged runner (state under the user's default root): its process, uid 1000
    of the user namespace (a subordinate host uid), notifies through the socket the user's
    runtime made; the host hears READY=1 and MAINPID, from runc as the same user too."""
    b = rbundle(sub)
    shutil.copy(sender(), os.path.join(b.rootfs, "bin", "sdnotify"))
    os.chown(os.path.join(b.rootfs, "bin", "sdnotify"), sub.uid, sub.gid)
    b.config["process"]["user"] = {"uid": 1000, "gid": 1000}
    b.config["root"]["readonly"] = False  # /run/notify is made in the user's rootfs
    b.sh("id -u; sdnotify READY=1; echo sent=$?").write()
    host = HostSocket(os.path.join(b.dir, "host.sock"))
    try:
        r = sub.runner("run", "--bundle", b.path, b.new_id(),
                       env=sub.env(NOTIFY_SOCKET=host.address))
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["1000", "sent=0"], r.stdout
        got = host.wait_for(3)
        assert [m.split("=")[0] for m in got] == ["READY", "MAINPID", "BARRIER"], got
        assert got[0] == "READY=1\n"
        # create + start as the user: start returns after READY, MAINPID the init's
        host.messages.clear()
        b.sh("sleep 0.5; sdnotify READY=1; exec sleep 60").write()
        cid = b.new_id()
        r = sub.run(*Code.runner(), "create",
                    "--bundle", b.path, cid, env=sub.env(NOTIFY_SOCKET=host.address),
                    detached=True)
        assert r.returncode == 0, r.stderr
        r = sub.runner("start", cid, env=sub.env(NOTIFY_SOCKET=host.address))
        assert r.returncode == 0, r.stderr
        import json

        pid = json.loads(sub.runner("state", cid).stdout)["pid"]
        assert host.messages[:2] == ["READY=1\n", f"MAINPID={pid}\n"]
        assert sub.runner("delete", "--force", cid).returncode == 0
        assert not b.left(os.path.join(sub.home, ".local", "state", "runner"))
        if shutil.which("runc"):
            host.messages.clear()
            b.sh("id -u; sdnotify READY=1; echo sent=$?").write()
            r = sub.run("runc", "--root", os.path.join(sub.home, "runc"), "run", new_id(),
                        cwd=b.path, env=sub.env(NOTIFY_SOCKET=host.address))
            assert r.returncode == 0, r.stderr
            assert r.stdout.split() == ["1000", "sent=0"], r.stdout
            assert host.wait_for(2)[:1] == ["READY=1\n"]
    finally:
        host.close()


def test_library_takes_the_socket_as_an_argument(nbundle, host):
    """libcontainer reads no NOTIFY_SOCKET of its own: run(notify_socket=…) relays; a run
    without the argument ignores the environment's (here a bogus one)."""
    nbundle.sh('echo "[$NOTIFY_SOCKET]"; sdnotify READY=1 2>/dev/null; true')
    nbundle.write()
    cid = new_id()
    nbundle.last_id = cid
    code = ("import libcontainer\n"
            f"a = libcontainer.run({nbundle.path!r}, {cid!r}, root={nbundle.root!r}, "
            f"notify_socket={host.address!r})\n"
            f"b = libcontainer.run({nbundle.path!r}, {cid!r}, root={nbundle.root!r})\n"
            "print(a, b)\n")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=env_with("/nonexistent.sock"),
                         cwd=REPO)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert out.split() == [f"[{IN_CONTAINER}]", "[]", "0", "0"], out
    # the foreground run's MAINPID: the program that called run
    assert host.wait_for(3) == ["READY=1\n", f"MAINPID={p.pid}\n", "BARRIER=1 +fd"]
    assert_nothing_left(nbundle, cid)
