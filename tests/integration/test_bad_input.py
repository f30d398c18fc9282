"""Bad input to `runner run`: one clear line naming the field or argument, exit status 1
(127 for a missing executable), and nothing left behind — no state dir, cgroup, mount or
process of that container."""
import os

import pytest
from conftest import assert_nothing_left, new_id, state_entries


def _drop_ns(kind):
    def change(b):
        b.linux["namespaces"] = [n for n in b.linux["namespaces"] if n["type"] != kind]
    return change


def _set(path, value):
    def change(b):
        obj = b.config
        for key in path[:-1]:
            obj = obj[key]
        obj[path[-1]] = value
    return change


def _append(path, value):
    def change(b):
        obj = b.config
        for key in path:
            obj = obj[key]
        obj.append(value)
    return change


CASES = {
    "unknown namespace type": (_append(["linux", "namespaces"], {"type": "foo"}),
                               "linux.namespaces[5].type", 'unknown namespace'),
    "namespace given twice": (_append(["linux", "namespaces"], {"type": "pid"}),
                              "linux.namespaces[5].type", "twice"),
    "namespace path missing": (_append(["linux", "namespaces"],
                                       {"type": "cgroup", "path": "/proc/no/such/ns"}),
                               "linux.namespaces[5].path", "/proc/no/such/ns"),
    "namespace path relative": (_append(["linux", "namespaces"],
                                        {"type": "cgroup", "path": "proc/1/ns/cgroup"}),
                                "linux.namespaces[5].path", "absolute"),
    "uid map without user namespace": (_set(["linux", "uidMappings"],
                                            [{"containerID": 0, "hostID": 1000, "size": 1}]),
                                       "linux.uidMappings", "user namespace"),
    "gid map without user namespace": (_set(["linux", "gidMappings"],
                                            [{"containerID": 0, "hostID": 1000, "size": 1}]),
                                       "linux.gidMappings", "user namespace"),
    "relative mount destination": (_append(["mounts"], {"destination": "tmp/x", "type": "tmpfs",
                                                        "source": "tmpfs"}),
                                   "mounts[7].destination", "absolute"),
    "mount without type": (_append(["mounts"], {"destination": "/x", "source": "tmpfs"}),
                           "mounts[7].type", "required"),
    "bind source missing": (_append(["mounts"], {"destination": "/x", "type": "bind",
                                                 "source": "/no/such/dir", "options": ["bind"]}),
                            "mounts[7].source", "/no/such/dir"),
    "unsupported mount option": (_append(["mounts"], {"destination": "/x", "type": "bind",
                                                      "source": "/tmp", "options": ["bind", "copy-symlink"]}),
                                 "mounts[7].options[1]", "copy-symlink"),
    "idmap without mappings or user namespace": (
        _append(["mounts"], {"destination": "/x", "type": "bind", "source": "/tmp",
                             "options": ["bind", "idmap"]}),
        "mounts[7].options", "no user namespace mappings"),
    "missing args": (_set(["process", "args"], []), "process.args", "program"),
    "args not strings": (_set(["process", "args"], ["sh", 1]), "process.args[1]", "string"),
    "relative cwd": (_set(["process", "cwd"], "tmp"), "process.cwd", "absolute"),
    "bad env": (_append(["process", "env"], "NOEQUALS"), "process.env[3]", "KEY=value"),
    "unknown rlimit": (_set(["process", "rlimits"], [{"type": "RLIMIT_NOSUCH", "soft": 1,
                                                      "hard": 1}]),
                       "process.rlimits[0].type", "RLIMIT_NOSUCH"),
    "rlimit soft above hard": (_set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE",
                                                               "soft": 10, "hard": 5}]),
                               "process.rlimits[0]", "soft"),
    "uid not a number": (_set(["process", "user"], {"uid": "root", "gid": 0}),
                         "process.user.uid", "integer"),
    "oomScoreAdj out of range": (_set(["process", "oomScoreAdj"], 5000), "process.oomScoreAdj",
                                 "-1000..1000"),
    "unknown rootfsPropagation": (_set(["linux", "rootfsPropagation"], "sideways"),
                                  "linux.rootfsPropagation", "sideways"),
    "hostname without uts": (_drop_ns("uts"), "hostname", "uts"),
    "timeOffsets without time namespace": (_set(["linux", "timeOffsets"],
                                                {"boottime": {"secs": 1}}),
                                           "linux.timeOffsets", "time namespace"),
    "unknown clock": (lambda b: (b.linux["namespaces"].append({"type": "time"}),
                                 b.linux.__setitem__("timeOffsets", {"realtime": {"secs": 1}})),
                      "linux.timeOffsets.realtime", "clock"),
    "non-namespaced sysctl": (_set(["linux", "sysctl"], {"kernel.panic": "1"}),
                              "linux.sysctl.kernel.panic", "host"),
    "device path relative": (_set(["linux", "devices"], [{"path": "tmp/d", "type": "c",
                                                          "major": 1, "minor": 3}]),
                             "linux.devices[0].path", "absolute"),
    "device of unknown type": (_set(["linux", "devices"], [{"path": "/dev/d", "type": "x",
                                                            "major": 1, "minor": 3}]),
                               "linux.devices[0].type", "device type"),
    "unsupported oci version": (_set(["ociVersion"], "2.0.0"), "ociVersion", "2.0.0"),
    "process missing": (lambda b: b.config.pop("process"), "process", "required"),
    "root missing": (lambda b: b.config.pop("root"), "root", "required"),
    "rootfs missing": (_set(["root", "path"], "no-such-rootfs"), "root.path", "no-such-rootfs"),
    "masked path relative": (_append(["linux", "maskedPaths"], "proc/kcore"),
                             "linux.maskedPaths[11]", "absolute"),
    "user namespace without maps": (_append(["linux", "namespaces"], {"type": "user"}),
                                    "linux.uidMappings", "uidMappings and gidMappings"),
    "unknown memory policy mode": (_set(["linux", "memoryPolicy"], {"mode": "MPOL_NEAR"}),
                                   "linux.memoryPolicy.mode", "MPOL_NEAR"),
    "unknown memory policy flag": (_set(["linux", "memoryPolicy"],
                                        {"mode": "MPOL_BIND", "nodes": "0",
                                         "flags": ["MPOL_F_LAZY"]}),
                                   "linux.memoryPolicy.flags[0]", "MPOL_F_LAZY"),
    "malformed memory nodes": (_set(["linux", "memoryPolicy"],
                                    {"mode": "MPOL_BIND", "nodes": "0,-1"}),
                               "linux.memoryPolicy.nodes", "not a list of nodes"),
    "memory node that does not exist": (_set(["linux", "memoryPolicy"],
                                             {"mode": "MPOL_BIND", "nodes": "5"}),
                                        "linux.memoryPolicy", "Invalid argument"),
    "malformed cpu list": (_set(["process", "execCPUAffinity"], {"final": "0-1,"}),
                           "process.execCPUAffinity.final", "not a list of CPUs"),
    "intelRdt": (_set(["linux", "intelRdt"], {"closID": "gold"}), "linux.intelRdt", "resctrl"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_config_names_the_field_and_leaves_nothing(bundle, name):
    change, field, words = CASES[name]
    change(bundle)
    r = bundle.run()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith(f"runner: {field}"), r.stderr
    assert words in lines[0]
    assert_nothing_left(bundle)
    assert not os.path.exists(os.path.join(bundle.root, bundle.last_id))


def test_malformed_json(bundle):
    bundle.write()
    with open(os.path.join(bundle.path, "config.json"), "a") as f:
        f.write("{oops")
    cid = new_id()
    bundle.last_id = cid
    r = bundle.runner("run", "-b", bundle.path, cid)
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert "config.json" in r.stderr and "malformed JSON" in r.stderr and "line" in r.stderr
    assert "Traceback" not in r.stderr
    assert_nothing_left(bundle)


@pytest.mark.parametrize("text", ["", "[1, 2]", '{"ociVersion": "1.3.0",', "{bad}", "\x00"])
def test_config_that_is_not_a_json_object(bundle, text):
    with open(os.path.join(bundle.path, "config.json"), "w") as f:
        f.write(text)
    cid = new_id()
    bundle.last_id = cid
    r = bundle.runner("run", "-b", bundle.path, cid)
    assert r.returncode == 1
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr
    assert_nothing_left(bundle)


def test_missing_config_json(bundle):
    cid = new_id()
    bundle.last_id = cid
    r = bundle.runner("run", "-b", bundle.path, cid)
    assert r.returncode == 1
    assert "config.json" in r.stderr and "does not exist" in r.stderr
    assert_nothing_left(bundle)


def test_missing_bundle_directory(bundle):
    cid = new_id()
    bundle.last_id = cid
    r = bundle.runner("run", "-b", bundle.path + "/nope", cid)
    assert r.returncode == 1
    assert bundle.path + "/nope" in r.stderr


def test_missing_executable_exits_127(bundle):
    r = bundle.set_args("nosuch").run()
    assert r.returncode == 127
    assert r.stderr == 'runner: exec: "nosuch": executable file not found in $PATH\n'
    assert_nothing_left(bundle)


def test_missing_executable_by_path_exits_127(bundle):
    r = bundle.set_args("/bin/nosuch").run()
    assert r.returncode == 127
    assert r.stderr.startswith('runner: exec: "/bin/nosuch": ')
    assert len(r.stderr.splitlines()) == 1
    assert_nothing_left(bundle)


def test_executable_without_permission_exits_126(bundle):
    r = bundle.set_args("/etc/passwd").run()
    assert r.returncode == 126
    assert 'exec: "/etc/passwd"' in r.stderr
    assert_nothing_left(bundle)


@pytest.mark.parametrize("cid,words", [("", "empty"), ("a/b", "'/'"), ("..", "'..'"),
                                       ("/abs", "'/'")])
def test_bad_container_id(bundle, cid, words):
    bundle.write()
    r = bundle.runner("run", "-b", bundle.path, cid)
    assert r.returncode == 1
    assert r.stderr.startswith("runner: container id") and words in r.stderr
    assert not os.path.exists(bundle.root) or state_entries(bundle.root) == []


def test_missing_container_id(bundle):
    bundle.write()
    r = bundle.runner("run", "-b", bundle.path)
    assert r.returncode == 1
    assert "container id" in r.stderr


@pytest.mark.parametrize("flag", [["--preserve-fds", "x"], ["--preserve-fds", "-1"],
                                  ["--no-such-flag"]])
def test_bad_run_flags(bundle, flag):
    bundle.write()
    cid = new_id()
    bundle.last_id = cid
    r = bundle.runner("run", "-b", bundle.path, *flag, cid)
    assert r.returncode == 1
    assert flag[0] in r.stderr
    assert_nothing_left(bundle)


def test_an_id_in_use_is_refused_and_the_running_one_is_untouched(bundle):
    import subprocess

    from conftest import REPO, RUNNER, marked_pids

    bundle.sh("echo ready; read x").write()
    cid = new_id()
    bundle.last_id = cid
    p = subprocess.Popen(RUNNER + ["--root", bundle.root, "run", "-b", bundle.path, cid],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert p.stdout.readline() == "ready\n"
        r = bundle.runner("run", "-b", bundle.path, cid)
        assert r.returncode == 1
        assert "already exists" in r.stderr
        assert marked_pids(bundle.mark)
        assert os.path.isdir(os.path.join(bundle.root, cid))
    finally:
        p.communicate("\n", timeout=20)
    assert p.returncode == 0
