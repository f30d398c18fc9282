"""The container's process: args, env, cwd, user, umask, rlimits, capabilities,
noNewPrivileges, oomScoreAdj, sysctl, and the fds it inherits — checked from inside."""
import os
import resource
import subprocess

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, cap_mask, new_id, status_fields
from test_lifecycle import run_detached

ZERO = "0" * 16


def run_ok(bundle, script, *extra, **kw):
    r = bundle.sh(script).run(None, *extra, **kw)
    assert r.returncode == 0, r.stderr
    return r.stdout


def caps_inside(bundle) -> dict:
    st = status_fields(run_ok(bundle, "cat /proc/self/status"))
    return {k: st[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs")}


def test_args_env_and_cwd(bundle):
    bundle.process["env"].append("GREETING=hello world")
    bundle.process["cwd"] = "/made/for/me"
    bundle.set_args("sh", "-c", 'echo "$0|$1|$GREETING|$HOME|$(pwd)"', "zero", "one")
    r = bundle.run()
    assert r.stdout == "zero|one|hello world|/root|/made/for/me\n"


def test_executable_is_searched_in_the_containers_path(bundle):
    os.makedirs(os.path.join(bundle.rootfs, "opt", "bin"))
    with open(os.path.join(bundle.rootfs, "opt", "bin", "hello"), "w") as f:
        f.write("#!/bin/sh\necho from-opt\n")
    os.chmod(os.path.join(bundle.rootfs, "opt", "bin", "hello"), 0o755)
    bundle.process["env"][0] = "PATH=/opt/bin:/bin"
    r = bundle.set_args("hello").run()
    assert r.stdout == "from-opt\n"


def test_stderr_is_the_runners(bundle):
    r = bundle.sh("echo out; echo err >&2").run()
    assert (r.stdout, r.stderr) == ("out\n", "err\n")


def test_user_uid_gid_and_additional_gids(bundle):
    bundle.process["user"] = {"uid": 1000, "gid": 1001, "additionalGids": [5, 65534]}
    out = run_ok(bundle, "id -u; id -g; id -G; echo $HOME")
    assert out.splitlines() == ["1000", "1001", "1001 5 65534", "/home/user"]


def test_umask(bundle):
    bundle.process["user"]["umask"] = 0o027
    bundle.config["root"]["readonly"] = False
    out = run_ok(bundle, "umask; touch /tmp/f; mkdir /tmp/d; stat -c %a /tmp/f /tmp/d")
    assert out.split() == ["0027", "640", "750"]


def test_default_umask_is_the_runners_0022(bundle):
    old = os.umask(0o022)
    os.umask(old)
    assert run_ok(bundle, "umask") == "%04o\n" % old


def test_rlimits(bundle):
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
                                 {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000},
                                 {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    out = run_ok(bundle, "ulimit -n; ulimit -Hn; ulimit -u; ulimit -Hu; ulimit -c")
    assert out.split() == ["123", "456", "1000", "2000", "0"]


def test_rlimit_above_the_hosts_hard_limit_is_a_clear_error(bundle):
    with open("/proc/self/status") as f:
        if int(status_fields(f.read())["CapEff"], 16) >> 24 & 1:
            pytest.skip("the runner has CAP_SYS_RESOURCE here: raising a hard limit is allowed")
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("the host's hard RLIMIT_NOFILE is unlimited: nothing is above it")
    bundle.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 64, "hard": hard + 1}]
    r = bundle.run()
    assert r.returncode == 1
    assert r.stderr.startswith("runner: process.rlimits[0]:")
    assert "CAP_SYS_RESOURCE" in r.stderr
    assert_nothing_left(bundle)


def test_no_new_privileges(bundle):
    bundle.process["noNewPrivileges"] = True
    assert caps_inside(bundle)["NoNewPrivs"] == "1"
    bundle.process["noNewPrivileges"] = False
    assert caps_inside(bundle)["NoNewPrivs"] == "0"


def test_all_five_capability_sets(bundle):
    bundle.process["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETPCAP"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_CHOWN", "CAP_KILL"],
        "inheritable": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "ambient": ["CAP_KILL"],
    }
    c = caps_inside(bundle)
    # uid 0 execs a file without capabilities: P' = (P & I) | A... and root's legacy rule
    # makes P' = I | bounding; effective follows permitted for root
    assert c["CapBnd"] == cap_mask("CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE", "CAP_SETPCAP")
    assert c["CapInh"] == cap_mask("CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert c["CapAmb"] == cap_mask("CAP_KILL")


def test_capabilities_of_a_non_root_user_come_from_ambient(bundle):
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    sets = ["CAP_NET_BIND_SERVICE", "CAP_KILL"]
    bundle.process["capabilities"] = {k: list(sets) for k in
                                      ("bounding", "permitted", "effective", "inheritable")}
    bundle.process["capabilities"]["ambient"] = ["CAP_NET_BIND_SERVICE"]
    c = caps_inside(bundle)
    want = cap_mask("CAP_NET_BIND_SERVICE")
    assert (c["CapPrm"], c["CapEff"], c["CapAmb"]) == (want, want, want)
    assert c["CapInh"] == cap_mask(*sets)
    assert c["CapBnd"] == cap_mask(*sets)
    # the capability works: bind a port below 1024 as uid 1000
    bundle.process["env"].append("X=1")
    out = run_ok(bundle, "nc -l -p 80 127.0.0.1 & srv=$!; "
                         "until netstat -ltn | grep -q ':80 '; do kill -0 $srv || exit 9; done; "
                         "kill $srv; echo bound")
    assert out == "bound\n"


def test_non_root_without_ambient_has_no_capabilities(bundle):
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    c = caps_inside(bundle)
    assert (c["CapPrm"], c["CapEff"], c["CapInh"], c["CapAmb"]) == (ZERO,) * 4


def test_root_gets_exactly_the_configured_sets_and_empty_inheritable_and_ambient(bundle):
    # the default config: three sets of three capabilities, no inheritable/ambient
    c = caps_inside(bundle)
    want = cap_mask("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert (c["CapBnd"], c["CapPrm"], c["CapEff"]) == (want, want, want)
    assert (c["CapInh"], c["CapAmb"]) == (ZERO, ZERO)


def test_no_capabilities_object_means_none(bundle):
    del bundle.process["capabilities"]
    c = caps_inside(bundle)
    assert set(c[k] for k in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")) == {ZERO}


def test_oom_score_adj_raised(bundle):
    bundle.process["oomScoreAdj"] = 345
    assert run_ok(bundle, "cat /proc/self/oom_score_adj") == "345\n"


@pytest.mark.parametrize("delta", [0, 7])
def test_oom_score_adj_in_a_user_namespace(bundle, delta):
    """Docker with --userns-remap sends oomScoreAdj (0, or the runtime's own) with a user
    namespace: the score is written while the init still has the runner's credentials and
    its /proc/self files are its own. Later, non-dumpable in the namespace, those files
    belong to the host's root, which the namespace's root may not write (EACCES), whatever
    the value. runc writes it before it makes the namespaces too."""
    from test_namespaces import use_userns

    use_userns(bundle)
    with open("/proc/self/oom_score_adj") as f:
        want = int(f.read()) + delta
    bundle.process["oomScoreAdj"] = want
    assert run_ok(bundle, "cat /proc/self/oom_score_adj; id -u") == f"{want}\n0\n"


def test_oom_score_adj_lowered_without_cap_sys_resource_is_a_clear_error(bundle):
    with open("/proc/self/status") as f:
        if int(status_fields(f.read())["CapEff"], 16) >> 24 & 1:
            pytest.skip("the runner has CAP_SYS_RESOURCE here: lowering is allowed")
    with open("/proc/self/oom_score_adj") as f:
        current = int(f.read())
    if current <= -1000:
        pytest.skip("cannot go lower")
    bundle.process["oomScoreAdj"] = current - 1
    r = bundle.run()
    assert r.returncode == 1
    assert r.stderr.startswith("runner: process.oomScoreAdj")
    assert "CAP_SYS_RESOURCE" in r.stderr
    assert_nothing_left(bundle)


def test_namespaced_sysctls(bundle):
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        host_fwd = f.read()
    with open("/proc/sys/kernel/shmmax") as f:
        host_shmmax = f.read()
    new_fwd = "0" if host_fwd.strip() == "1" else "1"
    bundle.linux["sysctl"] = {"net.ipv4.ip_forward": new_fwd, "kernel.shmmax": "12345678"}
    out = run_ok(bundle, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/shmmax")
    assert out.split() == [new_fwd, "12345678"]
    with open("/proc/sys/net/ipv4/ip_forward") as f:
        assert f.read() == host_fwd
    with open("/proc/sys/kernel/shmmax") as f:
        assert f.read() == host_shmmax


@pytest.mark.parametrize("key,drop", [("kernel.panic", None), ("vm.swappiness", None),
                                      ("net.ipv4.ip_forward", "network"),
                                      ("kernel.shmmax", "ipc")])
def test_sysctl_that_would_change_the_host_is_an_error(bundle, key, drop):
    if drop:
        bundle.linux["namespaces"] = [n for n in bundle.linux["namespaces"] if n["type"] != drop]
    bundle.linux["sysctl"] = {key: "1"}
    r = bundle.run()
    assert r.returncode == 1
    assert r.stderr.startswith(f"runner: linux.sysctl.{key}:")
    assert_nothing_left(bundle)


# ---- fds and hygiene ---------------------------------------------------------------------

def _fds_of_init(bundle, runner_prefix=(), pass_fds=(), *extra) -> list:
    """Start `cat` as the container's process, list its fds from outside, let it end."""
    import time

    from conftest import marked_pids

    bundle.set_args("cat").write()
    cid = new_id()
    bundle.last_id = cid
    p = subprocess.Popen([*runner_prefix, *RUNNER, "--root", bundle.root, "run", *extra,
                          "-b", bundle.path, cid], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd=REPO, pass_fds=pass_fds)
    try:
        for _ in range(500):
            pids = marked_pids(bundle.mark)
            if pids and os.readlink(f"/proc/{pids[0]}/exe").endswith("busybox"):
                return sorted(int(fd) for fd in os.listdir(f"/proc/{pids[0]}/fd"))
            time.sleep(0.01)
        raise AssertionError("the container's process did not start")
    finally:
        out, err = p.communicate("", timeout=20)
        assert p.returncode == 0, err


def test_only_stdio_is_inherited(bundle, tmp_path):
    with open(tmp_path / "leak", "w") as leak:
        assert _fds_of_init(bundle, pass_fds=[leak.fileno()]) == [0, 1, 2]


def test_preserve_fds(bundle, tmp_path):
    (tmp_path / "a").write_text("first\n")
    (tmp_path / "b").write_text("second\n")
    fa = os.open(tmp_path / "a", os.O_RDONLY)
    fb = os.open(tmp_path / "b", os.O_RDONLY)
    # make them fds 3 and 4 of the runner (bash: dash has no fds above 9)
    prefix = ["bash", "-c", f'exec 3<&{fa} 4<&{fb} {fa}<&- {fb}<&-; exec "$@"', "bash"]
    try:
        assert _fds_of_init(bundle, prefix, [fa, fb], "--preserve-fds", "2") == [0, 1, 2, 3, 4]
        bundle.sh("cat <&3; cat <&4").write()
        cid = new_id()
        bundle.last_id = cid
        r = subprocess.run([*prefix, *RUNNER, "--root", bundle.root, "run", "--preserve-fds", "2",
                            "-b", bundle.path, cid], capture_output=True, text=True, cwd=REPO,
                           pass_fds=[fa, fb])
    finally:
        os.close(fa)
        os.close(fb)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "first\nsecond\n"


def test_socket_activation_listen_fds(bundle, tmp_path):
    """systemd's LISTEN_FDS/LISTEN_PID, as runc reads them: the fds passed to the runner
    itself (LISTEN_PID is its pid) go on as 3.., before the --preserve-fds ones, and the
    process is told LISTEN_FDS=N, LISTEN_PID=1. Meant for another process: ignored."""
    files = []
    for name in ("sock1", "sock2", "extra"):
        (tmp_path / name).write_text(name + "\n")
        files.append(os.open(tmp_path / name, os.O_RDONLY))
    fa, fb, fc = files
    moves = f"exec 3<&{fa} 4<&{fb} 5<&{fc} {fa}<&- {fb}<&- {fc}<&-"
    bundle.sh('echo "$LISTEN_FDS $LISTEN_PID"; cat <&3; cat <&4; cat <&5; '
              'ls /proc/self/fd | sort -n | tr "\\n" " "').write()

    def run(listen_pid: str, *extra):
        cid = new_id()
        bundle.last_id = cid
        script = f'{moves}; LISTEN_FDS=2 LISTEN_PID={listen_pid} exec "$@"'
        return subprocess.run(["bash", "-c", script, "bash", *RUNNER, "--root", bundle.root,
                               "run", *extra, "-b", bundle.path, cid], capture_output=True,
                              text=True, cwd=REPO, pass_fds=files)
    try:
        r = run("$$", "--preserve-fds", "1")  # $$: bash's pid, the runner's after exec
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[:4] == ["2 1", "sock1", "sock2", "extra"]
        assert lines[4].split()[:6] == ["0", "1", "2", "3", "4", "5"]
        r = run("1")  # for someone else: nothing passed, nothing said
        assert r.returncode != 0 or not r.stdout.startswith("2 1")
        assert r.stdout.splitlines()[0].strip() == ""
    finally:
        for fd in files:
            os.close(fd)
    assert_nothing_left(bundle)


def test_preserve_fds_that_are_not_open_is_an_error(bundle):
    r = bundle.run(None, "--preserve-fds", "3")
    assert r.returncode == 1
    assert "--preserve-fds" in r.stderr
    assert_nothing_left(bundle)


def test_process_status_after_exec_is_sane(bundle):
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    out = run_ok(bundle, "cat /proc/self/status; stat -c %u /proc/self/fd; readlink /proc/self/exe")
    st = status_fields(out)
    assert st["Uid"].split() == ["1000"] * 4
    assert st["Gid"].split() == ["1000"] * 4
    assert st["Pid"] != ""
    # dumpable again after execve: /proc/self belongs to the process's own user
    assert out.splitlines()[-2:] == ["1000", "/bin/busybox"]


def test_cwd_only_root_may_reach(bundle):
    """process.cwd is entered before the uid switch, as runc does: a cwd under a mode-700
    root directory works for a process of another user (issue 11, point 13), for `run`
    and for `exec --user --cwd`."""
    secret = os.path.join(bundle.rootfs, "secret")
    os.makedirs(os.path.join(secret, "in"))
    os.chmod(secret, 0o700)
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.process["cwd"] = "/secret/in"
    r = bundle.sh("pwd; id -u; ls /secret >/dev/null 2>&1 || echo denied").run()
    assert (r.returncode, r.stdout) == (0, "/secret/in\n1000\ndenied\n"), r.stderr
    bundle.process["cwd"] = "/"
    cid = run_detached(bundle.sh("sleep 60"))
    try:
        r = bundle.runner("exec", "--user", "1000:1000", "--cwd", "/secret/in", cid, "pwd")
        assert (r.returncode, r.stdout) == (0, "/secret/in\n"), r.stderr
        r = bundle.runner("exec", "--user", "1000:1000", "--cwd", "/nosuch", cid, "pwd")
        assert r.returncode == 1 and "process.cwd" in r.stderr, r.stderr
    finally:
        bundle.runner("delete", "--force", cid)


def test_cwd_only_the_process_user_may_reach(bundle):
    """…and again after the switch when root is refused: in a user namespace, root may not
    override the permissions of a directory whose group is not mapped, which its owner,
    the process's user, may still enter."""
    from test_namespaces import use_userns

    use_userns(bundle)
    base = bundle.linux["uidMappings"][0]["hostID"]
    mine = os.path.join(bundle.rootfs, "mine")
    os.makedirs(mine)
    os.chown(mine, base + 1000, 4242)  # gid 4242: outside the mapping
    os.chmod(mine, 0o700)
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    bundle.process["cwd"] = "/mine"
    r = bundle.sh("pwd; id -u").run()
    assert (r.returncode, r.stdout) == (0, "/mine\n1000\n"), r.stderr
    bundle.process["cwd"] = "/"
    cid = run_detached(bundle.sh("sleep 60"))
    try:
        r = bundle.runner("exec", "--user", "1000:1000", "--cwd", "/mine", cid, "pwd")
        assert (r.returncode, r.stdout) == (0, "/mine\n"), r.stderr
        r = bundle.runner("exec", "--user", "0:0", "--cwd", "/mine", cid, "pwd")
        assert r.returncode == 1 and "process.cwd" in r.stderr, r.stderr
    finally:
        bundle.runner("delete", "--force", cid)
