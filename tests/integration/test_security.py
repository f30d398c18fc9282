"""Capabilities, no_new_privs, personality, I/O priority, scheduler and LSM labels, seen
from inside the container (/proc/self/status, uname, ionice, /proc/self/stat)."""
import os
import shutil
import stat
import subprocess

import pytest
from conftest import RUNNER, assert_nothing_left, new_id

import secprobe

CAP = {"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_KILL": 5, "CAP_SETPCAP": 8,
       "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13, "CAP_SYS_RESOURCE": 24,
       "CAP_AUDIT_WRITE": 29}


def bits(*names) -> int:
    return sum(1 << CAP[n] for n in names)


def status(bundle, uid=0) -> dict:
    bundle.process["user"] = {"uid": uid, "gid": uid}
    r = bundle.sh("grep -E '^(Cap|NoNewPrivs)' /proc/self/status").run()
    assert r.returncode == 0, r.stderr
    out = {}
    for line in r.stdout.splitlines():
        k, v = line.split(":")
        out[k] = int(v.strip(), 16) if k.startswith("Cap") else int(v)
    return out


def caps(bundle, **sets):
    bundle.process["capabilities"] = {k: list(v) for k, v in sets.items()}


def test_all_five_sets_as_a_non_root_user(bundle):
    caps(bundle, bounding=["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"],
         effective=["CAP_KILL", "CAP_CHOWN"], permitted=["CAP_KILL", "CAP_CHOWN"],
         inheritable=["CAP_KILL"], ambient=["CAP_KILL"])
    st = status(bundle, uid=1000)
    assert st["CapBnd"] == bits("CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW")
    assert st["CapInh"] == bits("CAP_KILL")
    assert st["CapAmb"] == bits("CAP_KILL")
    # after execve a non-root process keeps exactly its ambient set
    assert st["CapPrm"] == st["CapEff"] == bits("CAP_KILL")


def test_root_gets_the_bounding_set_and_nothing_inheritable(bundle):
    caps(bundle, bounding=["CAP_KILL", "CAP_CHOWN"], effective=["CAP_KILL"],
         permitted=["CAP_KILL", "CAP_CHOWN"])
    st = status(bundle)
    assert st["CapBnd"] == bits("CAP_KILL", "CAP_CHOWN")
    assert st["CapPrm"] == st["CapEff"] == bits("CAP_KILL", "CAP_CHOWN")
    assert st["CapInh"] == 0 and st["CapAmb"] == 0  # CVE-2022-29162: empty unless asked


def test_default_config_has_no_inheritable_or_ambient(bundle):
    st = status(bundle, uid=1000)
    assert st["CapInh"] == 0 and st["CapAmb"] == 0
    assert st["CapEff"] == 0
    assert st["CapBnd"] == bits("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")


def test_no_capabilities_object_means_none(bundle):
    del bundle.process["capabilities"]
    st = status(bundle)
    assert st["CapBnd"] == st["CapEff"] == st["CapPrm"] == 0


def test_ambient_without_inheritable_is_skipped_said_only_with_debug(bundle):
    """runc's own `spec` asks for ambient capabilities without inheritable ones: runc and
    crun skip them without a word, so every run of that config printing a warning would
    be noise (issue 17, point 3). It is a debug remark."""
    caps(bundle, bounding=["CAP_KILL"], permitted=["CAP_KILL"], effective=["CAP_KILL"],
         ambient=["CAP_KILL"])
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    r = bundle.sh("grep CapAmb /proc/self/status").run()
    assert r.returncode == 0
    assert r.stdout.split()[1] == "0000000000000000"
    assert r.stderr == ""
    r = bundle.runner("--debug", "run", "--bundle", bundle.path, bundle.last_id + "-debug")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[1] == "0000000000000000"
    assert "runner: debug: process.capabilities.ambient: CAP_KILL is not in both the " \
           "permitted and inheritable sets" in r.stderr


def test_a_capability_the_runtime_lacks_is_skipped_with_a_warning(bundle):
    with open("/proc/self/status") as f:
        own = next(int(l.split()[1], 16) for l in f if l.startswith("CapBnd"))
    if own >> CAP["CAP_SYS_RESOURCE"] & 1:
        pytest.skip("this host's runtime holds CAP_SYS_RESOURCE")
    caps(bundle, **{s: ["CAP_KILL", "CAP_SYS_RESOURCE"] for s in ("bounding", "effective", "permitted")})
    bundle.process["user"] = {"uid": 0, "gid": 0}
    r = bundle.sh("grep CapBnd /proc/self/status").run()
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[1], 16) == bits("CAP_KILL")
    assert "process.capabilities.bounding: CAP_SYS_RESOURCE cannot be granted" in r.stderr


@pytest.mark.parametrize("names, field", [
    (["CAP_KILL", "CAP_FLY"], "process.capabilities.bounding[1]"),
    (["cap_nonsense", "CAP_KILL"], "process.capabilities.bounding[0]"),
])
def test_unknown_capability_is_a_warning_and_the_container_runs(bundle, names, field):
    # config.md (1.3): a capability that cannot be mapped MUST be logged as a warning, and
    # the runtime SHOULD NOT fail; runc and crun warn and run
    caps(bundle, **{s: names for s in ("bounding", "effective", "permitted")})
    bundle.process["user"] = {"uid": 0, "gid": 0}
    r = bundle.sh("grep CapBnd /proc/self/status").run()
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[1], 16) == bits("CAP_KILL")
    unknown = next(n for n in names if n != "CAP_KILL")
    assert f"{field}: unknown capability {unknown!r}; skipped" in r.stderr
    assert_nothing_left(bundle)


def test_exec_cap_unknown_is_a_warning(bundle):
    cid = secprobe.start_detached(bundle.sh("sleep 30"))
    try:
        r = bundle.runner("exec", "--cap", "CAP_NOSUCH", "--cap", "CAP_SYS_ADMIN", cid,
                          "grep", "CapEff", "/proc/self/status")
        assert r.returncode == 0, r.stderr
        assert "--cap: unknown capability 'CAP_NOSUCH'; skipped" in r.stderr
        assert int(r.stdout.split()[1], 16) >> 21 & 1  # CAP_SYS_ADMIN is 21
    finally:
        bundle.runner("delete", "--force", cid)
    assert_nothing_left(bundle)


@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges_stops_setuid(bundle, nnp):
    secprobe.install(bundle)
    suid = os.path.join(bundle.rootfs, "bin", "suidprobe")
    shutil.copy(os.path.join(bundle.rootfs, "bin", "secprobe"), suid)
    os.chown(suid, 0, 0)
    os.chmod(suid, 0o4755 | stat.S_IFREG)
    bundle.process["noNewPrivileges"] = nnp
    bundle.process["user"] = {"uid": 1000, "gid": 1000}
    r = bundle.sh("grep NoNewPrivs /proc/self/status; suidprobe ids").run()
    assert r.returncode == 0, r.stderr
    flag, ids = r.stdout.splitlines()
    assert flag.split()[1] == ("1" if nnp else "0")
    assert ids == ("1000 1000" if nnp else "1000 0")


# ---- personality, ioPriority, scheduler ----------------------------------------------

@pytest.mark.parametrize("domain, machine", [("LINUX32", "i686"), ("LINUX", os.uname().machine)])
def test_personality(bundle, domain, machine):
    if os.uname().machine != "x86_64":
        pytest.skip("LINUX32 shows i686 on x86_64 hosts")
    bundle.linux["personality"] = {"domain": domain}
    r = bundle.set_args("uname", "-m").run()
    assert r.stdout == machine + "\n", r.stderr


@pytest.mark.parametrize("cls, prio, shown", [
    ("IOPRIO_CLASS_IDLE", 0, "idle"),
    ("IOPRIO_CLASS_BE", 3, "best-effort: prio 3"),
    ("IOPRIO_CLASS_RT", 2, "realtime: prio 2"),
])
def test_io_priority(bundle, cls, prio, shown):
    bundle.process["ioPriority"] = {"class": cls, "priority": prio}
    r = bundle.sh("ionice; sh -c ionice").run()  # and inherited by children
    assert r.stdout == f"{shown}\n{shown}\n", r.stderr


def _sched(bundle):
    # /proc/self/stat fields 19 (nice), 40 (rt_priority), 41 (policy)
    r = bundle.sh("cut -d' ' -f19,40,41 /proc/self/stat").run()
    return r, r.stdout.split()


@pytest.mark.parametrize("sched, expect", [
    ({"policy": "SCHED_BATCH", "nice": 7}, ["7", "0", "3"]),
    ({"policy": "SCHED_IDLE"}, ["0", "0", "5"]),
    ({"policy": "SCHED_OTHER", "nice": -5}, ["-5", "0", "0"]),
])
def test_scheduler(bundle, sched, expect):
    bundle.process["scheduler"] = sched
    r, got = _sched(bundle)
    assert got == expect, r.stderr


@pytest.mark.parametrize("policy, code", [("SCHED_IDLE", "5"), ("SCHED_OTHER", "0")])
def test_scheduler_nice_is_not_the_callers(bundle, policy, code):
    """The spec: a scheduler without nice means nice 0, whatever the caller's. The kernel
    applies sched_attr's nice only to SCHED_OTHER and SCHED_BATCH, so under SCHED_IDLE a
    niced caller's (here 13) would stay but for the runtime."""
    bundle.process["scheduler"] = {"policy": policy}
    bundle.sh("cut -d' ' -f19,40,41 /proc/self/stat").write()
    r = subprocess.run(["nice", "-n", "13", *RUNNER, "--root", bundle.root, "run", "--bundle",
                        bundle.path, new_id()], capture_output=True, text=True, timeout=60)
    assert r.stdout.split() == ["0", "0", code], r.stderr


def test_scheduler_reset_on_fork(bundle):
    # the init keeps nice -5; its children start again from 0
    bundle.process["scheduler"] = {"policy": "SCHED_OTHER", "nice": -5,
                                   "flags": ["SCHED_FLAG_RESET_ON_FORK"]}
    r = bundle.sh("cut -d' ' -f19 /proc/1/stat; cut -d' ' -f19 /proc/self/stat; true").run()
    assert r.stdout == "-5\n0\n", r.stderr


def test_real_time_scheduler_runs_or_says_why_not(bundle):
    bundle.process["scheduler"] = {"policy": "SCHED_RR", "priority": 5}
    r, got = _sched(bundle)
    if r.returncode == 0:
        assert got == ["0", "5", "2"]
    else:
        assert r.stderr.startswith("runner: process.scheduler: setting SCHED_RR"), r.stderr
        assert "realtimeRuntime" in r.stderr
        assert_nothing_left(bundle)


@pytest.mark.parametrize("path, value, field, words", [
    ("linux.personality", {"domain": "WINDOWS"}, "linux.personality.domain", "unknown domain"),
    ("linux.personality", {}, "linux.personality.domain", "is required"),
    ("linux.personality", {"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]},
     "linux.personality.flags[0]", "unsupported flag"),
    ("process.ioPriority", {"class": "IOPRIO_CLASS_FAST", "priority": 1},
     "process.ioPriority.class", "unknown class"),
    ("process.ioPriority", {"class": "IOPRIO_CLASS_BE", "priority": 8},
     "process.ioPriority.priority", "outside 0..7"),
    ("process.ioPriority", {"class": "IOPRIO_CLASS_BE"}, "process.ioPriority.priority", "is required"),
    ("process.scheduler", {"policy": "SCHED_ISO"}, "process.scheduler.policy", "not implemented"),
    ("process.scheduler", {"policy": "SCHED_WHATEVER"}, "process.scheduler.policy", "unknown policy"),
    ("process.scheduler", {"policy": "SCHED_FIFO"}, "process.scheduler.priority", "is required"),
    ("process.scheduler", {"policy": "SCHED_OTHER", "priority": 5},
     "process.scheduler.priority", "outside 0..0"),
    ("process.scheduler", {"policy": "SCHED_OTHER", "nice": 20}, "process.scheduler.nice", "outside"),
    ("process.scheduler", {"policy": "SCHED_BATCH", "runtime": 100}, "process.scheduler",
     "only for SCHED_DEADLINE"),
    ("process.scheduler", {"policy": "SCHED_OTHER", "flags": ["SCHED_FLAG_FAST"]},
     "process.scheduler.flags[0]", "unknown flag"),
])
def test_bad_confinement_settings_name_the_field(bundle, path, value, field, words):
    top, key = path.split(".")
    bundle.config[top][key] = value
    r = bundle.run()
    assert r.returncode == 1
    assert r.stderr.startswith(f"runner: {field}: "), r.stderr
    assert words in r.stderr
    assert_nothing_left(bundle)


# ---- LSMs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, lsm, marker", [
    ("apparmorProfile", "docker-default", "AppArmor", "/sys/kernel/security/apparmor"),
    ("selinuxLabel", "system_u:system_r:container_t:s0", "SELinux", "/sys/fs/selinux"),
])
def test_lsm_label_is_refused_clearly(bundle, key, value, lsm, marker):
    bundle.process[key] = value
    r = bundle.run()
    assert r.returncode == 1
    assert r.stderr.startswith(f"runner: process.{key}: cannot apply {value!r}: "), r.stderr
    if not os.path.exists(marker):
        assert f"{lsm} is not enabled on this host" in r.stderr
    assert_nothing_left(bundle)


def test_mount_label_without_selinux_is_a_warning_and_the_container_runs(bundle):
    # nothing carries a label on a host without SELinux (crun runs it too; the OCI suite's
    # linux_mount_label); with SELinux it is refused (unit test)
    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("this host has SELinux, where a mount label is refused")
    bundle.linux["mountLabel"] = "system_u:object_r:container_file_t:s0:c1,c2"
    r = bundle.set_args("true").run()
    assert r.returncode == 0, r.stderr
    assert ("linux.mountLabel: 'system_u:object_r:container_file_t:s0:c1,c2' is not applied: "
            "SELinux is not enabled on this host") in r.stderr
    assert_nothing_left(bundle)
