"""Spec parsing without root: valid configs become typed objects, and every error names
the field's JSON path."""
import os

import pytest

from libcontainer import jsonio, spec
from libcontainer.default_spec import default_config
from libcontainer.errors import ConfigError


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs").mkdir()
    return str(tmp_path)


def parse(cfg, bundle):
    return spec.Spec.parse(cfg, bundle)


def test_default_config_parses(bundle):
    s = parse(default_config(), bundle)
    assert s.root_path == os.path.join(bundle, "rootfs")
    assert s.root_readonly is True
    assert s.process.args == ("sh",)
    assert [n.type for n in s.linux.namespaces] == ["pid", "network", "ipc", "uts", "mount"]
    assert s.mounts[0] == spec.Mount("/proc", "proc", "proc", ())
    assert s.process.rlimits == (spec.Rlimit("RLIMIT_NOFILE", 1024, 1024),)
    assert s.process.capabilities.bounding == ("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")
    assert s.process.capabilities.ambient == ()


def test_spec_objects_are_immutable(bundle):
    s = parse(default_config(), bundle)
    with pytest.raises(AttributeError):
        s.hostname = "x"
    with pytest.raises(AttributeError):
        s.process.user.uid = 5


def test_paths_are_normalised(bundle):
    cfg = default_config()
    cfg["process"]["cwd"] = "/a/./b/../c/"
    cfg["mounts"].append({"destination": "/x//y/", "type": "tmpfs"})
    s = parse(cfg, bundle)
    assert s.process.cwd == "/a/c"
    assert s.mounts[-1].destination == "/x/y"


def test_namespace_path_and_time_offsets(bundle):
    cfg = default_config()
    cfg["linux"]["namespaces"][1] = {"type": "network", "path": "/proc/self/ns/net"}
    cfg["linux"]["namespaces"].append({"type": "time"})
    cfg["linux"]["timeOffsets"] = {"boottime": {"secs": 5, "nanosecs": 7}, "monotonic": {"secs": -3}}
    s = parse(cfg, bundle)
    assert s.linux.namespace("network") == spec.Namespace("network", "/proc/self/ns/net")
    assert s.linux.time_offsets == {"boottime": (5, 7), "monotonic": (-3, 0)}


def test_user_namespace_with_mappings(bundle):
    cfg = default_config(rootless=True)
    s = parse(cfg, bundle)
    assert s.linux.uid_mappings == (spec.IDMapping(0, os.geteuid(), 1),)


def err(cfg, bundle) -> str:
    with pytest.raises(ConfigError) as e:
        parse(cfg, bundle)
    return str(e.value)


def mutate(fn):
    cfg = default_config()
    fn(cfg)
    return cfg


@pytest.mark.parametrize("fn,field,words", [
    (lambda c: c.pop("ociVersion"), "ociVersion", "required"),
    (lambda c: c.__setitem__("ociVersion", 1), "ociVersion", "must be a string, not a number"),
    (lambda c: c["root"].__setitem__("path", "nope"), "root.path", "is not a directory"),
    (lambda c: c["root"].__setitem__("readonly", "yes"), "root.readonly", "boolean"),
    (lambda c: c["process"].__setitem__("args", "sh"), "process.args", "array"),
    (lambda c: c["process"].__setitem__("args", []), "process.args", "program"),
    (lambda c: c["process"]["env"].append(5), "process.env[2]", "string"),
    (lambda c: c["process"].pop("cwd"), "process.cwd", "required"),
    (lambda c: c["process"]["user"].__setitem__("uid", -1), "process.user.uid", "out of range"),
    (lambda c: c["process"]["user"].__setitem__("uid", True), "process.user.uid", "integer"),
    (lambda c: c["process"]["user"].__setitem__("additionalGids", [1, "x"]),
     "process.user.additionalGids[1]", "integer"),
    (lambda c: c["process"]["user"].__setitem__("additionalGids", [-1]),
     "process.user.additionalGids[0]", "out of range"),
    (lambda c: c["process"]["user"].__setitem__("username", "bob"), "process.user.username", "Windows"),
    (lambda c: c["process"]["capabilities"].__setitem__("effective", ["CAP_KILL", 3]),
     "process.capabilities.effective[1]", "string"),
    (lambda c: c["process"]["rlimits"].append({"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}),
     "process.rlimits[1].type", "twice"),
    (lambda c: c["process"]["rlimits"][0].pop("hard"), "process.rlimits[0].hard", "required"),
    (lambda c: c["process"].__setitem__("consoleSize", {"height": 1}),
     "process.consoleSize.width", "required"),
    (lambda c: c["linux"]["namespaces"].append({"type": "foo"}), "linux.namespaces[5].type", "foo"),
    (lambda c: c["linux"]["namespaces"].append({"path": "/x"}), "linux.namespaces[5].type", "required"),
    (lambda c: c["linux"]["namespaces"].append({"type": "cgroup", "path": "/no/such"}),
     "linux.namespaces[5].path", "does not exist"),
    (lambda c: c["linux"].__setitem__("uidMappings", [{"containerID": 0, "hostID": 1, "size": 1}]),
     "linux.uidMappings", "user namespace"),
    (lambda c: (c["linux"]["namespaces"].append({"type": "user"}),
                c["linux"].__setitem__("uidMappings", [{"containerID": 0, "hostID": 1}])),
     "linux.uidMappings[0].size", "required"),
    (lambda c: c["linux"].__setitem__("timeOffsets", {"boottime": {"secs": 1}}),
     "linux.timeOffsets", "time namespace"),
    (lambda c: c["linux"].__setitem__("sysctl", {"net.x": 1}), "linux.sysctl.net.x", "string"),
    (lambda c: c["linux"].__setitem__("devices", [{"path": "/dev/x", "type": "c"}]),
     "linux.devices[0].major", "required"),
    (lambda c: c["linux"].__setitem__("devices", [{"path": "/dev/x", "type": "c", "major": 1 << 12,
                                                   "minor": 0}]),
     "linux.devices[0].major", "out of range"),
    (lambda c: c["linux"]["readonlyPaths"].append("x"), "linux.readonlyPaths[5]", "absolute"),
    (lambda c: c["mounts"].append("tmpfs"), "mounts[7]", "object"),
    (lambda c: c["mounts"].append({"type": "tmpfs"}), "mounts[7].destination", "required"),
    (lambda c: c["mounts"].append({"destination": "x", "type": "tmpfs"}), "mounts[7].destination",
     "absolute"),
    (lambda c: c["mounts"].append({"destination": "/x", "type": "tmpfs", "options": "ro"}),
     "mounts[7].options", "array"),
    (lambda c: c["mounts"].append({"destination": "/x", "type": "bind", "source": "/",
                                   "uidMappings": [{}]}), "mounts[7].uidMappings[0].containerID",
     "required"),
    (lambda c: c.__setitem__("hooks", {"prestart": [{"args": []}]}), "hooks.prestart[0].path",
     "required"),
    (lambda c: c.__setitem__("hostname", 5), "hostname", "string"),
])
def test_errors_name_the_field(bundle, fn, field, words):
    msg = err(mutate(fn), bundle)
    assert msg.startswith(field + ":"), msg
    assert words in msg


def test_not_an_object(bundle):
    assert "JSON object" in err([1], bundle)


def test_load_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="config.json does not exist"):
        spec.load(str(tmp_path))
    (tmp_path / "config.json").write_text('{"ociVersion": "1.3.0",\n  "root": }')
    with pytest.raises(ConfigError) as e:
        spec.load(str(tmp_path))
    assert "malformed JSON" in str(e.value) and "line 2" in str(e.value)


def test_load_round_trips_the_default_config(tmp_path):
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(jsonio.dumps(default_config(), indent=2))
    s = spec.load(str(tmp_path))
    assert s.raw == default_config()


# ---- the parse cache (spec.load_with_bytes) -------------------------------------------------

def _bundle_with(tmp_path, config: dict):
    (tmp_path / "rootfs").mkdir(exist_ok=True)
    (tmp_path / "config.json").write_text(jsonio.dumps(config))
    return str(tmp_path)


def test_cache_hits_on_the_same_bytes_and_misses_on_a_change(tmp_path):
    from libcontainer.default_spec import default_config

    cfg = default_config(args=["true"], terminal=False)
    b = _bundle_with(tmp_path, cfg)
    first, data = spec.load_with_bytes(b)
    assert data == (tmp_path / "config.json").read_bytes()
    assert spec.load(b) is first  # unchanged bytes: the parsed Spec again
    cfg["hostname"] = "changed"
    _bundle_with(tmp_path, cfg)
    assert spec.load(b).hostname == "changed"
    cfg["linux"]["namespaces"].append({"type": "bogus"})
    _bundle_with(tmp_path, cfg)
    with pytest.raises(ConfigError):
        spec.load(b)


def test_cache_rechecks_the_filesystem(tmp_path):
    from libcontainer.default_spec import default_config

    cfg = default_config(args=["true"], terminal=False)
    ns = tmp_path / "netns"
    ns.write_text("")
    cfg["linux"]["namespaces"] = [{"type": "network", "path": str(ns)}]
    b = _bundle_with(tmp_path, cfg)
    spec.load(b)
    ns.unlink()
    with pytest.raises(ConfigError) as e:
        spec.load(b)
    assert e.value.field == "linux.namespaces[0].path"
    ns.write_text("")
    spec.load(b)
    (tmp_path / "rootfs").rmdir()
    with pytest.raises(ConfigError) as e:
        spec.load(b)
    assert e.value.field.startswith("root")


def test_cache_rechecks_every_filesystem_look():
    """The cache is right only while Spec.parse looks at the filesystem in no other place
    than _filesystem_unchanged checks again: a new look there must be added to both."""
    import inspect
    import re

    src = inspect.getsource(spec)
    src = src[:src.index("def load(")]  # the parsing, not the loading
    looks = re.findall(r"os\.path\.(?:exists|isdir|isfile|islink|lexists|realpath|getsize)\("
                       r"|os\.(?:stat|lstat|access|listdir|scandir|readlink)\(|\bopen\(", src)
    assert sorted(looks) == ["os.path.isdir(", "os.stat("], looks
