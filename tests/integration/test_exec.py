"""`runner exec`: another process in a running container, in all of its namespaces."""
from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, new_id
from test_lifecycle import detached, run_detached, state, wait_status


@pytest.fixture
def running(bundle):
    """A running container (sleep as init) whose id is returned; deleted afterwards."""
    bundle.sh("sleep 60")
    cid = run_detached(bundle)
    yield cid
    bundle.runner("delete", "--force", cid)


def test_exec_joins_every_namespace(bundle, running):
    init = state(bundle, running)["pid"]
    r = bundle.runner("exec", running, "sh", "-c",
                      "echo $$; hostname; for n in pid mnt net ipc uts; do readlink /proc/self/ns/$n; done; ps -o pid,args",
                      check=True)
    lines = r.stdout.splitlines()
    # a small pid: it lives in the container's pid namespace, where init is 1
    assert int(lines[0]) < 10
    assert lines[1] == "runner"
    for line, ns in zip(lines[2:7], ["pid", "mnt", "net", "ipc", "uts"]):
        assert line == os.readlink(f"/proc/{init}/ns/{ns}")
    assert any(l.split()[:2] == ["1", "sleep"] for l in lines[7:])


def test_exec_exit_status_and_stdio(bundle, running):
    r = bundle.runner("exec", running, "sh", "-c", "read x; echo got $x; echo err >&2; exit 5",
                      input="hi\n")
    assert r.returncode == 5
    assert r.stdout == "got hi\n" and r.stderr == "err\n"


def test_exec_missing_binary(bundle, running):
    r = bundle.runner("exec", running, "nosuch")
    assert r.returncode == 127 and 'exec: "nosuch"' in r.stderr


def test_exec_flags(bundle, running):
    r = bundle.runner("exec", "--env", "FOO=bar", "--cwd", "/tmp", "--user", "1000:1000",
                      "--additional-gids", "5", "--no-new-privs", running, "sh", "-c",
                      "echo $FOO; pwd; id -u; id -g; id -G; grep NoNewPrivs /proc/self/status",
                      check=True)
    assert r.stdout.split("\n")[:6] == ["bar", "/tmp", "1000", "1000", "1000 5",
                                        "NoNewPrivs:\t1"]


def test_exec_cap(bundle, running):
    r = bundle.runner("exec", "--cap", "CAP_SYS_ADMIN", running, "grep", "CapEff",
                      "/proc/self/status", check=True)
    assert int(r.stdout.split()[1], 16) >> 21 & 1  # CAP_SYS_ADMIN is 21
    r = bundle.runner("exec", running, "grep", "CapEff", "/proc/self/status", check=True)
    assert not int(r.stdout.split()[1], 16) >> 21 & 1


def test_exec_process_json(bundle, running, tmp_path):
    proc = {"args": ["sh", "-c", "echo $A $(id -u) $(pwd)"], "env": ["A=from-json"],
            "cwd": "/bin", "user": {"uid": 65534, "gid": 65534}}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    r = bundle.runner("exec", "--process", str(tmp_path / "p.json"), running, check=True)
    assert r.stdout == "from-json 65534 /bin\n"


@pytest.mark.parametrize("content,needle", [
    ("{not json", "malformed JSON"),
    ('{"args": ["sh"]}', "process.cwd"),
    ('{"args": [], "cwd": "/"}', "process.args"),
])
def test_exec_bad_process_json(bundle, running, tmp_path, content, needle):
    (tmp_path / "p.json").write_text(content)
    r = bundle.runner("exec", "--process", str(tmp_path / "p.json"), running)
    assert r.returncode == 1 and needle in r.stderr and "--process" in r.stderr


def test_exec_detach_pid_file(bundle, running, tmp_path):
    pid_file = tmp_path / "exec.pid"
    r = detached(bundle, "exec", "--detach", "--pid-file", str(pid_file), running, "sleep", "30")
    assert r.returncode == 0, r.stderr
    pid = int(pid_file.read_text())
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read() == b"sleep\x0030\x00"
    assert os.readlink(f"/proc/{pid}/ns/pid") == os.readlink(
        f"/proc/{state(bundle, running)['pid']}/ns/pid")
    pids = json.loads(bundle.runner("ps", "--format", "json", running, check=True).stdout)
    assert pid in pids


def test_exec_preserve_fds(bundle, running, tmp_path):
    extra = tmp_path / "extra"
    extra.write_text("kept\n")
    fd = os.open(extra, os.O_RDONLY)
    try:
        os.dup2(fd, 3, inheritable=True)
        r = subprocess.run(RUNNER + ["--root", bundle.root, "exec", "--preserve-fds", "1", running,
                                     "sh", "-c", "cat <&3; ls /proc/self/fd"],
                           capture_output=True, text=True, pass_fds=(3,), cwd=REPO, timeout=30)
    finally:
        os.close(fd)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "kept"
    assert sorted(int(x) for x in out[1:]) <= [0, 1, 2, 3, 4]  # ls's own dir fd may be 4


def test_exec_wrong_status(bundle):
    # a stopped one (a created one takes an exec, as runc's: test_peer_behaviour.py)
    bundle.sh("true")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    assert detached(bundle, "create", "--bundle", bundle.path, cid).returncode == 0
    try:
        bundle.runner("start", cid, check=True)
        wait_status(bundle, cid, "stopped")
        r = bundle.runner("exec", cid, "true")
        assert r.returncode == 1 and "not running" in r.stderr
    finally:
        bundle.runner("delete", "--force", cid, check=True)
    assert_nothing_left(bundle)


def _console_server(path):
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    return srv


def _recv_fd(srv):
    conn, _ = srv.accept()
    with conn:
        msg, fds, _, _ = socket.recv_fds(conn, 64, 1)
    return msg, fds[0]


def _read_until(fd, needle: bytes, limit=200):
    data = b""
    for _ in range(limit):
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
        if needle in data:
            break
    return data


def test_exec_tty_console_socket(bundle, running, tmp_path):
    sock_path = str(tmp_path / "console.sock")
    srv = _console_server(sock_path)
    try:
        p = subprocess.Popen(RUNNER + ["--root", bundle.root, "exec", "--tty", "--detach",
                                       "--console-socket", sock_path, running, "sh", "-c",
                                       "tty; stty size; echo done"],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, cwd=REPO)
        msg, master = _recv_fd(srv)
        assert p.wait(30) == 0, p.stderr.read()
        out = _read_until(master, b"done")
        os.close(master)
    finally:
        srv.close()
    assert msg == b"/dev/ptmx"
    assert b"/dev/pts/" in out and b"done" in out


def test_console_socket_must_exist(bundle, running, tmp_path):
    r = bundle.runner("exec", "--tty", "--detach", "--console-socket", str(tmp_path / "nope"),
                      running, "true")
    assert r.returncode == 1 and "--console-socket" in r.stderr


def test_exec_env_replaces_and_user_keeps_additional_gids(bundle):
    """runc's exec: an --env KEY replaces the config's value (its init sets them in order),
    and --user keeps the config's additional gids unless -g says otherwise (issue 11,
    point 7)."""
    bundle.process["env"].append("FOO=config")
    bundle.process["user"]["additionalGids"] = [7]
    cid = run_detached(bundle.sh("sleep 60"))
    try:
        r = bundle.runner("exec", "--env", "FOO=exec", "--env", "BAR=1", cid, "sh", "-c",
                          "echo $FOO $BAR", check=True)
        assert r.stdout == "exec 1\n"
        r = bundle.runner("exec", "--user", "1000:1000", cid, "id", "-G", check=True)
        assert r.stdout == "1000 7\n"
        r = bundle.runner("exec", "--user", "1000:1000", "-g", "5", cid, "id", "-G", check=True)
        assert r.stdout == "1000 5\n"
    finally:
        bundle.runner("delete", "--force", cid)


@pytest.mark.parametrize("flag", ["--apparmor", "--process-label"])
def test_exec_lsm_flags_are_refused(bundle, running, flag):
    """The runtime applies neither AppArmor nor SELinux: asked for one, exec refuses
    before starting anything, naming the flag (never runs unconfined)."""
    r = bundle.runner("exec", flag, "some_profile", running, "sh", "-c", "echo ran")
    assert r.returncode == 1 and r.stdout == "", r.stdout
    assert r.stderr.startswith(f"runner: {flag}: cannot apply 'some_profile'"), r.stderr


def test_exec_cgroup_runs_the_process_in_a_sub_cgroup(bundle, running):
    """runc's exec --cgroup PATH (every hierarchy) and CONTROLLER:PATH (that one only):
    sub-cgroups of the container's that exist; anything else is refused."""
    with open(os.path.join(bundle.root, running, "state.json")) as f:
        cg = json.load(f)["cgroups"]
    dirs = list(dict.fromkeys(cg["paths"].values())) + ([cg["unified"]] if cg.get("unified") else [])
    made = []
    try:
        for d in dirs:
            os.mkdir(os.path.join(d, "sub"))
            made.append(os.path.join(d, "sub"))
            for name in ("cpuset.cpus", "cpuset.mems"):  # a v1 cpuset child starts empty
                if os.path.exists(os.path.join(d, name)):
                    with open(os.path.join(d, name)) as f, \
                            open(os.path.join(d, "sub", name), "w") as g:
                        g.write(f.read())
        r = bundle.runner("exec", "--cgroup", "sub", running, "cat", "/proc/self/cgroup",
                          check=True)
        assert all(line.endswith("/sub") for line in r.stdout.splitlines()), r.stdout
        if "memory" in cg["paths"]:
            r = bundle.runner("exec", "--cgroup", "memory:sub", running, "cat",
                              "/proc/self/cgroup", check=True)
            for line in r.stdout.splitlines():
                _, ctrls, path = line.split(":", 2)
                assert path.endswith("/sub") == ("memory" in ctrls.split(",")), r.stdout
        for bad, words in (("nosuch", "does not exist"), ("../..", "leads out"),
                           ("nosuchctrl:sub", "unknown controller")):
            r = bundle.runner("exec", "--cgroup", bad, running, "true")
            assert r.returncode == 1 and words in r.stderr, (bad, r.stderr)
    finally:
        for d in made:
            os.rmdir(d)


def test_exec_is_always_in_the_containers_cgroup(bundle, running):
    """exec enters the init's pid namespace with a fork in the shim: the forked process's
    first message may overtake its parent's (which carries its pid); it is still the one
    moved into the container's cgroup, every time (seen under load: the parent's pid was
    moved, and the exec'd process stayed in the runner's cgroup)."""
    with open(f"/proc/{state(bundle, running)['pid']}/cgroup") as f:
        want = sorted(f.read().split())
    for _ in range(10):
        r = bundle.runner("exec", running, "cat", "/proc/self/cgroup", check=True)
        assert sorted(r.stdout.split()) == want


def test_exec_cap_for_a_user_reaches_ambient_where_inheritable(bundle):
    """runc's exec --cap also adds to the ambient set when the config has an inheritable
    one: a process of another user then keeps the capability across execve (the kernel
    raises only what is inheritable). Same masks as runc 1.1.5 on this bundle."""
    from conftest import cap_mask

    caps = bundle.process["capabilities"]
    caps["inheritable"], caps["ambient"] = ["CAP_KILL"], []
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    cid = run_detached(bundle.sh("sleep 60"))
    try:
        r = bundle.runner("exec", "--cap", "CAP_KILL", "--cap", "CAP_SYS_PTRACE", cid,
                          "grep", "Cap", "/proc/self/status", check=True)
        got = dict(line.split(":\t") for line in r.stdout.splitlines())
        kill = cap_mask("CAP_KILL")
        assert (got["CapAmb"], got["CapEff"], got["CapPrm"]) == (kill, kill, kill), r.stdout
        assert got["CapBnd"] == cap_mask(*caps["bounding"], "CAP_SYS_PTRACE")
    finally:
        bundle.runner("delete", "--force", cid)
