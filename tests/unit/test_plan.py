"""Planning without root: mount option parsing, capability masks, and the plan's ops for
a given config (kinds, order, labels naming config fields)."""
import os
import stat

import pytest

from libcontainer import ops as O, plan as P
from libcontainer import rootfs, spec
from libcontainer.default_spec import default_config
from libcontainer.errors import ConfigError
from libcontainer.security import capabilities


# ---- mount options -------------------------------------------------------------------

def test_flag_options_set_and_clear_in_order():
    mo = rootfs.parse_options(["ro", "nosuid", "nodev", "noexec", "relatime", "rw"], "o")
    assert mo.flags == rootfs.MS_NOSUID | rootfs.MS_NODEV | rootfs.MS_NOEXEC | rootfs.MS_RELATIME
    assert rootfs.parse_options(["rw", "ro"], "o").flags == rootfs.MS_RDONLY
    assert rootfs.parse_options(["rbind"], "o").flags == rootfs.MS_BIND | rootfs.MS_REC
    assert rootfs.parse_options(["defaults"], "o").flags == 0


def test_propagation_options():
    mo = rootfs.parse_options(["rprivate"], "o")
    assert (mo.flags, mo.propagation) == (0, rootfs.MS_PRIVATE | rootfs.MS_REC)
    assert rootfs.parse_options(["shared"], "o").propagation == rootfs.MS_SHARED
    assert rootfs.parse_options(["runbindable"], "o").propagation == rootfs.MS_UNBINDABLE | rootfs.MS_REC


def test_recursive_options_become_mount_setattr_attributes():
    mo = rootfs.parse_options(["rro", "rnosuid", "rnoatime"], "o")
    assert mo.attr_set == rootfs.ATTR_RDONLY | rootfs.ATTR_NOSUID | rootfs.ATTR_NOATIME
    assert mo.attr_clr & rootfs.ATTR_ATIME_MASK
    mo = rootfs.parse_options(["rro", "rrw"], "o")
    assert mo.attr_set & rootfs.ATTR_RDONLY == 0 and mo.attr_clr & rootfs.ATTR_RDONLY


def test_unknown_options_are_filesystem_data():
    mo = rootfs.parse_options(["size=1m", "mode=755", "nosuid"], "o")
    assert mo.data == ["size=1m", "mode=755"]


def test_unsupported_option_names_the_field():
    with pytest.raises(ConfigError, match=r"^mounts\[2\]\.options\[1\]: .*copy-symlink"):
        rootfs.parse_options(["bind", "copy-symlink"], "mounts[2].options")


def test_idmap_options():
    assert rootfs.parse_options(["bind", "idmap"], "o").idmap == "idmap"
    assert rootfs.parse_options(["rbind", "ridmap"], "o").idmap == "ridmap"
    with pytest.raises(ConfigError, match=r"^o\[2\]: idmap and ridmap exclude each other"):
        rootfs.parse_options(["bind", "idmap", "ridmap"], "o")


# ---- capabilities ----------------------------------------------------------------------

def test_capability_masks():
    assert capabilities.mask(["CAP_CHOWN"], "f") == 1
    assert capabilities.mask(["CAP_KILL", "cap_net_bind_service", "SYS_ADMIN"], "f") == \
        1 << 5 | 1 << 10 | 1 << 21
    assert capabilities.mask([], "f") == 0
    assert capabilities.names_of(1 << 5 | 1 << 10) == ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    assert capabilities.all_caps() == (1 << (capabilities.last_cap() + 1)) - 1


def test_unknown_capability_is_skipped_with_a_warning_naming_the_index():
    warnings = []
    bits = capabilities.mask(["CAP_KILL", "CAP_NOSUCH"], "process.capabilities.bounding",
                             warnings.append)
    assert bits == 1 << 5
    assert warnings == ["process.capabilities.bounding[1]: unknown capability 'CAP_NOSUCH'; "
                        "skipped"]


def test_capability_newer_than_the_kernel_is_skipped_with_a_warning(monkeypatch):
    monkeypatch.setattr(capabilities, "_last", 39)  # pretend CAP_CHECKPOINT_RESTORE (40) is new
    warnings = []
    bits = capabilities.mask(["CAP_KILL", "CAP_CHECKPOINT_RESTORE"], "process.capabilities.effective",
                             warnings.append)
    assert bits == 1 << 5
    assert len(warnings) == 1
    assert "process.capabilities.effective[1]" in warnings[0] and "CAP_CHECKPOINT_RESTORE" in warnings[0]


# ---- plans ---------------------------------------------------------------------------

@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "rootfs" / "etc").mkdir()
    (tmp_path / "rootfs" / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n")
    return str(tmp_path)


def make(cfg, bundle, **kw):
    return P.make(spec.Spec.parse(cfg, bundle), **kw)


def kinds(plan):
    return [O.KIND_NAMES[o[0]] for o in plan.ops]


def test_default_plan_shape(bundle):
    plan = make(default_config(terminal=False), bundle)
    k = kinds(plan)
    # namespaces are clone flags; the mount steps come first, pivot, then the process
    assert plan.clone_flags == (0x20000000 | 0x40000000 | 0x08000000 | 0x04000000 | 0x00020000)
    assert not plan.new_timens and plan.joins == []
    assert k.index("ROOT_PROPAGATION") < min(i for i, x in enumerate(k) if x in ("MOUNT", "MKNOD"))
    assert k.index("PIVOT") > max(i for i, x in enumerate(k) if x in ("MOUNT", "MKNOD", "SYMLINK"))
    # read-only paths before masks, as runc
    assert k.index("PIVOT") < k.index("READONLY") < k.index("MASK") < k.index("ROOT_READONLY")
    assert k[-1] == "EXEC"
    assert k.index("BOUNDING") < k.index("USER") < k.index("CAPS") < k.index("NO_NEW_PRIVS") < k.index("EXEC")
    assert "LOOPBACK_UP" in k
    assert plan.argv == ("sh",)
    assert "HOME=/root" in plan.env
    assert plan.path_env.startswith("/usr/local/sbin")


def test_mount_ops_are_in_config_order_with_labels(bundle):
    cfg = default_config(terminal=False)
    plan = make(cfg, bundle)
    mounts = [(lab, o) for lab, o in zip(plan.labels, plan.ops) if o[0] == O.MOUNT]
    assert [o[1] for _, o in mounts[:6]] == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys"]
    assert mounts[0][0].startswith("mounts[0]:")
    shm = mounts[3][1]
    assert shm[3] == "tmpfs" and shm[4] == "mode=1777,size=65536k"
    assert shm[5] == rootfs.MS_NOSUID | rootfs.MS_NOEXEC | rootfs.MS_NODEV


def test_bind_mount_of_a_file_is_planned_as_a_file(bundle, tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    cfg = default_config(terminal=False)
    cfg["mounts"] = [{"destination": "/etc/f", "type": "none", "source": str(f),
                      "options": ["rbind", "ro"]},
                     {"destination": "/d", "source": "rootfs", "options": ["bind"]}]
    plan = make(cfg, bundle)
    ops = [o for o in plan.ops if o[0] == O.MOUNT]
    assert ops[0][1:4] == ("/etc/f", str(f), None)
    assert ops[0][5] == rootfs.MS_BIND | rootfs.MS_REC | rootfs.MS_RDONLY
    assert ops[0][7] == 1  # a file
    # a relative bind source is relative to the bundle
    assert ops[1][2] == os.path.join(bundle, "rootfs") and ops[1][7] == 0


def test_devices_are_mknod_without_a_user_namespace(bundle):
    cfg = default_config(terminal=False)
    cfg["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                                "fileMode": 0o600, "uid": 1, "gid": 2}]
    plan = make(cfg, bundle)
    nodes = {o[1]: o for o in plan.ops if o[0] == O.MKNOD}
    assert set(nodes) == {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                          "/dev/tty", "/dev/fuse"}
    fuse = nodes["/dev/fuse"]
    assert fuse[7:11] == (stat.S_IFCHR | 0o600, os.makedev(10, 229), 1, 2)
    links = {o[1]: o[2] for o in plan.ops if o[0] == O.SYMLINK}
    assert links == {"/dev/fd": "/proc/self/fd", "/dev/stdin": "/proc/self/fd/0",
                     "/dev/stdout": "/proc/self/fd/1", "/dev/stderr": "/proc/self/fd/2",
                     "/dev/ptmx": "pts/ptmx"}


def test_user_namespace_binds_host_devices_and_maps_ids(bundle):
    cfg = default_config(terminal=False)
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    plan = make(cfg, bundle)
    assert plan.uid_map == "0 100000 65536\n" and plan.gid_map == "0 200000 65536\n"
    assert O.MKNOD not in [o[0] for o in plan.ops]
    binds = [o[1] for o in plan.ops if o[0] == O.BIND_DEV]
    assert "/dev/null" in binds and all(o[2] == o[1] for o in plan.ops if o[0] == O.BIND_DEV)


def test_user_not_mapped_is_an_error(bundle):
    cfg = default_config(terminal=False)
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]
    cfg["process"]["user"] = {"uid": 1000, "gid": 0}
    with pytest.raises(ConfigError, match=r"^process\.user\.uid: 1000 is not mapped"):
        make(cfg, bundle)


def test_joined_namespaces_user_first_with_labels(bundle):
    cfg = default_config(terminal=False)
    cfg["linux"]["namespaces"][1] = {"type": "network", "path": "/proc/self/ns/net"}
    cfg["linux"]["namespaces"].append({"type": "user", "path": "/proc/self/ns/user"})
    plan = make(cfg, bundle)
    assert plan.joins == [(0x10000000, "/proc/self/ns/user"), (0x40000000, "/proc/self/ns/net")]
    assert plan.label(-1) == "linux.namespaces[5]: joining /proc/self/ns/user"
    assert plan.label(-2) == "linux.namespaces[1]: joining /proc/self/ns/net"
    assert plan.clone_flags & 0x40000000 == 0
    assert "LOOPBACK_UP" not in kinds(plan)  # a joined network namespace is left as it is


def test_time_namespace_offsets_text(bundle):
    cfg = default_config(terminal=False)
    cfg["linux"]["namespaces"].append({"type": "time"})
    cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 10, "nanosecs": 5}}
    plan = make(cfg, bundle)
    assert plan.new_timens and plan.time_offsets == "boottime 10 5\n"
    assert plan.clone_flags & 0x80 == 0  # CLONE_NEWTIME is unshared, not cloned


def test_process_ops_carry_the_config(bundle):
    cfg = default_config(terminal=False)
    p = cfg["process"]
    p["user"] = {"uid": 1000, "gid": 1000, "umask": 0o027, "additionalGids": [5, 6]}
    p["capabilities"] = {"bounding": ["CAP_KILL", "CAP_CHOWN"], "effective": ["CAP_KILL"],
                         "permitted": ["CAP_KILL", "CAP_CHOWN"], "inheritable": ["CAP_KILL"],
                         "ambient": ["CAP_KILL"]}
    p["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 20}]
    p["oomScoreAdj"] = 1000
    p["cwd"] = "/work"
    cfg["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    plan = make(cfg, bundle)
    by_kind = {}
    for label, o in zip(plan.labels, plan.ops):
        by_kind.setdefault(O.KIND_NAMES[o[0]], []).append((label, o))
    (_, user), = by_kind["USER"]
    assert user[7:9] == (1000, 1000) and plan.gids == (5, 6)
    (_, caps), = by_kind["CAPS"]
    assert caps[8:12] == (1 << 5, 1 << 5 | 1 << 0, 1 << 5, 1 << 5)
    (_, bnd), = by_kind["BOUNDING"]
    assert bnd[7] == 1 << 5 | 1 << 0
    (_, um), = by_kind["UMASK"]
    assert um[7] == 0o027
    (label, rl), = by_kind["RLIMIT"]
    assert label.startswith("process.rlimits[0]") and rl[7:10] == (7, 10, 20)
    writes = {o[1]: (label, o) for label, o in by_kind["WRITE"]}
    assert writes["/proc/self/oom_score_adj"][1][4] == "1000"
    assert writes["/proc/sys/net/ipv4/ip_forward"][0].startswith("linux.sysctl.net.ipv4.ip_forward")
    # tried as root before the uid switch, and again after it if that was refused
    assert [(o[1], o[7]) for _, o in by_kind["CHDIR"]] == [("/work", 1), ("/work", 2)]
    assert "/work" in [o[1] for _, o in by_kind["MKDIR"]]
    assert "HOME=/home/u" in plan.env
    assert "NO_NEW_PRIVS" in by_kind


def test_no_pivot_flag_and_root_propagation(bundle):
    cfg = default_config(terminal=False)
    cfg["linux"]["rootfsPropagation"] = "rshared"
    plan = make(cfg, bundle, no_pivot=True)
    pivot = [o for o in plan.ops if o[0] == O.PIVOT][0]
    assert pivot[5] == 1
    # "/" made rshared before the mounts, its rootfs's mount private (rootfs.root_propagation)
    prep = [o for o in plan.ops if o[0] == O.ROOT_PROPAGATION][0]
    assert (prep[5], prep[7]) == (rootfs.MS_SHARED | rootfs.MS_REC, rootfs.MS_PRIVATE)
    # and the container's "/" rshared once pivoted: after the masks and read-only paths
    after = [o for o in plan.ops[plan.ops.index(pivot):] if o[0] == O.MOUNT and o[1] == "/"]
    assert len(after) == 1 and after[0][6] == rootfs.MS_SHARED | rootfs.MS_REC
    assert (after[0][2], after[0][3], after[0][5]) == (None, None, 0)
    last_ro = max(i for i, o in enumerate(plan.ops) if o[0] in (O.MASK, O.READONLY))
    assert plan.ops.index(after[0]) > last_ro


@pytest.mark.parametrize("key,drop", [("kernel.panic", None), ("net.core.somaxconn", "network"),
                                      ("kernel.msgmax", "ipc"), ("kernel.domainname", "uts")])
def test_sysctl_checks(bundle, key, drop):
    cfg = default_config(terminal=False)
    if drop:
        cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != drop]
        cfg.pop("hostname")
    cfg["linux"]["sysctl"] = {key: "1"}
    with pytest.raises(ConfigError, match=rf"^linux\.sysctl\.{key}:"):
        make(cfg, bundle)


def test_describe_is_plain_data(bundle):
    plan = make(default_config(terminal=False), bundle)
    d = plan.describe()
    assert len(d) == len(plan.ops)
    assert d[-1][0] == "EXEC" and d[-1][1] == 'exec: "sh"'


def test_op_kinds_match_the_shim_header():
    """plan.py mirrors enum rc_op_kind: a number that differs would run the wrong syscall."""
    import re

    with open(os.path.join(os.path.dirname(__file__), "..", "..", "csrc", "shim.h")) as f:
        header = dict((name, int(num)) for name, num in
                      re.findall(r"RC_OP_(\w+) = (\d+)", f.read()))
    assert header == {name: num for num, name in O.KIND_NAMES.items()}


# ---- id-mapped mounts -------------------------------------------------------------------

IDMAP = [{"containerID": 0, "hostID": 5000, "size": 10}]


def _with_mount(bundle, tmp_path, **entry):
    cfg = default_config(terminal=False)
    m = {"destination": "/data", "type": "bind", "source": str(tmp_path), "options": ["rbind"]}
    m.update(entry)
    cfg["mounts"].append(m)
    return cfg


def test_idmapped_mount_plan(bundle, tmp_path):
    cfg = _with_mount(bundle, tmp_path, options=["rbind", "ridmap"], uidMappings=IDMAP,
                      gidMappings=IDMAP)
    plan = make(cfg, bundle)
    mount = next(o for o in plan.ops if o[0] == O.MOUNT and o[1] == "/data")
    assert mount[11] == 1  # e: idmaps[0] + 1
    src, uid_map, gid_map, rec, ridmap, label = plan.idmaps[0]
    assert (src, uid_map, gid_map, rec, ridmap) == (str(tmp_path), "0 5000 10\n",
                                                    "0 5000 10\n", True, True)
    assert label.startswith(f"mounts[{len(cfg['mounts']) - 1}]: ")
    # other mounts stay plain
    assert [o[11] for o in plan.ops if o[0] == O.MOUNT].count(0) == \
        len([o for o in plan.ops if o[0] == O.MOUNT]) - 1


def test_idmap_without_mappings_takes_the_containers(bundle, tmp_path):
    cfg = _with_mount(bundle, tmp_path, options=["bind", "idmap"])
    cfg["linux"]["namespaces"].append({"type": "user"})
    cfg["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    cfg["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    plan = make(cfg, bundle)
    assert plan.idmaps[0][1:5] == ("0 100000 65536\n", "0 200000 65536\n", False, False)


@pytest.mark.parametrize("entry,field,words", [
    ({"options": ["bind", "idmap"]}, "options", "no user namespace mappings"),
    ({"type": "tmpfs", "source": "tmpfs", "options": ["idmap"], "uidMappings": IDMAP,
      "gidMappings": IDMAP}, "options", "only for bind mounts"),
    ({"uidMappings": IDMAP}, "gidMappings", "go together"),
    ({"gidMappings": IDMAP}, "uidMappings", "go together"),
    ({"uidMappings": [dict(IDMAP[0], size=0)], "gidMappings": IDMAP}, "uidMappings[0].size",
     "at least 1"),
])
def test_idmap_errors_name_the_field(bundle, tmp_path, entry, field, words):
    cfg = _with_mount(bundle, tmp_path, **entry)
    with pytest.raises(ConfigError) as e:
        make(cfg, bundle)
    assert e.value.field == f"mounts[{len(cfg['mounts']) - 1}].{field}" and words in str(e.value)


def test_idmap_needs_root(bundle, tmp_path, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    cfg = _with_mount(bundle, tmp_path, options=["bind"], uidMappings=IDMAP, gidMappings=IDMAP)
    cfg["linux"]["namespaces"].append({"type": "user"})
    own = [{"containerID": 0, "hostID": 1000, "size": 1}]
    cfg["linux"]["uidMappings"] = cfg["linux"]["gidMappings"] = own
    with pytest.raises(ConfigError, match="need a runtime running as root"):
        make(cfg, bundle)


# ---- a `type: cgroup` mount without a cgroup namespace ---------------------------------

class _FakeManager:
    def __init__(self, paths: dict, unified: str):
        self.paths, self.unified = paths, unified


@pytest.mark.parametrize("layout", ["v2", "hybrid"])
def test_cgroup_mount_shows_the_containers_own_cgroups(bundle, monkeypatch, layout):
    """Each hierarchy's root inside is the container's cgroup (issue 11, point 2): on a
    pure v2 host the container's directory is bound, not the whole tree."""
    from libcontainer import cgroups

    if layout == "v2":
        host = cgroups.Host({}, "/sys/fs/cgroup", {"": "/user.slice"})
        mgr = _FakeManager({}, "/sys/fs/cgroup/user.slice/c1")
    else:
        host = cgroups.Host({"cpu": "/sys/fs/cgroup/cpu,cpuacct",
                             "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
                             "memory": "/sys/fs/cgroup/memory"}, "/sys/fs/cgroup/unified",
                            {"cpu": "/", "cpuacct": "/", "memory": "/", "": "/"})
        mgr = _FakeManager({"cpu": "/sys/fs/cgroup/cpu,cpuacct/c1",
                            "cpuacct": "/sys/fs/cgroup/cpu,cpuacct/c1",
                            "memory": "/sys/fs/cgroup/memory/c1"}, "/sys/fs/cgroup/unified/c1")
    monkeypatch.setattr(cgroups.host, "_host", host)
    cfg = default_config(terminal=False)
    cfg["linux"]["namespaces"] = [n for n in cfg["linux"]["namespaces"] if n["type"] != "cgroup"]
    cfg["mounts"] = [m for m in cfg["mounts"] if m["type"] != "cgroup"]
    cfg["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                          "options": ["ro", "nosuid"]})
    plan = make(cfg, bundle, cgroup=mgr)
    cg = [(o[0], o[1], o[2]) for o in plan.ops
          if o[1] and o[1].startswith("/sys/fs/cgroup") and o[0] in (O.MOUNT, O.SYMLINK)]
    if layout == "v2":
        assert cg == [(O.MOUNT, "/sys/fs/cgroup", "/sys/fs/cgroup/user.slice/c1")]
    else:
        assert cg == [(O.MOUNT, "/sys/fs/cgroup", "tmpfs"),
                      (O.MOUNT, "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/c1"),
                      (O.MOUNT, "/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/c1"),
                      (O.MOUNT, "/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/c1"),
                      (O.SYMLINK, "/sys/fs/cgroup/cpu", "cpu,cpuacct"),
                      (O.SYMLINK, "/sys/fs/cgroup/cpuacct", "cpu,cpuacct"),
                      (O.MOUNT, "/sys/fs/cgroup", None)]  # the read-only remount
