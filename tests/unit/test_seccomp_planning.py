"""Where the seccomp load lands in the plan, and that configs without seccomp never import
libseccomp's side of the runtime."""
import json
import os
import subprocess
import sys

import pytest

from libcontainer import ops as O, plan as P
from libcontainer import spec as specmod
from libcontainer.default_spec import default_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FILTER = {"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}


@pytest.fixture
def make(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("planning without a user namespace needs root")
    (tmp_path / "rootfs").mkdir()

    def make(config, **kw):
        with open(tmp_path / "config.json", "w") as f:
            json.dump(config, f)
        return P.make(specmod.load(str(tmp_path)), warn=lambda m: None, **kw)
    return make


def kinds(plan):
    return [O.KIND_NAMES[o[0]] for o in plan.ops]


def config(**process):
    c = default_config(terminal=False)
    c["process"].update(process)
    c["linux"]["seccomp"] = json.loads(json.dumps(FILTER))
    return c


def test_with_no_new_privs_the_filter_is_the_last_step_before_exec(make):
    k = kinds(make(config(noNewPrivileges=True), start_fifo_fd=9))
    assert k[-3:] == ["WAIT_START", "SECCOMP", "EXEC"]
    assert k.index("NO_NEW_PRIVS") < k.index("SECCOMP")


def test_without_no_new_privs_cap_sys_admin_is_held_until_the_late_filter(make):
    # loading needs CAP_SYS_ADMIN: the first CAPS op keeps it, the filter loads as late as
    # with no_new_privs (nothing of the runtime's setup runs under it), then the config's
    # sets; after the filter only capset and prctl run, which every allowlist has
    plan = make(config(noNewPrivileges=False), start_fifo_fd=9)
    k = kinds(plan)
    assert k[-4:] == ["WAIT_START", "SECCOMP", "CAPS", "EXEC"]
    assert k.index("USER") < k.index("CAPS") < len(k) - 1 - k[::-1].index("CHDIR")
    admin = 1 << 21
    held, final = (plan.ops[i] for i, kind in enumerate(k) if kind == "CAPS")
    assert held[8] & admin and held[9] & admin  # effective, permitted
    assert not final[8] & admin and not final[9] & admin


def test_without_no_new_privs_but_keeping_cap_sys_admin_it_stays_late(make):
    caps = {s: ["CAP_SYS_ADMIN"] for s in ("bounding", "effective", "permitted")}
    k = kinds(make(config(noNewPrivileges=False, capabilities=caps)))
    assert k[-2:] == ["SECCOMP", "EXEC"]


def test_a_notifying_filter_is_loaded_before_waiting_for_start(make):
    c = config(noNewPrivileges=True)
    c["linux"]["seccomp"]["listenerPath"] = "/run/agent.sock"
    c["linux"]["seccomp"]["syscalls"][0]["action"] = "SCMP_ACT_NOTIFY"
    plan = make(c, start_fifo_fd=9)
    k = kinds(plan)
    assert k[-3:] == ["SECCOMP", "WAIT_START", "EXEC"]
    op = plan.ops[k.index("SECCOMP")]
    assert op[7] == 1  # a: send the listener
    assert plan.seccomp_notify and plan.seccomp_listener == "/run/agent.sock"


def test_personality_ioprio_and_scheduler_come_before_the_privilege_drop(make):
    c = config(ioPriority={"class": "IOPRIO_CLASS_BE", "priority": 1},
               scheduler={"policy": "SCHED_BATCH"})
    c["linux"]["personality"] = {"domain": "LINUX32"}
    k = kinds(make(c))
    for kind in ("PERSONALITY", "IOPRIO", "SCHED"):
        assert k.index(kind) < k.index("USER")


def test_no_seccomp_means_no_libseccomp_on_the_hot_path(tmp_path):
    (tmp_path / "rootfs").mkdir()
    with open(tmp_path / "config.json", "w") as f:
        json.dump(default_config(terminal=False), f)
    code = ("import sys; from libcontainer import plan, spec; "
            f"p = plan.make(spec.load({str(tmp_path)!r})); "
            "bad = [m for m in ('libcontainer.security.seccomp', 'libcontainer.security.confine', "
            "'json', 're', 'socket', 'struct') if m in sys.modules]; print(bad)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    if os.geteuid() != 0:
        pytest.skip("planning without a user namespace needs root")
    assert r.stdout == "[]\n", r.stderr
