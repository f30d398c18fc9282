"""Seccomp profiles older than the syscalls this runtime likes to use.

An allowlist written before Linux 5.x (the OCI validation suite's, engines' profiles from
before 2021) lacks openat2, clone3, close_range, faccessat2, mount_setattr and friends.
Without noNewPrivileges the filter has to be loaded while the init still holds
CAP_SYS_ADMIN; nothing the runtime does after that may need one of those syscalls
(issue 11, point 1). And a syscall the profile does not know at all (newer than every one
it names) must fail with ENOSYS, not the default errno, so that libc falls back to the
older call, as runc arranges (point 14)."""
from __future__ import annotations

import json
import os

import pytest
from conftest import assert_nothing_left, cap_mask
from libcontainer.default_spec import DEFAULT_CAPS

import secprobe
from test_lifecycle import create, wait_status

# x86_64's pidfd_send_signal, the first syscall of Linux 5.1: everything below it existed in
# 5.0; a "classic" allowlist is the engines' default profile cut there
FIRST_NEW = 424


def classic_profile() -> dict:
    from libcontainer._seccomp import lib
    from libcontainer.security.seccomp_default import default_profile

    prof = default_profile()
    rules = []
    for r in prof["syscalls"]:
        if r["action"] != "SCMP_ACT_ALLOW":
            continue  # the modern profile's own clone3 → ENOSYS rule
        names = [n for n in r["names"]
                 if 0 <= lib.seccomp_syscall_resolve_name(n.encode()) < FIRST_NEW]
        if names:
            rules.append(dict(r, names=names))
    prof["syscalls"] = rules
    return prof


@pytest.fixture
def classic(bundle):
    import platform

    if platform.machine() != "x86_64":
        pytest.skip("the classic profile is cut at x86_64 syscall numbers")
    secprobe.install(bundle)
    bundle.linux["seccomp"] = classic_profile()
    # without no_new_privs the filter is loaded while CAP_SYS_ADMIN is still held
    bundle.process["noNewPrivileges"] = False
    bundle.process["cwd"] = "/tmp"
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    return bundle


def test_run_under_a_classic_allowlist_without_no_new_privs(classic):
    caps = classic.process["capabilities"]
    caps["inheritable"] = caps["ambient"] = ["CAP_NET_BIND_SERVICE"]
    r = classic.sh("pwd; id -u; grep -E '^(Seccomp|NoNewPrivs|Cap...):' /proc/self/status").run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == ["/tmp", "1000"]
    assert "Seccomp:\t2" in lines and "NoNewPrivs:\t0" in lines
    # the config's sets were set after the filter (CAP_SYS_ADMIN was held to load it): the
    # ambient capability is raised, and all that uid 1000 keeps across execve
    mask = cap_mask("CAP_NET_BIND_SERVICE")
    assert f"CapAmb:\t{mask}" in lines and f"CapEff:\t{mask}" in lines
    assert f"CapBnd:\t{cap_mask(*DEFAULT_CAPS)}" in lines
    assert_nothing_left(classic)


def test_create_start_exec_under_a_classic_allowlist(classic):
    classic.process["user"] = {"uid": 0, "gid": 0}
    classic.sh("sleep 30")
    cid = create(classic)
    try:
        wait_status(classic, cid, "created")
        r = classic.runner("start", cid)
        assert r.returncode == 0, r.stderr
        wait_status(classic, cid, "running")
        e = classic.runner("exec", "--cwd", "/etc", "--user", "1000:1000", cid, "sh", "-c",
                           "pwd; id -u")
        assert e.returncode == 0, e.stderr
        assert e.stdout == "/etc\n1000\n"
    finally:
        classic.runner("delete", "--force", cid)
    assert_nothing_left(classic)


def test_syscalls_newer_than_the_profile_fail_with_enosys(classic):
    # clone3, openat2, faccessat2: newer than anything the profile names → ENOSYS, so that
    # glibc falls back to clone/openat/faccessat; keyctl (known, not allowed) keeps EPERM
    classic.sh("for c in 'clone3 0 0' 'openat2 -100 \"/ 0 0' 'faccessat2 -100 \"/ 0 0' "
               "'keyctl 0 -3 0'; do secprobe sys $c; done")
    r = classic.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["err ENOSYS", "err ENOSYS", "err ENOSYS", "err EPERM"]


def test_enosys_only_where_the_profile_would_refuse(bundle):
    secprobe.install(bundle)
    # an allow-by-default profile: new syscalls go through (clone3 fails on its bad
    # arguments, not on the filter)
    bundle.linux["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]}
    r = bundle.set_args("secprobe", "sys", "clone3", "0", "0").run()
    assert r.stdout == "err EINVAL\n", r.stderr
    # a profile whose default errno is ENOSPC: a known syscall it does not allow gets
    # ENOSPC, a syscall newer than all it names gets ENOSYS
    bundle.linux["seccomp"] = dict(classic_profile(), defaultErrnoRet=28)
    r = bundle.sh("secprobe sys clone3 0 0; secprobe sys keyctl 0 -3 0").run()
    assert r.stdout == "err ENOSYS\nerr ENOSPC\n", r.stderr


def test_hook_timeout_under_a_filter_without_pidfd_open(classic, tmp_path):
    """A notifying filter is loaded before the wait for `start`, so startContainer hooks run
    under it; a classic allowlist has no pidfd_open, and the hook's timeout must hold."""
    import socket
    import threading
    import time

    path = str(tmp_path / "agent.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def agent():  # takes the listener fd and lets it go: nothing notifies in this test
        conn, _ = srv.accept()
        with conn:
            _, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4))
            for level, typ, raw in anc:
                if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                    os.close(int.from_bytes(raw[:4], "little"))
    t = threading.Thread(target=agent, daemon=True)
    t.start()
    prof = classic.linux["seccomp"]
    prof["listenerPath"] = path
    prof["syscalls"].append({"names": ["mknod"], "action": "SCMP_ACT_NOTIFY"})
    classic.process["noNewPrivileges"] = True
    classic.config["hooks"] = {"startContainer": [
        {"path": "/bin/sleep", "args": ["sleep", "10"], "timeout": 1}]}
    classic.set_args("true")
    began = time.monotonic()
    r = classic.run()
    took = time.monotonic() - began
    t.join(5)
    srv.close()
    assert r.returncode == 1, r.stderr
    assert "hooks.startContainer[0]" in r.stderr and "timed out" in r.stderr, r.stderr
    assert took < 8
    assert_nothing_left(classic)
