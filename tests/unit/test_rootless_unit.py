"""Rootless decisions that need no container: subordinate id maps, the default state root,
the rootless features document."""
import os
import pwd

import pytest

from libcontainer import state, subids
from libcontainer.errors import InvalidArgument
from libcontainer.features import features


def _files(tmp_path, uid_lines, gid_lines):
    u, g = tmp_path / "subuid", tmp_path / "subgid"
    u.write_text("".join(l + "\n" for l in uid_lines))
    g.write_text("".join(l + "\n" for l in gid_lines))
    return str(u), str(g)


def test_ranges_by_name_or_number_in_file_order(tmp_path):
    u, _ = _files(tmp_path, ["other:100000:65536", "alice:200000:1000", "1001:300000:70000",
                             "alice:bad:1", "alice:5:0", "# alice:1:1"], [])
    assert subids.ranges(u, "alice", 1001) == [(200000, 1000), (300000, 70000)]
    assert subids.ranges(u, "bob", 1002) == []
    assert subids.ranges(str(tmp_path / "nosuch"), "alice", 1001) == []


def test_maps_take_65536_ids_across_ranges(tmp_path):
    u, g = _files(tmp_path, ["alice:200000:1000", "alice:300000:70000"], ["alice:400000:65536"])
    um, gm, warn = subids.rootless_maps(1001, 1001, "alice", u, g, have_helpers=True)
    assert warn == []
    assert um == [{"containerID": 0, "hostID": 1001, "size": 1},
                  {"containerID": 1, "hostID": 200000, "size": 1000},
                  {"containerID": 1001, "hostID": 300000, "size": 64536}]
    assert gm == [{"containerID": 0, "hostID": 1001, "size": 1},
                  {"containerID": 1, "hostID": 400000, "size": 65536}]


def test_one_id_and_a_warning_without_helpers_or_ranges(tmp_path):
    u, g = _files(tmp_path, ["alice:200000:65536"], [])
    one = [{"containerID": 0, "hostID": 1001, "size": 1}]
    um, gm, warn = subids.rootless_maps(1001, 1001, "alice", u, g, have_helpers=True)
    assert um == gm == one and len(warn) == 1
    assert f"{g} has no range for alice (as root: usermod --add-subuids" in warn[0]
    um, gm, warn = subids.rootless_maps(1001, 1001, "alice", u, u, have_helpers=False)
    assert um == one
    assert "newuidmap/newgidmap are not installed (Debian: apt-get install uidmap)" in warn[0]
    assert "has no range" not in warn[0]


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert state.default_root() == "/run/runner"  # root's, whatever the environment
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    assert state.default_root() == str(tmp_path / "runner")
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    real = os.stat

    def fake_stat(path, *a, **kw):
        st = real(path, *a, **kw)
        if str(path) == str(home):  # owned by the fake user
            return os.stat_result((st.st_mode, st.st_ino, st.st_dev, st.st_nlink, 4242,
                                   st.st_gid, st.st_size, 0, 0, 0))
        return st

    monkeypatch.setattr(os, "stat", fake_stat)
    monkeypatch.setattr(pwd, "getpwuid", lambda uid: pwd.struct_passwd(
        ("u", "x", uid, uid, "", str(home), "/bin/sh")))
    assert state.default_root() == str(home / ".local" / "state" / "runner")
    home.chmod(0o777)  # others may write in it: not private
    with pytest.raises(InvalidArgument, match="is not its alone"):
        state.default_root()
    home.rmdir()
    with pytest.raises(InvalidArgument, match=r"--root: no private place .* does not exist; "
                                              "set XDG_RUNTIME_DIR or pass --root DIR"):
        state.default_root()


def test_rootless_features_drop_what_needs_root():
    root, rl = features(rootless=False), features(rootless=True)
    assert rl["linux"]["mountExtensions"]["idmap"]["enabled"] is False
    assert rl["linux"]["netDevices"]["enabled"] is False
    assert set(root["mountOptions"]) - set(rl["mountOptions"]) == {"idmap", "ridmap"}
    assert rl["annotations"]["io.github.runner.rootless"] == "true"
    assert not any(k.startswith("io.github.runner.rootless") for k in root["annotations"])
