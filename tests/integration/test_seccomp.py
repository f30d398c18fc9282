"""linux.seccomp: the filter is compiled in the parent with libseccomp and loaded by the
container's init before execve. Each test runs a container and looks from inside."""
import array
import json
import os
import socket
import struct
import threading

import fcntl
import pytest
from conftest import assert_nothing_left

import secprobe

ERRNO_ENOSPC = {"action": "SCMP_ACT_ERRNO", "errnoRet": 28}


def seccomp(bundle, *rules, default="SCMP_ACT_ALLOW", **extra):
    s = {"defaultAction": default, "syscalls": list(rules)}
    s.update(extra)
    bundle.linux["seccomp"] = s
    return bundle


def rule(names, action="SCMP_ACT_ERRNO", **kw):
    r = {"names": list(names), "action": action}
    r.update(kw)
    return r


def test_errno_rule_with_errnoret(bundle):
    seccomp(bundle, rule(["mkdir", "mkdirat"], errnoRet=28))
    r = bundle.sh("mkdir /tmp/x; echo rc=$?; grep Seccomp: /proc/self/status").run()
    assert "No space left on device" in r.stderr
    assert "rc=1" in r.stdout
    assert "Seccomp:\t2" in r.stdout  # filter mode, inherited by what the init runs


def test_errno_defaults_to_eperm(bundle):
    seccomp(bundle, rule(["mkdir", "mkdirat"]))
    r = bundle.sh("mkdir /tmp/x").run()
    assert r.returncode == 1 and "Operation not permitted" in r.stderr


def test_default_errno_ret(bundle):
    # an allowlist: whatever is not listed fails with the default errno
    names = ["read", "write", "open", "openat", "close", "fstat", "newfstatat", "stat", "lstat",
             "mmap", "munmap", "brk", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
             "execve", "execveat", "exit_group", "exit", "getpid", "getppid", "getuid",
             "geteuid", "getgid", "getegid", "arch_prctl", "set_tid_address", "uname",
             "ioctl", "fcntl", "dup2", "wait4", "clone", "fork", "vfork", "statx",
             "prlimit64", "getcwd", "chdir", "lseek", "memfd_create", "sendto", "mprotect",
             "getdents64", "umask", "setpgid", "getpgid", "getpgrp"]
    seccomp(bundle, rule(names, "SCMP_ACT_ALLOW"), default="SCMP_ACT_ERRNO", defaultErrnoRet=28)
    r = bundle.sh("echo in; mkdir /tmp/x").run()
    assert r.stdout == "in\n"
    assert "No space left on device" in r.stderr


@pytest.mark.parametrize("op, value, value_two, expect", [
    # `kill -0 PID` for PID 1, 1000, 2000: B = the rule matched (ENOSPC), N = it did not
    ("SCMP_CMP_NE", 1000, 0, "BNB"),
    ("SCMP_CMP_LT", 1000, 0, "BNN"),
    ("SCMP_CMP_LE", 1000, 0, "BBN"),
    ("SCMP_CMP_EQ", 1000, 0, "NBN"),
    ("SCMP_CMP_GE", 1000, 0, "NBB"),
    ("SCMP_CMP_GT", 1000, 0, "NNB"),
    ("SCMP_CMP_MASKED_EQ", 0x3F0, 1000 & 0x3F0, "NBN"),  # value is the mask
])
def test_argument_operators(bundle, op, value, value_two, expect):
    seccomp(bundle, rule(["kill"], args=[{"index": 0, "value": value, "valueTwo": value_two,
                                          "op": op}], **{"errnoRet": 28}))
    r = bundle.sh("for p in 1 1000 2000; do "
                  "if kill -0 $p 2>&1 | grep -q 'No space'; then printf B; else printf N; fi; "
                  "done").run()
    assert r.stdout == expect, r.stderr


def test_conditions_on_one_argument_are_ored_and_on_distinct_ones_anded(bundle):
    seccomp(bundle,
            # pid 1000 or 2000 (same index: one rule each, ORed, as runc does)
            rule(["kill"], errnoRet=28, args=[{"index": 0, "value": 1000, "op": "SCMP_CMP_EQ"},
                                              {"index": 0, "value": 2000, "op": "SCMP_CMP_EQ"}]),
            # pid 3000 AND signal 0
            rule(["kill"], errnoRet=28, args=[{"index": 0, "value": 3000, "op": "SCMP_CMP_EQ"},
                                              {"index": 1, "value": 0, "op": "SCMP_CMP_EQ"}]))
    r = bundle.sh("for a in '-0 1000' '-0 2000' '-0 4000' '-0 3000' '-1 3000'; do "
                  "if kill $a 2>&1 | grep -q 'No space'; then printf B; else printf N; fi; "
                  "done").run()
    assert r.stdout == "BBNBN", r.stderr


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_TRAP"])
def test_killing_actions(bundle, action):
    seccomp(bundle, rule(["mkdir", "mkdirat"], action))
    r = bundle.sh("mkdir /tmp/x; echo status=$?").run()
    if action == "SCMP_ACT_KILL":
        # only the thread dies: for busybox mkdir, the whole (single-threaded) process
        assert "status=" in r.stdout and "status=0" not in r.stdout
    else:
        assert "status=159" in r.stdout  # 128 + SIGSYS


def test_log_and_allow_let_the_call_through(bundle):
    seccomp(bundle, rule(["mkdir", "mkdirat"], "SCMP_ACT_LOG"), default="SCMP_ACT_ALLOW")
    r = bundle.sh("mkdir /dev/shm/x && echo made").run()  # / is read-only
    assert r.stdout == "made\n"


def test_unknown_syscall_names_are_skipped(bundle):
    seccomp(bundle, rule(["mkdir", "mkdirat", "no_such_syscall", "socketcall"], errnoRet=28))
    r = bundle.sh("mkdir /tmp/x").run()
    assert "No space left" in r.stderr


@pytest.mark.parametrize("flags", [["SECCOMP_FILTER_FLAG_TSYNC"], ["SECCOMP_FILTER_FLAG_LOG"],
                                   ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                                   ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                                    "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]])
def test_flags_are_given_to_the_kernel(bundle, flags):
    seccomp(bundle, rule(["mkdir", "mkdirat"], errnoRet=28), flags=flags)
    r = bundle.sh("grep -E '^Seccomp(_filters)?:' /proc/self/status; mkdir /tmp/x").run()
    assert "Seccomp:\t2" in r.stdout and "Seccomp_filters:\t1" in r.stdout
    assert "No space left" in r.stderr


def test_spec_allow_keeps_speculation_mitigation_off(bundle):
    """Without SPEC_ALLOW a filter turns the store-bypass mitigation on (when the host
    leaves it to prctl/seccomp); with it, the process's state is what it was."""
    try:
        with open("/sys/devices/system/cpu/vulnerabilities/spec_store_bypass") as f:
            mode = f.read().strip()
    except OSError:
        mode = ""
    if "seccomp" not in mode:
        pytest.skip(f"store-bypass mitigation is {mode!r}, not tied to seccomp: nothing to see")
    seccomp(bundle, rule(["mkdir"]), flags=["SECCOMP_FILTER_FLAG_SPEC_ALLOW"])
    with_flag = bundle.sh("grep Speculation_Store_Bypass /proc/self/status").run().stdout
    seccomp(bundle, rule(["mkdir"]))
    without = bundle.sh("grep Speculation_Store_Bypass /proc/self/status").run().stdout
    assert with_flag != without


def test_without_no_new_privileges_the_filter_is_loaded_with_cap_sys_admin_held(bundle):
    # no CAP_SYS_ADMIN in the container: loading needs it, so it happens while held
    bundle.process["noNewPrivileges"] = False
    seccomp(bundle, rule(["mkdir", "mkdirat"], errnoRet=28))
    r = bundle.sh("grep -E '^(NoNewPrivs|CapEff):' /proc/self/status; mkdir /tmp/x").run()
    assert "NoNewPrivs:\t0" in r.stdout
    assert "CapEff:\t00000000200000" in r.stdout.replace("0000000020000420", "00000000200000")
    assert "No space left" in r.stderr


def test_filter_applies_to_the_containers_process_not_the_runtime(bundle):
    # the runtime's own setup calls (mount, pivot_root, sethostname…) run before the load
    seccomp(bundle, rule(["mount", "umount2", "pivot_root", "sethostname", "chdir"],
                         errnoRet=28))
    r = bundle.sh("hostname; cd /tmp; echo cd=$?").run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("runner\n")
    # the CHDIR op ran before the load; the shell's cd is filtered
    assert "cd=0" not in r.stdout and "can't cd to /tmp: No space left" in r.stderr


def test_bad_seccomp_config_fails_clearly_and_leaves_nothing(bundle):
    for bad, field in [
        ({"defaultAction": "SCMP_ACT_BOGUS"}, "linux.seccomp.defaultAction"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]},
         "linux.seccomp.architectures[0]"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["read"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 7, "value": 0, "op": "SCMP_CMP_EQ"}]}]},
         "linux.seccomp.syscalls[0].args[0].index"),
        ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "X"}]},
         "linux.seccomp.syscalls[0].action"),
    ]:
        bundle.linux["seccomp"] = bad
        r = bundle.run()
        assert r.returncode == 1
        assert r.stderr.startswith(f"runner: {field}:"), r.stderr
        assert r.stderr.count("\n") == 1
        assert_nothing_left(bundle)


def test_seccomp_applies_to_exec_too(bundle):
    seccomp(bundle, rule(["mkdir", "mkdirat"], errnoRet=28))
    cid = secprobe.start_detached(bundle.sh("sleep 30"))
    try:
        e = bundle.runner("exec", cid, "sh", "-c", "mkdir /tmp/y; grep Seccomp: /proc/self/status")
        assert "No space left" in e.stderr
        assert "Seccomp:\t2" in e.stdout
    finally:
        bundle.runner("delete", "--force", bundle.last_id)


# ---- the default profile (`runner spec --seccomp default`) ---------------------------

@pytest.fixture
def default_profile_bundle(bundle, tmp_path):
    d = tmp_path / "spec"
    d.mkdir()
    r = bundle.runner("spec", "--bundle", str(d), "--seccomp", "default")
    assert r.returncode == 0, r.stderr
    with open(d / "config.json") as f:
        profile = json.load(f)["linux"]["seccomp"]
    bundle.linux["seccomp"] = profile
    secprobe.install(bundle)
    return bundle


@pytest.mark.parametrize("call", [
    "keyctl 0 -3 0", "add_key \"user \"k \"v 1 -3", "bpf 0 0 0",
    "kexec_load 0 0 0 0", "open_by_handle_at 3 0 0",
    "unshare 0x10000000", "mount \"none \"/tmp \"tmpfs 0 0", "init_module 0 0 \"",
    "reboot 0xfee1dead 672274793 0x4321fedc 0", "userfaultfd 0", "setns 0 0",
])
def test_default_profile_blocks_with_eperm(default_profile_bundle, call):
    r = default_profile_bundle.set_args("secprobe", "sys", *call.split()).run()
    assert r.stdout == "err EPERM\n", r.stderr


def test_default_profile_lets_ordinary_work_run(default_profile_bundle):
    r = default_profile_bundle.sh(
        "mkdir /dev/shm/d && echo hi > /dev/shm/d/f && cat /dev/shm/d/f && ls /proc >/dev/null && "
        "(sleep 0 &) && wait && secprobe sys getpid && secprobe sys personality 0xffffffff").run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("hi\nok ")
    assert r.stdout.endswith("ok 0\n")


def test_default_profile_blocks_new_namespaces_through_clone(default_profile_bundle):
    r = default_profile_bundle.sh("unshare -U true; echo rc=$?; unshare -m true; echo rc=$?").run()
    assert r.stdout == "rc=1\nrc=1\n"
    assert "Operation not permitted" in r.stderr


# ---- SCMP_ACT_NOTIFY ------------------------------------------------------------------

NOTIF_SIZE, RESP_SIZE = 80, 24
IOCTL_RECV = (3 << 30) | (NOTIF_SIZE << 16) | (ord("!") << 8) | 0
IOCTL_SEND = (3 << 30) | (RESP_SIZE << 16) | (ord("!") << 8) | 1


class Agent(threading.Thread):
    """A seccomp agent: takes the container process state and the listener fd from the
    runtime, then answers one notification with `errno`."""

    def __init__(self, path: str, errno: int):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.errno = errno
        self.state = None
        self.fds = []
        self.syscall_nr = None
        self.error = None

    def run(self):
        try:
            conn, _ = self.sock.accept()
            with conn:
                data, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(4 * 4))
                while True:
                    more = conn.recv(65536)
                    if not more:
                        break
                    data += more
                for level, typ, raw in anc:
                    if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
                        self.fds += array.array("i", raw[:len(raw) - len(raw) % 4]).tolist()
            self.state = json.loads(data)
            buf = bytearray(NOTIF_SIZE)
            fcntl.ioctl(self.fds[0], IOCTL_RECV, buf)
            nid, pid, flags, nr = struct.unpack_from("=QIIi", buf)
            self.syscall_nr = nr
            fcntl.ioctl(self.fds[0], IOCTL_SEND, bytearray(struct.pack("=QqiI", nid, 0, -self.errno, 0)))
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            for fd in self.fds:
                os.close(fd)
            self.sock.close()


def test_notify_sends_state_and_listener_to_the_agent(bundle, tmp_path):
    path = str(tmp_path / "agent.sock")
    agent = Agent(path, errno=28)
    agent.start()
    seccomp(bundle, rule(["mkdir"], "SCMP_ACT_NOTIFY"), listenerPath=path,
            listenerMetadata="MKNOD=/dev/null;X=1")
    bundle.config["annotations"] = {"k": "v"}
    r = bundle.sh("mkdir /tmp/x; echo rc=$?").run()
    agent.join(20)
    assert agent.error is None, agent.error
    assert "No space left on device" in r.stderr  # the agent's answer
    assert r.stdout == "rc=1\n"
    st = agent.state
    assert st["fds"] == ["seccompFd"] and len(agent.fds) == 1
    assert st["metadata"] == "MKNOD=/dev/null;X=1"
    assert st["ociVersion"] == "1.3.0"
    assert st["pid"] > 0 and st["state"]["pid"] == st["pid"]
    assert st["state"]["id"] == bundle.last_id
    assert st["state"]["status"] == "creating"
    assert st["state"]["bundle"] == bundle.path
    assert st["state"]["annotations"] == {"k": "v"}
    assert agent.syscall_nr == 83  # mkdir on x86_64


def test_notify_with_no_agent_listening_fails_and_leaves_nothing(bundle, tmp_path):
    path = str(tmp_path / "nobody.sock")
    seccomp(bundle, rule(["mkdir"], "SCMP_ACT_NOTIFY"), listenerPath=path)
    r = bundle.sh("echo should-not-run").run()
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.startswith("runner: linux.seccomp.listenerPath: sending the seccomp fd to "
                               f"{path}:"), r.stderr
    assert_nothing_left(bundle)
