"""plancache: a warm process plans a config once, and a hit is the plan a fresh planning
would give — for this container's cgroup, with whatever changed on the host since (a new
config, /etc/passwd, a proc mount point turned symlink) picked up."""
import os

import pytest

from libcontainer import cgroups, ops as O, plan as P, plancache, spec
from libcontainer.default_spec import default_config
from libcontainer.errors import ConfigError


@pytest.fixture(autouse=True)
def _empty_cache():
    plancache._plans.clear()
    yield
    plancache._plans.clear()


def _bundle(tmp_path, cfg) -> str:
    from libcontainer import jsonio

    (tmp_path / "rootfs" / "etc").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(jsonio.dumps(cfg))
    return str(tmp_path)


def _cfg(**kw):
    cfg = default_config(args=["/bin/true"], terminal=False)
    cfg.update(kw)
    return cfg


def _cgroup(cid: str):
    try:
        return cgroups.Manager.plan(cid)
    except ConfigError:
        pytest.skip("no cgroup hierarchy is mounted here")


def _fresh(sp, cg):
    return P.make(sp, cgroup=cg)


def test_a_hit_is_what_planning_gives_and_a_copy(tmp_path):
    sp = spec.load(_bundle(tmp_path, _cfg()))
    cg = _cgroup("pc-a")
    first = plancache.make(sp, cgroup=cg)
    assert len(plancache._plans) == 1
    second = plancache.make(sp, cgroup=cg)
    assert second.ops == first.ops == _fresh(sp, cg).ops
    assert second.labels == first.labels and second.env == first.env
    # the caller changes its plan (use_init, the netns made ahead): not the cached one
    P.use_init(second, 5)
    second.cgroup_files.append("/x/tasks")
    third = plancache.make(sp, cgroup=cg)
    assert third.ops == first.ops and third.cgroup_files == []


def test_each_container_gets_its_own_cgroup_mounts(tmp_path):
    sp = spec.load(_bundle(tmp_path, _cfg()))
    a, b = _cgroup("pc-a"), _cgroup("pc-b")
    plancache.make(sp, cgroup=a)
    hit = plancache.make(sp, cgroup=b)
    assert hit.ops == _fresh(sp, b).ops
    binds = [o[2] for o in hit.ops if o[0] == O.MOUNT and o[2] and "pc-" in o[2]]
    assert binds and all(s.endswith("/runner-pc-b") for s in binds)


def test_a_changed_config_is_planned_anew(tmp_path):
    b = _bundle(tmp_path, _cfg(hostname="one"))
    cg = _cgroup("pc-a")
    plancache.make(spec.load(b), cgroup=cg)
    _bundle(tmp_path, _cfg(hostname="two"))
    plan = plancache.make(spec.load(b), cgroup=cg)
    assert [o[4] for o in plan.ops if o[0] == O.SETHOSTNAME] == ["two"]


def test_a_changed_passwd_is_read_again(tmp_path):
    b = _bundle(tmp_path, _cfg())
    passwd = tmp_path / "rootfs" / "etc" / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/sh\n")
    sp, cg = spec.load(b), _cgroup("pc-a")
    assert "HOME=/root" in plancache.make(sp, cgroup=cg).env
    passwd.write_text("root:x:0:0:root:/home/admin:/bin/sh\n")
    assert "HOME=/home/admin" in plancache.make(sp, cgroup=cg).env
    passwd.unlink()
    assert "HOME=/" in plancache.make(sp, cgroup=cg).env


def test_a_proc_mount_point_turned_symlink_is_refused_again(tmp_path):
    b = _bundle(tmp_path, _cfg())
    sp, cg = spec.load(b), _cgroup("pc-a")
    plancache.make(sp, cgroup=cg)
    os.symlink("/", tmp_path / "rootfs" / "proc")
    with pytest.raises(ConfigError) as e:
        plancache.make(sp, cgroup=cg)
    assert e.value.field.endswith(".destination")


def test_plans_that_warned_or_wait_or_have_hooks_are_not_kept(tmp_path):
    cfg = _cfg()
    cfg["process"]["capabilities"]["effective"].append("CAP_SYS_ADMIN")  # not permitted
    sp, cg = spec.load(_bundle(tmp_path, cfg)), _cgroup("pc-a")
    said = []
    plancache.make(sp, cgroup=cg, warn=said.append)
    plancache.make(sp, cgroup=cg, warn=said.append)
    assert len(said) == 2 and not plancache._plans  # warned each time: never from the cache
    sp = spec.load(_bundle(tmp_path, _cfg()))
    plancache.make(sp, cgroup=cg, start_fifo_fd=7)
    plancache.make(sp, cgroup=cg, hooks={"poststart": []})
    assert not plancache._plans


def test_a_seccomp_profile_is_kept_and_lsm_or_mempolicy_are_not(tmp_path):
    cfg = _cfg()
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    sp, cg = spec.load(_bundle(tmp_path, cfg)), _cgroup("pc-a")
    first = plancache.make(sp, cgroup=cg)
    assert len(plancache._plans) == 1 and any(o[0] == O.SECCOMP for o in first.ops)
    assert plancache.make(sp, cgroup=cg).ops == first.ops == _fresh(sp, cg).ops
    plancache._plans.clear()
    cfg["linux"]["memoryPolicy"] = {"mode": "MPOL_DEFAULT"}
    sp = spec.load(_bundle(tmp_path, cfg))
    assert not plancache._cacheable(sp, {})
    cfg = _cfg()
    cfg["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0"
    assert not plancache._cacheable(spec.load(_bundle(tmp_path, cfg)), {})


def test_every_host_look_is_rechecked():
    """The cache is right only while planning looks at the host in no other place than
    _looks checks again, plancache._cacheable excludes, or a hit plans again (the cgroup
    mounts): a new look in a planner must be added here and there."""
    import inspect
    import re

    from libcontainer import namespaces, process, rootfs
    from libcontainer.security import confine, lsm

    pattern = (r"os\.path\.(?:exists|isdir|isfile|islink|lexists|realpath|getsize)\("
               r"|os\.(?:stat|lstat|fstat|access|listdir|scandir|readlink|geteuid|getuid)\("
               r"|\bopen\(|own_sets\(|_host_hard_limit\(|_has_effective_cap\("
               r"|in_user_namespace\(|rootless\(|detect\(")
    looks = {m.__name__.rsplit(".", 1)[1]: sorted(re.findall(pattern, inspect.getsource(m)))
             for m in (P, namespaces, rootfs, process, confine, lsm)}
    assert looks == {
        # intelRdt (not cached)
        "plan": ["open(", "open("],
        # rootless (the uid is a look); write_id_maps is the parent's, not planning
        "namespaces": ["open(", "os.geteuid(", "os.geteuid(", "os.geteuid("],
        # bind sources, proc/sys mount points (looks); idmaps and devices in a user
        # namespace (not cached); the cgroup mounts (planned again on a hit)
        "rootfs": ["detect(", "in_user_namespace(", "in_user_namespace(", "open(",
                   "os.geteuid(", "os.lstat(", "os.readlink(", "os.stat(", "os.stat(",
                   "rootless(", "rootless("],
        # oomScoreAdj, fds handed on (not cached); rlimits, capabilities, HOME (looks)
        "process": ["_has_effective_cap(", "_has_effective_cap(", "_has_effective_cap(",
                    "_host_hard_limit(", "_host_hard_limit(", "open(", "open(",
                    "os.fstat(", "os.path.realpath(", "os.path.realpath(", "own_sets("],
        # the online CPUs and NUMA nodes (memoryPolicy: not cached; execCPUAffinity: exec)
        "confine": ["open("],
        # AppArmor and SELinux (labels: not cached)
        "lsm": ["open(", "os.path.exists(", "os.path.isdir("],
    }, looks
