"""linux.seccomp checking and compiling, without running a container."""
import pytest

from libcontainer.errors import ConfigError
from libcontainer.security import seccomp
from libcontainer.security.seccomp_default import default_profile

ALLOW = "SCMP_ACT_ALLOW"


def prof(**kw):
    raw = {"defaultAction": ALLOW}
    raw.update(kw)
    return raw


@pytest.mark.parametrize("raw, field, words", [
    ({}, "linux.seccomp.defaultAction", "is required"),
    ({"defaultAction": "SCMP_ACT_FOO"}, "linux.seccomp.defaultAction", "unknown action"),
    ({"defaultAction": "SCMP_ACT_NOTIFY"}, "linux.seccomp.defaultAction", "cannot be the default"),
    (prof(defaultErrnoRet=5), "linux.seccomp.defaultErrnoRet", "takes no errno"),
    (prof(architectures=["SCMP_ARCH_VAX"]), "linux.seccomp.architectures[0]", "unknown architecture"),
    (prof(architectures=["SCMP_ARCH_LOONGARCH64"]), "linux.seccomp.architectures[0]", "libseccomp 2.6"),
    (prof(flags=["SECCOMP_FILTER_FLAG_BOGUS"]), "linux.seccomp.flags[0]", "unknown flag"),
    (prof(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]), "linux.seccomp.flags[0]", "SCMP_ACT_NOTIFY"),
    (prof(listenerMetadata="x"), "linux.seccomp.listenerMetadata", "without listenerPath"),
    (prof(listenerPath="rel/sock"), "linux.seccomp.listenerPath", "absolute"),
    (prof(syscalls=[{"names": [], "action": ALLOW}]), "linux.seccomp.syscalls[0].names", "at least one"),
    (prof(syscalls=[{"names": ["read"]}]), "linux.seccomp.syscalls[0].action", "is required"),
    (prof(syscalls=[{"names": ["read"], "action": "SCMP_ACT_BOOM"}]),
     "linux.seccomp.syscalls[0].action", "unknown action"),
    (prof(syscalls=[{"names": ["read"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]),
     "linux.seccomp.syscalls[0].errnoRet", "takes no errno"),
    (prof(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]),
     "linux.seccomp.syscalls[0].errnoRet", "out of range"),
    (prof(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].index", "6 is not a syscall argument"),
    (prof(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ALMOST"}]}]),
     "linux.seccomp.syscalls[0].args[0].op", "unknown operator"),
    (prof(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].value", "is required"),
    (prof(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                     "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]}]),
     "linux.seccomp.syscalls[0].args[0].value", "out of range"),
    (prof(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]),
     "linux.seccomp.syscalls[0].action", "needs linux.seccomp.listenerPath"),
    (prof(listenerPath="/run/agent.sock", syscalls=[{"names": ["sendmsg"], "action": "SCMP_ACT_NOTIFY"}]),
     "linux.seccomp.syscalls[0].names", "cannot be used on sendmsg"),
])
def test_bad_profiles_name_the_field(raw, field, words):
    with pytest.raises(ConfigError) as e:
        seccomp.parse(raw)
    assert e.value.field == field
    assert words in str(e.value)


def _instructions(raw) -> int:
    bpf = seccomp.compile(seccomp.parse(raw))
    assert len(bpf) % 8 == 0  # struct sock_filter is 8 bytes
    return len(bpf) // 8


def test_unknown_syscall_names_are_skipped_like_runc():
    base = _instructions(prof(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]))
    more = _instructions(prof(syscalls=[{"names": ["mkdir", "no_such_syscall_at_all"],
                                         "action": "SCMP_ACT_ERRNO"}]))
    assert more == base


def test_rules_and_arguments_make_the_program_bigger():
    plain = _instructions(prof())
    rule = _instructions(prof(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO"}]))
    args = _instructions(prof(syscalls=[{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                                         "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]))
    assert plain < rule < args


def test_each_architecture_adds_its_own_section():
    one = _instructions(prof(syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]))
    three = _instructions(prof(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                               syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]))
    assert three > one


def test_a_rule_doing_what_the_default_does_is_dropped():
    assert _instructions(prof(syscalls=[{"names": ["read"], "action": ALLOW}])) == _instructions(prof())


def test_notify_asks_the_kernel_for_a_listener():
    p = seccomp.parse(prof(listenerPath="/run/a.sock", flags=["SECCOMP_FILTER_FLAG_TSYNC"],
                           syscalls=[{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]))
    assert p.notify
    # NEW_LISTENER, and TSYNC_ESRCH: the kernel refuses TSYNC with a listener without it
    assert p.kernel_flags() == 1 | 8 | 16


def test_every_action_and_operator_compiles():
    for action in seccomp.ACTIONS:
        if action in ("SCMP_ACT_NOTIFY", ALLOW):
            continue
        for op in seccomp.OPERATORS:
            _instructions(prof(syscalls=[{"names": ["kill"], "action": action,
                                          "args": [{"index": 0, "value": 3, "valueTwo": 1, "op": op}]}]))


def test_default_profile_compiles_and_leaves_out_dangerous_calls():
    raw = default_profile(["CAP_KILL"], machine="x86_64")
    assert raw["defaultAction"] == "SCMP_ACT_ERRNO" and raw["defaultErrnoRet"] == 1
    allowed = {n for r in raw["syscalls"] if r["action"] == ALLOW and "args" not in r for n in r["names"]}
    for name in ("keyctl", "add_key", "request_key", "bpf", "kexec_load", "open_by_handle_at",
                 "mount", "umount2", "unshare", "setns", "init_module", "reboot", "userfaultfd"):
        assert name not in allowed
    assert _instructions(raw) > 100


def test_default_profile_follows_capabilities():
    def allowed(caps):
        raw = default_profile(caps, machine="x86_64")
        return {n for r in raw["syscalls"] if r["action"] == ALLOW for n in r["names"]}

    assert "mount" not in allowed(["CAP_KILL"])
    assert "mount" in allowed(["CAP_SYS_ADMIN"])
    assert "open_by_handle_at" in allowed(["CAP_DAC_READ_SEARCH"])
