"""The warm server (runner/warm.py, csrc/warm_client.h): the installed launcher hands the
verbs that make no process to it, and gets the plain path's answer; a caller it must not
serve (another uid, namespace, capability set...) gets the plain path instead; the worker
that serves a call does it as the caller (cgroup, gid and groups, rlimits, umask,
environment, working directory, nice, oom_score_adj); a caller killed takes its worker
along; `create` and `run` are served with their init still the caller's child
(runner/warm_spawn.py), and fall back to the plain path for what they leave to it. The conformance files run the same way with RUNNER_TEST_WARM=1 (conftest)."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import uuid

import pytest

from conftest import LAUNCHER, REPO, WarmServer, new_id, state_entries, terminate
from runner.warm import MAX_SPARES, SPARES
from test_lifecycle import create

pytestmark = pytest.mark.skipif(not os.access(LAUNCHER, os.X_OK) or
                                open(LAUNCHER, "rb").read(4) != b"\x7fELF",
                                reason="no installed launcher (make venv)")


def call(bundle, *args, pre=(), env=None, cwd=REPO, plain=False, timeout=60):
    """The installed `runner --root ROOT ARGS`, behind the `pre` command (unshare, setpriv...);
    plain: with the server bypassed (RUNNER_WARM=0)."""
    env = dict(os.environ if env is None else env)
    env.pop("RUNNER_WARM", None)
    if plain:
        env["RUNNER_WARM"] = "0"
    return subprocess.run([*pre, LAUNCHER, "--root", bundle.root, *args], env=env, cwd=cwd,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def warm(bundle):
    os.makedirs(bundle.root, exist_ok=True)
    with WarmServer(bundle.root) as server:
        yield server


def sleeper(bundle, **hooks) -> str:
    bundle.sh("sleep 300")
    if hooks:
        bundle.config["hooks"] = hooks
    return create(bundle)


def test_served_calls_answer_as_the_plain_path(bundle, warm):
    cid = sleeper(bundle)
    calls = [("state", cid), ("list",), ("list", "--format", "json"), ("ps", cid),
             ("state", "no-such"), ("kill", "no-such", "KILL"), ("kill", cid, "NOSIG"),
             ("delete", "no-such"), ("delete", cid), ("features",), ("--debug", "state", cid),
             ("pause", "no-such"), ("update", "no-such")]
    for args in calls:
        before = len(warm.served())
        w, p = call(bundle, *args), call(bundle, *args, plain=True)
        assert (w.returncode, w.stdout, w.stderr) == (p.returncode, p.stdout, p.stderr), args
        assert len(warm.served()) == before + 1, (args, warm.log())
    assert call(bundle, "kill", cid, "KILL").returncode == 0
    for _ in range(200):
        if json.loads(call(bundle, "state", cid).stdout)["status"] == "stopped":
            break
        time.sleep(0.02)
    assert call(bundle, "delete", cid).returncode == 0
    assert not os.path.exists(os.path.join(bundle.root, cid))
    assert "refused" not in warm.log()


def test_spec_writes_in_the_callers_directory_with_its_umask(bundle, warm, tmp_path):
    outs = []
    for plain in (False, True):
        d = tmp_path / f"spec-{plain}"
        d.mkdir()
        r = subprocess.run(["sh", "-c", f'umask 077; exec "$@"', "sh", LAUNCHER, "--root",
                            bundle.root, "spec"], cwd=d, capture_output=True, text=True,
                           env=dict(os.environ, RUNNER_WARM="0" if plain else "1"))
        assert r.returncode == 0, r.stderr
        st = os.stat(d / "config.json")
        outs.append((stat.S_IMODE(st.st_mode), (d / "config.json").read_text()))
    assert outs[0] == outs[1] and outs[0][0] == 0o600
    assert len(warm.served()) == 1


DUMP = r"""read -r state
{ cat /proc/self/cgroup; grep -E '^(Umask|Gid|Groups):' /proc/self/status; cat /proc/self/limits
  pwd; env | grep '^WARMTEST_' | sort; cat /proc/self/oom_score_adj; cut -d' ' -f19 /proc/self/stat
} > "$1"
"""


def _cgroup_dir() -> str:
    """A cgroup of this test's own: in the pids hierarchy of a v1 or hybrid host, else v2."""
    name = f"warm-test-{uuid.uuid4().hex[:8]}"
    base = "/sys/fs/cgroup/pids" if os.path.isdir("/sys/fs/cgroup/pids") else "/sys/fs/cgroup"
    path = os.path.join(base, name)
    os.mkdir(path)
    return path


def test_worker_is_the_caller(bundle, warm, tmp_path):
    """cgroup, gid and groups, rlimits, umask, environment, working directory,
    oom_score_adj and nice of the process that runs a poststop hook: the same when the
    caller's delete is served warm as on the plain path, and the caller's."""
    hook = tmp_path / "dump.sh"
    hook.write_text(DUMP)
    cg = _cgroup_dir()
    work = tmp_path / "callers-dir"
    work.mkdir()
    dumps = {}
    try:
        for plain in (True, False):
            out = tmp_path / f"dump-{plain}"
            cid = sleeper(bundle, poststop=[{"path": "/bin/sh", "args": ["sh", str(hook),
                                                                         str(out)]}])
            script = (f'echo $$ > {cg}/cgroup.procs && umask 027 && ulimit -n 1000 && '
                      f'echo 321 > /proc/self/oom_score_adj && exec "$@"')
            pre = ["sh", "-c", script, "sh", "setpriv", "--regid", "100", "--clear-groups",
                   "nice", "-n", "5"]
            env = dict(os.environ, WARMTEST_A="a value", WARMTEST_B="")
            r = call(bundle, "delete", "--force", cid, pre=pre, env=env, cwd=work,
                     plain=plain)
            assert r.returncode == 0, r.stderr
            dumps[plain] = out.read_text()
        assert len(warm.served()) == 1 and "refused" not in warm.log()
        assert dumps[True] == dumps[False]
        d = dumps[False]
        rel = "/" + os.path.basename(cg)
        assert (":pids:" + rel + "\n" if "/pids/" in cg else "0::" + rel + "\n") in d, d
        assert "Umask:\t0027" in d and "Gid:\t100\t100\t100\t100" in d
        assert re.search(r"^Groups:\s*$", d, re.M), d
        assert any(line.startswith("Max open files") and line.split()[3:5] == ["1000", "1000"]
                   for line in d.splitlines())
        # working directory, environment, oom_score_adj, nice
        assert d.splitlines()[-5:] == [str(work), "WARMTEST_A=a value", "WARMTEST_B=",
                                       "321", str(min(19, os.getpriority(os.PRIO_PROCESS, 0) + 5))], d
    finally:
        for _ in range(100):
            try:
                os.rmdir(cg)
                break
            except OSError:
                time.sleep(0.05)


NAMESPACES = [("user", ["unshare", "-U", "-r"]), ("mnt", ["unshare", "-m"]),
              ("pid", ["unshare", "-p", "-f"]), ("net", ["unshare", "-n"]),
              ("cgroup", ["unshare", "-C"]), ("ipc", ["unshare", "-i"]),
              ("uts", ["unshare", "-u"]), ("time", ["unshare", "-T", "-f"])]


def _refused(bundle, warm, pre: list, why: str) -> None:
    """`state` behind `pre` answers as ever, by the plain path: the server says why not."""
    cid = sleeper(bundle)
    try:
        r = call(bundle, "state", cid, pre=pre)
        assert r.returncode == 0 and json.loads(r.stdout)["id"] == cid, r.stderr
        assert not warm.served(), warm.log()
        assert why in warm.log(), warm.log()
    finally:
        call(bundle, "delete", "--force", cid, plain=True)


@pytest.mark.parametrize("ns,pre", NAMESPACES, ids=[n for n, _ in NAMESPACES])
def test_another_namespace_is_refused(bundle, warm, ns, pre):
    if not os.path.exists(f"/proc/self/ns/{ns}"):
        pytest.skip(f"no {ns} namespaces here")
    _refused(bundle, warm, pre, f"another {ns} namespace")


@pytest.mark.parametrize("why,pre", [
    ("CapBnd", ["setpriv", "--bounding-set", "-net_raw"]),
    ("CapInh", ["setpriv", "--inh-caps", "+net_raw"]),
    ("NoNewPrivs", ["setpriv", "--no-new-privs"]),
], ids=["bounding-set", "inheritable-caps", "no-new-privs"])
def test_other_credentials_are_refused(bundle, warm, why, pre):
    _refused(bundle, warm, pre, f"another {why} (")


def test_another_uid_cannot_reach_it_and_is_refused(tmp_path):
    """The socket is 0600: another uid's launcher cannot connect and goes the plain way;
    one that could (the mode opened up here) is refused by the server."""
    import tempfile

    top = tempfile.mkdtemp(prefix="warm-uid-", dir="/tmp")  # pytest's base is 0700
    os.chmod(top, 0o711)
    root = os.path.join(top, "state")
    os.mkdir(root, 0o711)
    try:
        with WarmServer(root) as warm:
            r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534",
                                "--clear-groups", LAUNCHER, "--root", root, "list"],
                               capture_output=True, text=True, timeout=60)
            # the plain path, as nobody: who may not read root's state root
            assert r.returncode == 1 and "Permission denied" in r.stderr, r.stderr
            assert not warm.served() and "refused" not in warm.log(), warm.log()
            os.chmod(warm.sock, 0o666)
            client = f"""
import os, socket, struct
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
s = socket.socket(socket.AF_UNIX)
s.connect({warm.sock!r})
data = b"runner\\0list\\0PATH=/bin\\0"
cwd = os.open("/", os.O_PATH)
socket.send_fds(s, [struct.pack("<4I", 0x314D5752, 2, 1, len(data)) + data], [0, 1, 2, cwd])
print(s.recv(8)[:1].decode())
"""
            r = subprocess.run([sys.executable, "-c", client], capture_output=True, text=True,
                               timeout=30)
            assert r.stdout.strip() == "R", (r.stdout, r.stderr)
            assert "uid 65534 is not the server's 0" in warm.log(), warm.log()
            assert not warm.served()
    finally:
        import shutil

        shutil.rmtree(top, ignore_errors=True)


@pytest.mark.parametrize("verb", [["create"], ["run", "-d"]])
def test_a_served_start_leaves_its_init_to_the_callers_subreaper(bundle, warm, verb):
    """An engine's shim is a subreaper: the container's init must be reparented to it when
    `runner create` (or `run -d`) exits. A served one clones it in the caller's own process
    (warm-spawn), so it is."""
    bundle.sh("sleep 300")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    script = f"""
import ctypes, json, os, subprocess
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER, as containerd's shim
quiet = dict(stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
base = [{LAUNCHER!r}, "--root", {bundle.root!r}]
subprocess.run(base + {verb!r} + ["--bundle", {bundle.path!r}, {cid!r}], check=True, **quiet)
pid = json.loads(subprocess.run(base + ["state", {cid!r}], capture_output=True).stdout)["pid"]
ppid = [l.split()[1] for l in open(f"/proc/{{pid}}/status") if l.startswith("PPid:")][0]
print(int(ppid) == os.getpid())
subprocess.run(base + ["delete", "--force", {cid!r}], check=True, **quiet)
os.waitpid(pid, 0)
"""
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                       timeout=60)
    assert r.stdout.strip() == "True", (r.stdout, r.stderr)
    served = " ".join(warm.served())
    assert " state " in served and " delete " in served, warm.log()
    assert f" {' '.join(verb)} " in served, warm.log()


def test_killed_caller_takes_its_worker_along(bundle, warm, tmp_path):
    # the hook's pid in a file: once it execs sleep, no marker in its command line finds it
    hook_pid = tmp_path / "hook.pid"
    cid = sleeper(bundle, poststart=[{"path": "/bin/sh",
                                      "args": ["sh", "-c", f"echo $$ > {hook_pid}; exec sleep 60"]}])
    p = subprocess.Popen([LAUNCHER, "--root", bundle.root, "start", cid],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    worker = None
    try:
        for _ in range(500):
            lines = warm.served()
            if lines:
                worker = int(lines[0].split("worker ")[1].split()[0])
                break
            time.sleep(0.01)
        assert worker, warm.log()
        time.sleep(0.2)
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == -signal.SIGTERM
        for _ in range(500):
            try:
                with open(f"/proc/{worker}/stat") as f:
                    if f.read().split(") ")[1][0] == "Z":
                        break
            except OSError:  # gone (ENOENT, or ESRCH while being read)
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"worker {worker} outlived its caller")
    finally:
        p.kill()
        p.wait()
        try:
            os.kill(int(hook_pid.read_text()), signal.SIGKILL)  # the hook, still its sleep
        except (OSError, ValueError):
            pass
        call(bundle, "delete", "--force", cid, plain=True)


def test_a_signal_death_is_the_callers(bundle, warm):
    """RUNNER_CRASH_AT=1: the runtime SIGKILLs itself at its first crash point (read from
    the caller's environment in the worker too); the caller dies of SIGKILL both ways."""
    codes = []
    for plain in (True, False):
        cid = sleeper(bundle)
        r = call(bundle, "start", cid, env=dict(os.environ, RUNNER_CRASH_AT="1"), plain=plain)
        codes.append((r.returncode, r.stderr))
        call(bundle, "delete", "--force", cid, plain=True)
    assert codes[0] == codes[1] and codes[0][0] == -signal.SIGKILL, codes
    assert len(warm.served()) == 1


def test_without_a_live_server_the_plain_path_runs(bundle):
    os.makedirs(bundle.root, exist_ok=True)
    cid = sleeper(bundle)
    with WarmServer(bundle.root) as server:
        server.proc.kill()
        server.proc.wait()
        assert os.path.exists(server.sock)  # a stale socket: connect is refused
        r = call(bundle, "state", cid)
        assert r.returncode == 0 and json.loads(r.stdout)["id"] == cid
        assert not server.served()
    os.unlink(server.sock)
    call(bundle, "delete", "--force", cid, plain=True)


def test_idle_exit_and_one_server_per_root(bundle):
    os.makedirs(bundle.root, exist_ok=True)
    with WarmServer(bundle.root, "--idle-exit", "1") as server:
        again = subprocess.run([LAUNCHER, "--root", bundle.root, "warm-server"],
                               capture_output=True, text=True, timeout=30)
        assert again.returncode != 0 and "already serves" in again.stderr
        assert server.proc.wait(30) == 0
        assert not os.path.exists(server.sock)
        assert "idle" in server.log()


def test_the_lifecycle_conformance_file_passes_with_a_server_on_every_root():
    """The same tests both ways: test_lifecycle.py (run plainly by the suite itself) again
    with RUNNER_TEST_WARM=1, where every `runner` is the launcher and every test's state
    root has a warm server (conftest.WarmServer; a refusal fails the test). `make
    test-warm` does this for every runtime file."""
    env = dict(os.environ, RUNNER_TEST_WARM="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        os.path.join(REPO, "tests", "integration", "test_lifecycle.py")],
                       env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]


def test_a_killed_server_leaves_no_worker_waiting(bundle):
    os.makedirs(bundle.root, exist_ok=True)
    with WarmServer(bundle.root) as server:
        children = f"/proc/{server.proc.pid}/task/{server.proc.pid}/children"
        for _ in range(500):  # its workers waiting for calls (forked once it serves)
            spares = [int(p) for p in open(children).read().split()]
            if len(spares) == SPARES:
                break
            time.sleep(0.01)
        assert spares
        server.proc.kill()
        server.proc.wait()
        for _ in range(500):
            if not any(os.path.exists(f"/proc/{p}") for p in spares):
                break
            time.sleep(0.01)
        else:
            raise AssertionError(f"workers {spares} outlived their server")
    os.unlink(server.sock)


def test_a_closed_stdio_fd_is_the_plain_paths_business(bundle, warm):
    """The launcher cannot hand over an fd it does not have (sendmsg says EBADF): the
    plain path runs, and answers as it does without a server."""
    cid = sleeper(bundle)
    try:
        outs = []
        for plain in (False, True):
            r = subprocess.run(["sh", "-c", 'exec "$@" <&-', "sh", LAUNCHER, "--root",
                                bundle.root, "state", cid], capture_output=True, text=True,
                               env=dict(os.environ, RUNNER_WARM="0" if plain else "1"))
            outs.append((r.returncode, r.stdout, r.stderr))
        assert outs[0] == outs[1] and outs[0][0] == 0, outs
        assert not warm.served() and not warm.refused(), warm.log()
    finally:
        call(bundle, "delete", "--force", cid, plain=True)


@pytest.mark.skipif(tuple(int(x) for x in os.uname().release.split(".")[:2]) < (5, 14),
                    reason="MADV_POPULATE_WRITE is Linux 5.14")
def test_workers_copy_ahead_just_the_pages_calls_write(bundle, warm):
    """The server learns which of its pages served calls write (runner/warm_pages.py), and
    the workers it forks later make those their own before they take a call: the calls'
    copy-on-write faults leave their path, and the pages no call writes stay shared."""
    cid = sleeper(bundle)
    try:
        for _ in range(12):
            r = call(bundle, "state", cid)
            assert r.returncode == 0, r.stderr
        log = warm.log()
        faults = [int(n) for n in re.findall(r"'s call took \S+ ms CPU, (\d+) page faults", log)]
        learned = [int(n) for n in re.findall(r"learned \d+ pages written by a call \((\d+) in",
                                              log)]
        assert len(faults) == 12 and learned, log
        # the first call's worker was forked before anything was learned
        assert faults[0] > 4 * max(faults[-3:]), faults
        writable = 0
        with open(f"/proc/{warm.proc.pid}/maps") as f:
            for line in f:
                span, perms = line.split()[:2]
                if perms == "rw-p":
                    start, end = (int(x, 16) for x in span.split("-"))
                    writable += (end - start) // os.sysconf("SC_PAGE_SIZE")
        assert learned[-1] < writable / 2, (learned, writable)
    finally:
        call(bundle, "delete", "--force", cid, plain=True)


def test_the_environment_is_the_callers_entry_for_entry(bundle, warm, tmp_path):
    """A hook sees the environment the plain path's would: every entry, in the caller's
    order (the worker's C environ is set to the caller's entries, not rebuilt name by
    name), in a locale without one (the C locale) as in another."""
    hook = tmp_path / "env.sh"
    hook.write_text('read -r state; env > "$1"\n')
    dumps = {}
    for lang in ("C", "C.UTF-8"):
        for plain in (True, False):
            out = tmp_path / f"env-{lang}-{plain}"
            cid = sleeper(bundle, poststop=[{"path": "/bin/sh", "args": ["sh", str(hook),
                                                                         str(out)]}])
            env = {"PATH": os.environ["PATH"], "ZED": "last first", "LANG": lang,
                   "AB": "x=y", "EMPTY": "", "MID": "é"}
            r = call(bundle, "delete", "--force", cid, env=env, plain=plain)
            assert r.returncode == 0, r.stderr
            dumps[lang, plain] = out.read_text().replace("RUNNER_WARM=0\n", "")
        assert dumps[lang, True] == dumps[lang, False], (lang, dumps)
        assert "ZED=last first\n" in dumps[lang, False]
    assert len(warm.served()) == 2 and "refused" not in warm.log()


def test_a_burst_outlasting_the_spares_is_served_and_they_are_refilled(bundle, warm):
    """The workers taken by a burst of calls are replaced once calls pause, and at once
    when none is left (runner/warm.py's SPARES): more calls in a row than there are
    spares are all served, and then as many wait again as the longest burst the server
    saw asks for (SPARES at least, MAX_SPARES at most)."""
    children = f"/proc/{warm.proc.pid}/task/{warm.proc.pid}/children"

    def waiting() -> int:
        return len(open(children).read().split())

    for _ in range(500):
        if waiting() == SPARES:
            break
        time.sleep(0.01)
    assert waiting() == SPARES
    for i in range(SPARES + 3):
        r = call(bundle, "state", "no-such")
        assert r.returncode == 1 and "does not exist" in r.stderr, r.stderr
    assert len(warm.served()) == SPARES + 3 and not warm.refused(), warm.log()
    bursts = re.findall(r"a burst of \d+ calls: (\d+) spares", warm.log())
    want = int(bursts[-1]) if bursts else SPARES  # (calls 20 ms apart are no burst)
    assert SPARES <= want <= MAX_SPARES
    for _ in range(500):  # the workers that served exit; the pause refills
        if waiting() == want:
            break
        time.sleep(0.01)
    assert waiting() == want, (open(children).read(), warm.log())


# ---- create and run, served (runner/warm_spawn.py, csrc/warm_spawn.c) ----

def _both_ways(bundle, warm, *args, **kw):
    """The same call served and plain, under new ids (the id is the last argument);
    (served, plain) results, the served one checked served."""
    out = []
    for plain in (False, True):
        before = len(warm.served())
        cid = new_id()
        bundle.last_id = cid
        r = call(bundle, *args, cid, plain=plain, **kw)
        out.append((r, cid))
        assert len(warm.served()) == before + (0 if plain else 1), warm.log()
    return out


def test_a_served_run_exits_as_the_plain_one(bundle, warm):
    """The exit status, the output, and nothing left: a foreground run served (the init is
    the caller's child, warm-spawn waits for it) and plain."""
    bundle.sh("echo out; echo err >&2; exit 7")
    bundle.write()
    (w, wid), (p, pid_) = _both_ways(bundle, warm, "run", "--bundle", bundle.path)
    assert (w.returncode, w.stdout, w.stderr) == (p.returncode, p.stdout, p.stderr) == \
        (7, "out\n", "err\n")
    assert state_entries(bundle.root) == []
    assert "refused" not in warm.log() and "plain path" not in warm.log()


def test_a_served_run_forwards_the_callers_signals(bundle, warm, tmp_path):
    """SIGTERM to a served foreground run reaches the container (warm-spawn forwards it,
    as launch.Forwarder does on the plain path); its exit status is the run's."""
    ready = tmp_path / "ready"
    bundle.sh("trap 'exit 42' TERM; touch /ready; sleep 60 & wait")
    bundle.config["mounts"].append({"destination": "/ready", "type": "bind",
                                    "source": str(ready), "options": ["bind"]})
    bundle.write()
    codes = []
    for plain in (False, True):
        ready.write_text("")
        start = os.stat(ready).st_mtime_ns
        cid = new_id()
        bundle.last_id = cid
        env = dict(os.environ, RUNNER_WARM="0" if plain else "1")
        p = subprocess.Popen([LAUNCHER, "--root", bundle.root, "run", "--bundle", bundle.path,
                              cid], env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            for _ in range(1000):
                if os.stat(ready).st_mtime_ns != start:
                    break
                time.sleep(0.01)
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=30)
        finally:
            p.kill()
            p.wait()
        codes.append((p.returncode, err))
    assert codes[0] == codes[1] == (42, ""), codes
    assert state_entries(bundle.root) == []
    assert len(warm.served()) == 1 and " run " in warm.served()[0]


def test_served_create_and_run_run_the_hooks_as_the_plain_path(bundle, warm, tmp_path):
    """Every stage's hook, with the state it is given, on a served run and a plain one."""
    out = tmp_path / "hooks"
    out.mkdir()
    hooks = {}
    for stage in ("prestart", "createRuntime", "createContainer", "startContainer",
                  "poststart", "poststop"):
        script = (f'read -r s; echo "$s" | sed -e "s/\\"pid\\":[0-9]*/\\"pid\\":P/" '
                  f'-e "s/\\"created\\":\\"[^\\"]*\\"/\\"created\\":T/" >> {out}/{stage}')
        if stage in ("createContainer", "startContainer"):  # in the container: no file
            script = "read -r s; true"
        hooks[stage] = [{"path": "/bin/sh", "args": ["sh", "-c", script]}]
    bundle.config["hooks"] = hooks
    bundle.sh("true")
    bundle.write()
    results = []
    for plain in (False, True):
        for f in out.iterdir():
            f.unlink()
        cid = "hooks-" + uuid.uuid4().hex[:8]
        bundle.last_id = cid
        r = call(bundle, "run", "--bundle", bundle.path, cid, plain=plain)
        assert r.returncode == 0, r.stderr
        results.append({f.name: f.read_text().replace(cid, "ID") for f in out.iterdir()})
    assert results[0] == results[1] and len(results[0]) == 4, results
    assert len(warm.served()) == 1 and not warm.refused(), warm.log()


@pytest.mark.parametrize("verb", ["create", "run"])
def test_a_bad_config_fails_served_as_plain_and_leaves_nothing(bundle, warm, verb):
    for breakage in ({"process": {"args": ["/no/such/program"], "cwd": "/"}},
                     {"linux": dict(default_linux(), resources={"memory": {"limit": "x"}})}):
        bundle.config.update(breakage)
        bundle.write()
        (w, _), (p, _) = _both_ways(bundle, warm, verb, "--bundle", bundle.path)
        assert (w.returncode, w.stdout, w.stderr) == (p.returncode, p.stdout, p.stderr)
        assert w.returncode != 0 and w.stderr.startswith("runner: "), w.stderr
        assert state_entries(bundle.root) == []
    assert "refused" not in warm.log()


def default_linux() -> dict:
    from libcontainer.default_spec import default_config

    return default_config(terminal=False)["linux"]


def test_what_a_served_create_cannot_do_goes_the_plain_path(bundle, warm):
    """--preserve-fds (fds of the caller), a foreground run's terminal (the pty relay is
    its parent's): the launcher runs the plain path, and says why in the log."""
    bundle.sh("true")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    r = call(bundle, "run", "--preserve-fds", "1", "--bundle", bundle.path, cid)
    assert r.returncode == 0, r.stderr
    bundle.process["terminal"] = True
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    r = subprocess.run(["script", "-qec", f"{LAUNCHER} --root {bundle.root} run --bundle "
                        f"{bundle.path} {cid}", "/dev/null"], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert not warm.served() and not warm.refused(), warm.log()
    assert warm.log().count("plain path for pid") == 2, warm.log()
    assert state_entries(bundle.root) == []


def test_a_served_run_shows_the_command_as_called(bundle, warm):
    """`ps` of a served foreground run: the caller's argv (warm-spawn keeps it)."""
    bundle.sh("echo up; sleep 1")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    argv = [LAUNCHER, "--root", bundle.root, "run", "--bundle", bundle.path, cid]
    p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "up\n", p.stderr.read()
        with open(f"/proc/{p.pid}/cmdline", "rb") as f:
            shown = [a.decode() for a in f.read().split(b"\0")[:-1]]
        assert os.readlink(f"/proc/{p.pid}/exe").endswith("warm-spawn")
    finally:
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert shown == argv
    assert len(warm.served()) == 1


def test_a_worker_killed_during_a_served_run_is_its_callers_death(bundle, warm):
    """The worker of a foreground run dies (SIGKILL) while warm-spawn waits for the
    container: the caller dies of it, as the plain path's interpreter would have; the
    container goes on, as it would have, and `delete --force` removes it."""
    bundle.sh("echo up; sleep 60")
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    p = subprocess.Popen([LAUNCHER, "--root", bundle.root, "run", "--bundle", bundle.path, cid],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline() == "up\n", p.stderr.read()
        for _ in range(500):  # (a run's state is written once its process runs)
            if json.loads(call(bundle, "state", cid).stdout)["status"] == "running":
                break
            time.sleep(0.01)
        worker = int(warm.served()[0].split("worker ")[1].split()[0])
        os.kill(worker, signal.SIGKILL)
        assert p.wait(30) == -signal.SIGKILL
        state = json.loads(call(bundle, "state", cid).stdout)
        assert state["status"] == "running", state
    finally:
        p.kill()
        p.wait()
        assert call(bundle, "delete", "--force", cid).returncode == 0
    assert state_entries(bundle.root) == []


def test_the_server_keeps_no_fd_its_starter_left_open(bundle, tmp_path):
    """A server started under `flock` (or with a pipe its starter reads to the end) must not
    keep that fd: the lock would be held, or the read never end, for as long as it lives."""
    r, w = os.pipe()
    lock = open(tmp_path / "lock", "w")
    try:
        proc = subprocess.Popen([LAUNCHER, "--root", bundle.root, "--debug", "warm-server"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, pass_fds=(w, lock.fileno()))
        os.close(w)
        lock.close()
        sock = os.path.join(bundle.root, ".warm.sock")
        for _ in range(600):
            if os.path.exists(sock) or proc.poll() is not None:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "the warm server did not start"
        held = {os.readlink(f"/proc/{proc.pid}/fd/{n}") for n in os.listdir(f"/proc/{proc.pid}/fd")}
        assert str(tmp_path / "lock") not in held, held
        os.set_blocking(r, False)
        assert os.read(r, 1) == b""  # EOF: no other holder of the write end (else EAGAIN)
    finally:
        os.close(r)
        terminate(proc)

