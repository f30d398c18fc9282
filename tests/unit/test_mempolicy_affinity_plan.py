"""linux.memoryPolicy, process.execCPUAffinity, linux.intelRdt and linux.mountLabel without
root: the list syntax, the values and places of the MEMPOLICY and AFFINITY ops, and the
errors, each naming its field."""
import pytest

from libcontainer import ops as O, plan as P
from libcontainer import spec
from libcontainer.default_spec import default_config
from libcontainer.errors import ConfigError
from libcontainer.features import features
from libcontainer.security import confine, lsm


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


@pytest.fixture
def two_cpus(tmp_path, monkeypatch):
    """A host whose online CPUs are 0-1, whatever runs the tests."""
    online = tmp_path / "cpus_online"
    online.write_text("0-1\n")
    monkeypatch.setattr(confine, "CPUS_ONLINE", str(online))


def kinds(plan):
    return [O.KIND_NAMES[o[0]] for o in plan.ops]


def config(memory_policy=None, affinity=None):
    c = default_config(terminal=False)
    if memory_policy is not None:
        c["linux"]["memoryPolicy"] = memory_policy
    if affinity is not None:
        c["process"]["execCPUAffinity"] = affinity
    return c


def make(cfg, bundle, **kw):
    return P.make(spec.Spec.parse(cfg, bundle), **kw)


def make_exec(cfg, bundle, proc=None):
    s = spec.Spec.parse(cfg, bundle)
    return P.make_exec(s, proc or s.process, 12345)


def ops_of(plan, kind):
    return [(label, o) for label, o in zip(plan.labels, plan.ops) if o[0] == kind]


# ---- the list syntax ------------------------------------------------------------------------

@pytest.mark.parametrize("text, ids", [
    ("0-3,7", (0, 1, 2, 3, 7)), ("1", (1,)), ("3,1,1-2", (1, 2, 3)), (" 0 - 1 , 3", (0, 1, 3)),
    ("8191", (8191,)),
])
def test_id_list(text, ids):
    assert spec.id_list(text, "f", "CPU", spec.MAX_CPU) == ids


@pytest.mark.parametrize("text, words", [
    ("", "is not a list"), ("0,,1", "is not a list"), ("-1", "is not a list"),
    ("1-", "is not a list"), ("a", "is not a list"), ("0-1a", "is not a list"),
    ("１", "is not a list"), ("3-1", "upwards"), ("8192", "above 8191"),
    ("0-4294967295", "above 8191"),
])
def test_id_list_errors_name_the_field(text, words):
    with pytest.raises(ConfigError, match=r"^process\.execCPUAffinity\.final: ") as e:
        spec.id_list(text, "process.execCPUAffinity.final", "CPU", spec.MAX_CPU)
    assert words in str(e.value)


# ---- execCPUAffinity: parsing ----------------------------------------------------------------

def test_exec_cpu_affinity_is_parsed(bundle):
    s = spec.Spec.parse(config(affinity={"initial": "0", "final": "0-1"}), bundle)
    assert s.process.exec_cpu_affinity == spec.CPUAffinity((0,), (0, 1))
    s = spec.Spec.parse(config(affinity={"final": "1"}), bundle)
    assert s.process.exec_cpu_affinity == spec.CPUAffinity((), (1,))


@pytest.mark.parametrize("affinity", [{}, {"initial": "", "final": ""}, {"final": "  "}])
def test_empty_exec_cpu_affinity_changes_nothing(bundle, affinity):
    assert spec.Spec.parse(config(affinity=affinity), bundle).process.exec_cpu_affinity is None


@pytest.mark.parametrize("affinity, field, words", [
    ({"initial": "0-"}, "process.execCPUAffinity.initial", "not a list of CPUs"),
    ({"final": "x"}, "process.execCPUAffinity.final", "not a list of CPUs"),
    ({"final": 1}, "process.execCPUAffinity.final", "must be a string"),
    ("0-1", "process.execCPUAffinity", "must be an object"),
])
def test_bad_exec_cpu_affinity_names_the_field(bundle, affinity, field, words):
    with pytest.raises(ConfigError, match=rf"^{field}: ") as e:
        spec.Spec.parse(config(affinity=affinity), bundle)
    assert words in str(e.value)


# ---- execCPUAffinity: planning ---------------------------------------------------------------

def test_exec_affinity_initial_first_and_final_right_before_exec(bundle, two_cpus):
    plan = make_exec(config(affinity={"initial": "0", "final": "1"}), bundle)
    k = kinds(plan)
    assert k[0] == "AFFINITY" and k[-2:] == ["AFFINITY", "EXEC"]
    (l0, first), (l1, last) = ops_of(plan, O.AFFINITY)
    assert first[4] == (1).to_bytes(8, "little") and last[4] == (2).to_bytes(8, "little")
    assert l0.startswith("process.execCPUAffinity.initial: ") and "CPUs 0" in l0
    assert l1.startswith("process.execCPUAffinity.final: ") and "CPUs 1" in l1


FILTER = {"defaultAction": "SCMP_ACT_ALLOW",
          "syscalls": [{"names": ["sched_setaffinity"], "action": "SCMP_ACT_ERRNO"}]}


@pytest.mark.parametrize("nnp", [True, False])
def test_final_affinity_comes_before_the_seccomp_filter(bundle, two_cpus, nnp):
    """A filter may refuse sched_setaffinity: the final affinity is set before it loads,
    wherever it loads (late with no_new_privs, before the privilege drop without)."""
    cfg = config(affinity={"final": "1"})
    cfg["linux"]["seccomp"] = FILTER
    cfg["process"]["noNewPrivileges"] = nnp
    k = kinds(make_exec(cfg, bundle))
    assert k.index("AFFINITY") + 1 == k.index("SECCOMP")
    if nnp:
        assert k[-3:] == ["AFFINITY", "SECCOMP", "EXEC"]


def test_exec_affinity_only_final(bundle, two_cpus):
    k = kinds(make_exec(config(affinity={"final": "0-1"}), bundle))
    assert k.count("AFFINITY") == 1 and k[-2:] == ["AFFINITY", "EXEC"]


def test_exec_affinity_only_initial(bundle, two_cpus):
    k = kinds(make_exec(config(affinity={"initial": "1"}), bundle))
    assert k.count("AFFINITY") == 1 and k[0] == "AFFINITY"


def test_the_mask_covers_high_cpus_in_whole_words():
    assert confine._mask((0, 64, 65)) == (1 | 1 << 64 | 1 << 65).to_bytes(16, "little")
    assert confine.list_text((0, 1, 2, 3, 7, 9, 10)) == "0-3,7,9-10"


@pytest.mark.parametrize("affinity, field", [({"initial": "0,9"}, "initial"),
                                             ({"initial": "0", "final": "2-3"}, "final")])
def test_cpu_that_is_not_online_is_an_error(bundle, two_cpus, affinity, field):
    with pytest.raises(ConfigError, match=rf"^process\.execCPUAffinity\.{field}: CPU \d is "
                                          r"not online on this host \(online: 0-1\)"):
        make_exec(config(affinity=affinity), bundle)


def test_the_init_does_not_take_exec_cpu_affinity(bundle, two_cpus):
    """config.md: "This setting is not applicable to the container's init process"; it is
    there for `exec`, so the init takes it quietly."""
    warnings = []
    plan = make(config(affinity={"initial": "0", "final": "1"}), bundle, warn=warnings.append)
    assert "AFFINITY" not in kinds(plan)
    assert warnings == []


# ---- memoryPolicy ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode, number", [
    ("MPOL_DEFAULT", 0), ("MPOL_PREFERRED", 1), ("MPOL_BIND", 2), ("MPOL_INTERLEAVE", 3),
    ("MPOL_LOCAL", 4), ("MPOL_PREFERRED_MANY", 5), ("MPOL_WEIGHTED_INTERLEAVE", 6),
])
def test_every_mode_has_the_kernels_number(bundle, mode, number):
    mp = {"mode": mode}
    if mode not in ("MPOL_DEFAULT", "MPOL_LOCAL"):
        mp["nodes"] = "0"
    (label, o), = ops_of(make(config(mp), bundle), O.MEMPOLICY)
    assert o[7] == number and label.startswith(f"linux.memoryPolicy: setting {mode}")


def test_nodes_become_a_nodemask_and_flags_are_or_ed_into_the_mode(bundle):
    mp = {"mode": "MPOL_INTERLEAVE", "nodes": "0-2,70", "flags": ["MPOL_F_STATIC_NODES"]}
    (label, o), = ops_of(make(config(mp), bundle), O.MEMPOLICY)
    assert o[7] == 3 | 1 << 15
    assert o[4] == (0b111 | 1 << 70).to_bytes(16, "little")
    assert o[8] == 129  # maxnode: one more than the bits given, as the kernel counts
    assert "nodes 0-2,70" in label and "MPOL_F_STATIC_NODES" in label


@pytest.mark.parametrize("flag, bit", [("MPOL_F_NUMA_BALANCING", 13),
                                       ("MPOL_F_RELATIVE_NODES", 14),
                                       ("MPOL_F_STATIC_NODES", 15)])
def test_every_flag_has_the_kernels_number(bundle, flag, bit):
    mp = {"mode": "MPOL_BIND", "nodes": "0", "flags": [flag]}
    (_, o), = ops_of(make(config(mp), bundle), O.MEMPOLICY)
    assert o[7] == 2 | 1 << bit


@pytest.mark.parametrize("mp", [{"mode": "MPOL_DEFAULT"}, {"mode": "MPOL_LOCAL", "nodes": ""},
                                {"mode": "MPOL_PREFERRED"}])
def test_no_nodes_is_a_null_nodemask(bundle, mp):
    (_, o), = ops_of(make(config(mp), bundle), O.MEMPOLICY)
    assert o[4] is None and o[8] == 0


def test_memory_policy_is_set_after_the_mounts_before_the_privilege_drop(bundle):
    k = kinds(make(config({"mode": "MPOL_BIND", "nodes": "0"}), bundle))
    assert k.index("PIVOT") < k.index("MEMPOLICY") < k.index("USER") < k.index("EXEC")


def test_exec_processes_get_the_memory_policy_too(bundle):
    assert "MEMPOLICY" in kinds(make_exec(config({"mode": "MPOL_LOCAL"}), bundle))


@pytest.mark.parametrize("mp, field, words", [
    ({"mode": "MPOL_FAST"}, "linux.memoryPolicy.mode", "unknown mode 'MPOL_FAST'"),
    ({"nodes": "0"}, "linux.memoryPolicy.mode", "is required"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_FAST"]},
     "linux.memoryPolicy.flags[0]", "unknown flag 'MPOL_F_FAST'"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": "MPOL_F_STATIC_NODES"},
     "linux.memoryPolicy.flags", "array"),
    ({"mode": "MPOL_BIND", "nodes": "0",
      "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]},
     "linux.memoryPolicy.flags", "exclude each other"),
    ({"mode": "MPOL_BIND", "nodes": "0-"}, "linux.memoryPolicy.nodes", "not a list of nodes"),
    ({"mode": "MPOL_BIND", "nodes": 0}, "linux.memoryPolicy.nodes", "must be a string"),
    ({"mode": "MPOL_BIND", "nodes": "1024"}, "linux.memoryPolicy.nodes", "above 1023"),
    ({"mode": "MPOL_BIND"}, "linux.memoryPolicy.nodes", "MPOL_BIND needs at least one node"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": ""}, "linux.memoryPolicy.nodes", "at least one node"),
    ({"mode": "MPOL_WEIGHTED_INTERLEAVE"}, "linux.memoryPolicy.nodes", "at least one node"),
    ({"mode": "MPOL_PREFERRED_MANY"}, "linux.memoryPolicy.nodes", "at least one node"),
    ({"mode": "MPOL_DEFAULT", "nodes": "0"}, "linux.memoryPolicy.nodes", "MPOL_DEFAULT takes no nodes"),
    ({"mode": "MPOL_LOCAL", "nodes": "0"}, "linux.memoryPolicy.nodes", "MPOL_LOCAL takes no nodes"),
])
def test_bad_memory_policy_names_the_field(bundle, mp, field, words):
    with pytest.raises(ConfigError) as e:
        make(config(mp), bundle)
    assert str(e.value).startswith(f"{field}: ") and words in str(e.value)


def test_memory_policy_must_be_an_object(bundle):
    with pytest.raises(ConfigError, match=r"^linux\.memoryPolicy: must be an object"):
        spec.Spec.parse(config("MPOL_BIND"), bundle)


# ---- intelRdt, mountLabel, features ----------------------------------------------------------

def test_intel_rdt_is_refused(bundle, monkeypatch):
    cfg = config()
    cfg["linux"]["intelRdt"] = {"closID": "guaranteed_group"}
    with pytest.raises(ConfigError, match=r"^linux\.intelRdt: .*resctrl") as e:
        make(cfg, bundle)
    assert "remove the field" in str(e.value)
    cfg["linux"]["intelRdt"] = None  # null is the field left out
    make(cfg, bundle)


def test_mount_label_is_refused_where_selinux_is_enabled(bundle, monkeypatch):
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: True)
    cfg = config()
    cfg["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0"
    with pytest.raises(ConfigError, match=r"^linux\.mountLabel: cannot apply "
                                          r"'system_u:object_r:container_file_t:s0': ") as e:
        make(cfg, bundle)
    assert "does not support SELinux labels" in str(e.value)


def test_mount_label_without_selinux_is_a_warning(bundle, monkeypatch):
    # nothing to label: the container runs, as crun runs it (the OCI suite's linux_mount_label)
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: False)
    cfg = config()
    cfg["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0"
    warnings = []
    make(cfg, bundle, warn=warnings.append)
    assert warnings == ["linux.mountLabel: 'system_u:object_r:container_file_t:s0' is not "
                        "applied: SELinux is not enabled on this host (/sys/fs/selinux does "
                        "not exist), no mount is labelled"]


def test_features_list_the_spec_memory_policy_modes_and_flags():
    assert features()["linux"]["memoryPolicy"] == {
        "modes": ["MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                  "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"],
        "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]}
    assert features()["linux"]["intelRdt"] == {"enabled": False}
    assert features()["linux"]["selinux"] == {"enabled": False}
