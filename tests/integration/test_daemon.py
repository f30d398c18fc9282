"""`runner daemon` itself: its transports (unix 0660, fd:// socket activation, TCP only with
mutual TLS), Docker's error JSON for bad requests, concurrency (two creates of one name:
one 409), live-restore through its monitors across daemon restarts, json-file rotation, and
that `import libcontainer` / `runner run` load none of it."""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time

import pytest

from daemonkit import DOCKER, IMAGE, REPO, RunnerDaemon, busybox_archive, loaded_daemon

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(not os.path.exists(DOCKER), reason="no /usr/bin/docker")]
pytest.importorskip("aiohttp")
docker_py = pytest.importorskip("docker")

PORT = 24311


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return busybox_archive(str(tmp_path_factory.mktemp("img") / "bb.tar"))


def _rd(archive, netns: bool):
    # in a network namespace of its own: a container on the default network gets a bridge
    # there, never on the host
    with loaded_daemon(RunnerDaemon, f"/tmp/daemon-rd-{os.getpid()}", archive, netns) as d:
        yield d


@pytest.fixture
def rd(archive):
    yield from _rd(archive, True)


@pytest.fixture
def rd_host(archive):
    """In the host's network namespace (to reach a registry on its 127.0.0.1): its
    containers use --network none."""
    yield from _rd(archive, False)


def _http(sock_path: str, method: str, path: str, body: bytes | None = None, headers=None):
    import http.client

    class Conn(http.client.HTTPConnection):
        def connect(self):
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.connect(sock_path)
    c = Conn("localhost", timeout=30)
    c.request(method, path, body=body, headers=dict({"Content-Type": "application/json"}, **(headers or {})))
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data


# ---- transports ----------------------------------------------------------------------------

def test_unix_socket_mode_and_default_group(rd):
    st = os.stat(rd.sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660


def _daemon(args, env=None, pass_fds=(), base=None):
    base = base or f"/tmp/daemon-tx-{os.getpid()}"
    os.makedirs(base, exist_ok=True)
    return subprocess.Popen([sys.executable, "-m", "runner", "daemon", "--data-root", f"{base}/data", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env, pass_fds=pass_fds)


def _stop(p):
    if p.poll() is None:
        p.terminate()
        p.wait(20)
    subprocess.run(["rm", "-rf", f"/tmp/daemon-tx-{os.getpid()}"])


def test_plain_tcp_refused(tmp_path):
    p = _daemon(["-H", f"tcp://0.0.0.0:{PORT}"])
    out, _ = p.communicate(timeout=30)
    _stop(p)
    assert p.returncode != 0 and "--tlsverify" in out
    p = _daemon(["-H", f"tcp://0.0.0.0:{PORT}", "--insecure-tcp"])
    out, _ = p.communicate(timeout=30)
    _stop(p)
    assert p.returncode != 0 and "loopback" in out


def test_insecure_tcp_on_loopback(tmp_path):
    p = _daemon(["-H", f"tcp://127.0.0.1:{PORT}", "--insecure-tcp"])
    try:
        ok = None
        for _ in range(100):
            r = subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{PORT}", "version", "--format",
                                "{{.Server.APIVersion}}"], capture_output=True, text=True)
            if r.returncode == 0:
                ok = r.stdout.strip()
                break
            time.sleep(0.1)
        assert ok == "1.41"
    finally:
        _stop(p)


def _certs(d):
    def ssl(*a):
        subprocess.run(["openssl", *a], check=True, capture_output=True, cwd=d)
    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=test-ca")
    for who, ext in (("server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"),
                     ("client", "extendedKeyUsage=clientAuth")):
        (d / f"{who}.ext").write_text(ext + "\n")
        ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}-key.pem", "-out", f"{who}.csr",
            "-subj", f"/CN={who}")
        ssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
            "-CAcreateserial", "-out", f"{who}.pem", "-days", "1", "-extfile", f"{who}.ext")


def test_tcp_mutual_tls(tmp_path):
    _certs(tmp_path)
    t = str(tmp_path)
    p = _daemon(["-H", f"tcp://127.0.0.1:{PORT}", "--tlsverify", "--tlscacert", f"{t}/ca.pem",
                 "--tlscert", f"{t}/server.pem", "--tlskey", f"{t}/server-key.pem"])
    try:
        good = [DOCKER, "-H", f"tcp://127.0.0.1:{PORT}", "--tlsverify", "--tlscacert", f"{t}/ca.pem",
                "--tlscert", f"{t}/client.pem", "--tlskey", f"{t}/client-key.pem", "version",
                "--format", "{{.Server.APIVersion}}"]
        r = None
        for _ in range(100):
            r = subprocess.run(good, capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert r.returncode == 0 and r.stdout.strip() == "1.41", r.stderr
        # no client certificate: refused in the handshake
        r = subprocess.run([DOCKER, "-H", f"tcp://127.0.0.1:{PORT}", "--tlsverify", "--tlscacert",
                            f"{t}/ca.pem", "version"], capture_output=True, text=True)
        assert r.returncode != 0
    finally:
        _stop(p)


def test_fd_socket_activation(tmp_path):
    path = f"/tmp/daemon-fd-{os.getpid()}.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.listen(8)
    fd = s.fileno()
    env = dict(os.environ, LISTEN_FDS="1")
    # LISTEN_PID must be the daemon's own pid: a shell that execs it knows it
    p = subprocess.Popen(["sh", "-c", 'LISTEN_PID=$$ exec "$@"', "sh", sys.executable,
                          "-m", "runner", "daemon", "-H", "fd://", "--data-root",
                          f"/tmp/daemon-tx-{os.getpid()}/data"],
                         cwd=REPO, env=env, close_fds=False, preexec_fn=lambda: os.dup2(fd, 3),
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    s.close()
    try:
        r = None
        for _ in range(100):
            r = subprocess.run([DOCKER, "-H", f"unix://{path}", "version", "--format",
                                "{{.Server.APIVersion}}"], capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        if r.returncode != 0:
            p.terminate()
        assert r.returncode == 0 and r.stdout.strip() == "1.41", p.communicate()[0]
    finally:
        _stop(p)
        os.unlink(path)


def test_fd_without_listen_fds_is_an_error():
    env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_FDS", "LISTEN_PID")}
    p = _daemon(["-H", "fd://"], env=env)
    out, _ = p.communicate(timeout=30)
    _stop(p)
    assert p.returncode != 0 and "LISTEN_FDS" in out


# ---- bad requests --------------------------------------------------------------------------

def test_bad_requests_get_error_json(rd):
    cases = [
        ("POST", "/v1.41/containers/create", b"[1, 2", 400),
        ("POST", "/v1.41/containers/create", b"", 400),
        ("POST", "/v1.41/containers/create", json.dumps({"Image": IMAGE, "HostConfig": {"Memory": "lots"}}).encode(), 400),
        ("POST", "/v1.41/containers/create", json.dumps({"Image": IMAGE, "HostConfig": {"CapAdd": ["NOPE"]}}).encode(), 400),
        ("POST", "/v1.41/containers/create?name=bad%20name", json.dumps({"Image": IMAGE}).encode(), 400),
        ("POST", "/v1.41/containers/create", json.dumps({"Image": IMAGE, "HostConfig": {"Binds": ["/nonexistent-src:rel"]}}).encode(), 400),
        ("POST", "/v1.41/containers/nope/start", None, 404),
        ("POST", "/v1.41/containers/nope/kill?signal=SIGNOPE", None, 404),
        ("GET", "/v1.99/containers/json", None, 400),
        ("GET", "/v1.41/no/such/route", None, 404),
        ("POST", "/v1.41/volumes/create", json.dumps({"Name": "bad name"}).encode(), 400),
        ("GET", "/v1.41/containers/json?filters=notjson", None, 400),
    ]
    for method, path, body, want in cases:
        status, data = _http(rd.sock, method, path, body)
        assert status == want, (path, status, data)
        msg = json.loads(data)["message"]
        assert msg and "Traceback" not in msg
    status, data = _http(rd.sock, "POST", "/v1.41/containers/create", b"x" * (65 * 1024 * 1024))
    assert status == 413 and json.loads(data)["message"]
    # nothing of the refused creates is left
    assert os.listdir(os.path.join(rd.data, "containers")) == []
    assert rd.docker("ps", "-aq").stdout == ""


def test_two_creates_of_one_name(rd):
    results = []

    def create():
        results.append(_http(rd.sock, "POST", "/v1.41/containers/create?name=same",
                             json.dumps({"Image": IMAGE, "Cmd": ["true"]}).encode())[0])
    threads = [threading.Thread(target=create) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [201, 409, 409, 409]
    assert len(rd.docker("ps", "-aq").stdout.split()) == 1


def test_requests_are_concurrent(rd):
    """A `logs -f` and a stuck attach do not hold up other requests."""
    rd.docker("run", "-d", "--name", "slow", IMAGE, "sleep", "60", check=True)
    env = dict(os.environ, DOCKER_HOST=rd.host)
    follow = subprocess.Popen([DOCKER, "logs", "-f", "slow"], env=env, stdout=subprocess.DEVNULL)
    attach = subprocess.Popen([DOCKER, "attach", "slow"], env=env, stdout=subprocess.DEVNULL,
                              stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        t = time.time()
        for _ in range(5):
            assert rd.docker("inspect", "-f", "{{.State.Status}}", "slow").stdout.strip() == "running"
        assert time.time() - t < 10
    finally:
        follow.kill()
        attach.kill()
        follow.wait()
        attach.wait()


@pytest.fixture
def rd_paused(archive, monkeypatch):
    """A daemon that holds every start for 1.5 s between the container's spawn and its
    record (RUNNER_PAUSE_AT, state.py): a race's window held open."""
    monkeypatch.setenv("RUNNER_PAUSE_AT", "started, not recorded=1.5")
    yield from _rd(archive, True)


def test_remove_force_waits_for_the_start_in_flight(rd_paused):
    """`rm -f` during a start: the remove waits for it and kills what it started, as
    dockerd's container lock has it. Before, the remove went on beside the start, which
    then wrote the record of a container already removed (a traceback, and a 500)."""
    d = rd_paused
    cid = d.docker("create", IMAGE, "sleep", "60", check=True).stdout.strip()
    env = dict(os.environ, DOCKER_HOST=d.host, DOCKER_CONFIG=os.path.join(d.base, "cli"))
    start = subprocess.Popen([DOCKER, "start", cid], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)  # inside the pause: spawned, not recorded
    r = d.docker("rm", "-f", cid)
    out, err = start.communicate(timeout=60)
    assert r.returncode == 0, r.stderr
    assert start.returncode == 0 or "removed while it started" in err, err
    assert cid not in d.docker("ps", "-aq", "--no-trunc", check=True).stdout.split()
    assert not os.path.exists(os.path.join(d.data, "containers", cid))
    assert not os.path.exists(os.path.join(d.data, "runtime", cid))
    assert not os.path.exists(f"/sys/fs/cgroup/pids/runner-daemon/{cid}")  # nothing runs
    with open(os.path.join(d.base, "daemon.log"), errors="replace") as f:
        said = f.read()
    assert "Traceback" not in said and "never retrieved" not in said, said


# ---- live-restore --------------------------------------------------------------------------

def test_live_restore_three_restarts(rd):
    rd.docker("run", "-d", "--name", "keep", IMAGE, "sh", "-c",
              "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done", check=True)
    rd.docker("run", "-d", "--name", "dies", IMAGE, "sh", "-c",
              "trap 'exit 7' TERM; while true; do sleep 0.1; done", check=True)
    pid = int(rd.docker("inspect", "-f", "{{.State.Pid}}", "keep").stdout)
    dies_pid = int(rd.docker("inspect", "-f", "{{.State.Pid}}", "dies").stdout)
    lines_before = 0
    for i in range(3):
        if i == 1:
            rd.kill()      # SIGKILL: the daemon gets no chance to tidy
        else:
            rd.stop()
        if i == 2:
            os.kill(dies_pid, 15)  # exits while no daemon runs
            time.sleep(0.5)
        time.sleep(0.5)
        rd.start()
        assert rd.docker("inspect", "-f", "{{.State.Status}} {{.State.Pid}}", "keep").stdout.split() == \
            ["running", str(pid)]
        n = len(rd.docker("logs", "keep").stdout.splitlines())
        assert n > lines_before  # the monitor kept writing while the daemon was away
        lines_before = n
    st = json.loads(rd.docker("inspect", "dies").stdout)[0]["State"]
    assert st["Status"] == "exited" and st["ExitCode"] == 7 and st["FinishedAt"] > st["StartedAt"]
    logs = rd.docker("logs", "keep").stdout.split("\n")
    ticks = [int(ln.split()[1]) for ln in logs if ln.startswith("tick")]
    assert ticks == list(range(len(ticks)))  # no line lost across the restarts
    rd.docker("stop", "-t", "1", "keep", check=True)
    assert rd.docker("inspect", "-f", "{{.State.ExitCode}}", "keep").stdout.strip() == "137"


def test_log_rotation(rd):
    rd.docker("run", "--name", "rot", "--log-opt", "max-size=10k", "--log-opt", "max-file=3", IMAGE,
              "sh", "-c", "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done", check=True)
    cid = rd.docker("inspect", "-f", "{{.Id}}", "rot").stdout.strip()
    d = os.path.join(rd.data, "containers", cid)
    files = sorted(n for n in os.listdir(d) if n.startswith("json.log"))
    assert files == ["json.log", "json.log.1", "json.log.2"]
    for n in files:
        assert os.path.getsize(os.path.join(d, n)) <= 10 * 1024
    out = rd.docker("logs", "rot").stdout.split()
    assert out[-1] == "line-1999" and len(out) < 2000
    nums = [int(x.split("-")[1]) for x in out]
    assert nums == list(range(nums[0], 2000))


def test_monitor_is_not_the_daemon(rd):
    rd.docker("run", "-d", "--name", "mon", IMAGE, "sleep", "60", check=True)
    pid = int(rd.docker("inspect", "-f", "{{.State.Pid}}", "mon").stdout)
    with open(f"/proc/{pid}/stat") as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{ppid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[0].endswith(b"runner-monitor")
    assert ppid != rd.proc.pid


# ---- layering ------------------------------------------------------------------------------

def test_library_and_run_do_not_load_the_daemon():
    code = ("import sys, libcontainer, runner.cli, libcontainer.images, libcontainer.network\n"
            "bad = [m for m in sys.modules if m.startswith(('aiohttp', 'libcontainer.engine', 'docker'))]\n"
            "print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr


def test_engine_uses_no_cli():
    import ast

    root = os.path.join(REPO, "libcontainer", "engine")
    for d, _, names in os.walk(root):
        for n in names:
            if n.endswith(".py"):
                tree = ast.parse(open(os.path.join(d, n)).read())
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom):
                        assert not (node.module or "").startswith("runner"), (n, node.module)
                    if isinstance(node, ast.Import):
                        assert not any(a.name.startswith("runner") for a in node.names), n


# ---- pull ----------------------------------------------------------------------------------

@pytest.mark.skipif(not os.path.exists("/usr/bin/docker-registry"), reason="no docker-registry")
def test_pull_from_local_registry(rd_host, archive, tmp_path):
    """docker pull from docker-registry on 127.0.0.1 (insecure as loopback is for dockerd),
    with Docker's streamed JSON progress; then the image runs."""
    import imagekit

    rd = rd_host
    reg = imagekit.Registry(str(tmp_path / "reg"), port=24400)
    try:
        reg.push(f"docker-archive:{archive}", "bb:1")
        r = rd.docker("pull", f"{reg.addr}/bb:1")
        assert r.returncode == 0, r.stderr
        assert f"Downloaded newer image for {reg.addr}/bb:1" in r.stdout
        assert f"{reg.addr}/bb:1" in rd.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
        assert rd.docker("run", "--rm", "--network", "none", f"{reg.addr}/bb:1", "echo",
                         "pulled").stdout == "pulled\n"
        api = docker_py.APIClient(base_url=rd.host, version="auto")
        events = list(api.pull(f"{reg.addr}/bb", tag="1", stream=True, decode=True))
        assert any("Status: Image is up to date" in e.get("status", "") for e in events)
        r = rd.docker("pull", f"{reg.addr}/nope:1")
        assert r.returncode != 0 and "not found" in r.stderr.lower()
        # push a new name back, pull it again by digest's name; save and load; export
        rd.docker("tag", IMAGE, f"{reg.addr}/back:2", check=True)
        r = rd.docker("push", f"{reg.addr}/back:2")
        assert r.returncode == 0 and "digest: sha256:" in r.stdout, r.stderr
        rd.docker("rmi", f"{reg.addr}/back:2", check=True)
        rd.docker("pull", f"{reg.addr}/back:2", check=True)
        saved = str(tmp_path / "saved.tar")
        rd.docker("save", "-o", saved, IMAGE, check=True)
        rd.docker("rmi", "-f", IMAGE, check=True)
        assert "Loaded image: " + IMAGE in rd.docker("load", "-i", saved, check=True).stdout
        rd.docker("run", "-d", "--name", "exp1", "--network", "none", IMAGE, "sh", "-c",
                  "echo hi > /marker; sleep 30", check=True)
        for _ in range(50):
            if rd.docker("exec", "exp1", "test", "-f", "/marker").returncode == 0:
                break
            time.sleep(0.1)
        out = subprocess.run([DOCKER, "-H", rd.host, "export", "exp1"], capture_output=True).stdout
        import io
        import tarfile

        names = tarfile.open(fileobj=io.BytesIO(out)).getnames()
        assert "marker" in names and "bin/busybox" in names
    finally:
        reg.stop()


# ---- rootless ------------------------------------------------------------------------------

def test_rootless_daemon(archive):
    """An unprivileged user's daemon: its socket under $XDG_RUNTIME_DIR, containers on the
    rootless runtime (uid 0 of a user namespace), exec too."""
    import shutil as sh_

    user = "daemonrl"
    made = subprocess.run(["id", user], capture_output=True).returncode != 0
    if made:
        subprocess.run(["useradd", "-m", user], check=True, capture_output=True)
    base = f"/tmp/daemon-rl-{os.getpid()}"
    os.makedirs(base)
    sh_.copy(archive, f"{base}/bb.tar")
    subprocess.run(["chown", "-R", user, base], check=True)
    script = f"""
export XDG_RUNTIME_DIR={base}/run; mkdir -p $XDG_RUNTIME_DIR
cd {REPO}
{sys.executable} -m runner daemon --data-root {base}/data > {base}/log 2>&1 &
D=$!
export DOCKER_HOST=unix://$XDG_RUNTIME_DIR/runner/docker.sock
for i in $(seq 100); do {DOCKER} version >/dev/null 2>&1 && break; sleep 0.1; done
{DOCKER} load -i {base}/bb.tar >/dev/null
{DOCKER} run --rm {IMAGE} sh -c 'echo uid=$(id -u)'
{DOCKER} run -d --name rl1 {IMAGE} sleep 30 >/dev/null
{DOCKER} exec rl1 echo exec-ok
{DOCKER} rm -f rl1 >/dev/null
kill $D; wait $D
"""
    try:
        r = subprocess.run(["su", user, "-s", "/bin/bash", "-c", script], capture_output=True,
                           text=True, timeout=180)
        assert r.stdout.split() == ["uid=0", "exec-ok"], r.stdout + r.stderr + open(f"{base}/log").read()
    finally:
        if made:
            subprocess.run(["pkill", "-u", user], capture_output=True)  # the user the test made
        with open("/proc/self/mountinfo") as f:
            points = [ln.split()[4] for ln in f if f" {base}/" in ln]
        for p in sorted(points, key=len, reverse=True):
            subprocess.run(["umount", "-l", p], capture_output=True)
        sh_.rmtree(base, ignore_errors=True)
        if made:
            subprocess.run(["userdel", "-r", user], capture_output=True)
