"""linux.memoryPolicy and process.execCPUAffinity in real containers, checked from inside
(/proc/self/numa_maps, /proc/self/status), and their bad values: exit status 1, one line
naming the field, nothing left behind."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, status_fields
from test_exec import running  # noqa: F401 (a fixture)
from test_lifecycle import run_detached

ONLINE_CPUS = open("/sys/devices/system/cpu/online").read().strip()


def numa_policies(text: str) -> set:
    """The policy of every mapping in /proc/self/numa_maps ("bind:0", "prefer (many):0"…),
    as far as the first field that follows it."""
    out = set()
    for line in text.splitlines():
        rest = line.split(" ", 1)[1]
        for marker in (" file=", " anon=", " heap", " stack", " huge", " dirty=", " mapped=",
                       " N0=", " kernelpagesize_kB="):
            rest = rest.split(marker, 1)[0]
        out.add(rest)
    return out


# ---- memoryPolicy --------------------------------------------------------------------------

@pytest.mark.parametrize("policy, shown", [
    (None, "default"),
    ({"mode": "MPOL_DEFAULT"}, "default"),
    ({"mode": "MPOL_BIND", "nodes": "0"}, "bind:0"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
    ({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}, "weighted interleave:0"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0"}, "prefer:0"),
    ({"mode": "MPOL_PREFERRED"}, "local"),
    ({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}, "prefer (many):0"),
    ({"mode": "MPOL_LOCAL"}, "local"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
    ({"mode": "MPOL_PREFERRED", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]},
     "prefer=relative:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}, "bind=balancing:0"),
])
def test_memory_policy_is_what_the_process_runs_with(bundle, policy, shown):
    if policy is not None:
        bundle.linux["memoryPolicy"] = policy
    r = bundle.set_args("cat", "/proc/self/numa_maps").run()
    assert r.returncode == 0, r.stderr
    # every mapping of the process (its binary, heap, stack) follows the process policy
    assert numa_policies(r.stdout) == {shown}, r.stdout


def test_exec_process_gets_the_memory_policy(bundle):
    bundle.linux["memoryPolicy"] = {"mode": "MPOL_INTERLEAVE", "nodes": "0"}
    bundle.sh("sleep 60")
    cid = run_detached(bundle)
    try:
        r = bundle.runner("exec", cid, "cat", "/proc/self/numa_maps", check=True)
        assert numa_policies(r.stdout) == {"interleave:0"}
    finally:
        bundle.runner("delete", "--force", cid)


@pytest.mark.parametrize("policy, field, words", [
    ({"mode": "MPOL_FAST"}, "linux.memoryPolicy.mode", "unknown mode 'MPOL_FAST'"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_FAST"]},
     "linux.memoryPolicy.flags[0]", "unknown flag 'MPOL_F_FAST'"),
    ({"mode": "MPOL_BIND", "nodes": "0-x"}, "linux.memoryPolicy.nodes", "not a list of nodes"),
    ({"mode": "MPOL_BIND"}, "linux.memoryPolicy.nodes", "at least one node"),
    ({"mode": "MPOL_LOCAL", "nodes": "0"}, "linux.memoryPolicy.nodes", "takes no nodes"),
    # the kernel's refusals: a node that does not exist, a flag the mode does not take
    ({"mode": "MPOL_BIND", "nodes": "5"}, "linux.memoryPolicy",
     "setting MPOL_BIND on nodes 5 (the nodes must be online and in the cgroup's "
     "cpuset.mems; online here: 0): Invalid argument"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]},
     "linux.memoryPolicy", "MPOL_F_NUMA_BALANCING goes only with MPOL_BIND"),
])
def test_bad_memory_policy_names_the_field_and_leaves_nothing(bundle, policy, field, words):
    bundle.linux["memoryPolicy"] = policy
    r = bundle.set_args("cat", "/proc/self/numa_maps").run()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"runner: {field}: "), r.stderr
    assert words in r.stderr
    assert_nothing_left(bundle)


# ---- execCPUAffinity -----------------------------------------------------------------------

needs_two_cpus = pytest.mark.skipif(not ONLINE_CPUS.startswith("0-"),
                                    reason="needs CPUs 0 and 1 online")


def exec_with(bundle, cid, affinity, args=("grep", "Cpus_allowed_list", "/proc/self/status"),
              runner_prefix=()):
    proc = {"args": list(args), "cwd": "/", "env": ["PATH=/bin", bundle.mark],
            "execCPUAffinity": affinity}
    path = os.path.join(bundle.path, f"process-{uuid.uuid4().hex[:6]}.json")
    with open(path, "w") as f:
        json.dump(proc, f)
    cmd = list(runner_prefix) + RUNNER + ["--root", bundle.root, "exec", "--process", path, cid]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=REPO)


def only_init_left(bundle, cid):
    r = bundle.runner("ps", "--format", "json", cid, check=True)
    assert len(json.loads(r.stdout)) == 1, r.stdout


@needs_two_cpus
@pytest.mark.parametrize("affinity, cpus", [
    ({"final": "1"}, "1"),
    ({"final": "0"}, "0"),
    ({"initial": "0", "final": "1"}, "1"),
    ({"initial": "1", "final": "0-1"}, "0-1"),
    # without final the kernel decides; here (the container's cpuset has every CPU) the
    # process keeps what initial set
    ({"initial": "1"}, "1"),
    ({"initial": "", "final": ""}, ONLINE_CPUS),
])
def test_exec_cpu_affinity_from_inside(bundle, running, affinity, cpus):
    r = exec_with(bundle, running, affinity)
    assert r.returncode == 0, r.stderr
    assert status_fields(r.stdout)["Cpus_allowed_list"] == cpus


@needs_two_cpus
def test_initial_is_set_before_the_setup_starts(bundle, running):
    """The runner confined to CPU 0 (a cpuset of its own): initial "1" cannot be had, and the
    exec fails on its first step, before it joined anything, naming the field."""
    base = "/sys/fs/cgroup/cpuset"
    if not os.path.exists(os.path.join(base, "tasks")):
        pytest.skip("no cgroup v1 cpuset hierarchy")
    cg = os.path.join(base, "rt-affinity-" + uuid.uuid4().hex[:8])
    os.mkdir(cg)
    try:
        for name, value in (("cpuset.cpus", "0"), ("cpuset.mems", "0")):
            with open(os.path.join(cg, name), "w") as f:
                f.write(value)
        enter = ["sh", "-c", f'echo $$ > {cg}/tasks && exec "$@"', "sh"]
        r = exec_with(bundle, running, {"initial": "1"}, runner_prefix=enter)
        assert r.returncode == 1, (r.stdout, r.stderr)
        assert r.stderr == ("runner: process.execCPUAffinity.initial: running the setup on CPUs 1 "
                            "(at least one must be in the runner's cpuset): Invalid argument\n")
        # and with a CPU it may have, the same runner gets it
        r = exec_with(bundle, running, {"initial": "0-1"}, runner_prefix=enter)
        assert r.returncode == 0, r.stderr
    finally:
        os.rmdir(cg)
    only_init_left(bundle, running)


@pytest.mark.parametrize("affinity, field, words", [
    ({"final": "9"}, "process.execCPUAffinity.final",
     f"CPU 9 is not online on this host (online: {ONLINE_CPUS})"),
    ({"initial": "0,9"}, "process.execCPUAffinity.initial", "CPU 9 is not online"),
    ({"initial": "0-"}, "--process: process.execCPUAffinity.initial", "not a list of CPUs"),
    ({"final": "one"}, "--process: process.execCPUAffinity.final", "not a list of CPUs"),
])
def test_bad_exec_cpu_affinity_names_the_field(bundle, running, affinity, field, words):
    r = exec_with(bundle, running, affinity)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith(f"runner: {field}: ") and words in r.stderr, r.stderr
    only_init_left(bundle, running)


def test_the_init_is_not_given_exec_cpu_affinity(bundle):
    """config.md: "This setting is not applicable to the container's init process"."""
    bundle.process["execCPUAffinity"] = {"initial": "0", "final": "0"}
    r = bundle.set_args("grep", "Cpus_allowed_list", "/proc/self/status").run()
    assert r.returncode == 0, r.stderr
    with open("/proc/self/status") as f:
        ours = status_fields(f.read())["Cpus_allowed_list"]
    assert status_fields(r.stdout)["Cpus_allowed_list"] == ours
    assert r.stderr == ""
    assert_nothing_left(bundle)


@needs_two_cpus
def test_exec_without_process_json_inherits_the_configs_affinity(bundle):
    """`runner exec ID CMD` starts from the config's process, as runc's does: the config's
    execCPUAffinity is for exactly these processes."""
    bundle.process["execCPUAffinity"] = {"final": "1"}
    bundle.sh("grep Cpus_allowed_list /proc/self/status; sleep 60")
    cid = run_detached(bundle)
    try:
        r = bundle.runner("exec", cid, "grep", "Cpus_allowed_list", "/proc/self/status",
                          check=True)
        assert status_fields(r.stdout)["Cpus_allowed_list"] == "1"
    finally:
        bundle.runner("delete", "--force", cid, check=True)
    with open(os.path.join(bundle.path, "out.log")) as f:  # the init's, as the host's
        assert status_fields(f.read())["Cpus_allowed_list"] == ONLINE_CPUS
