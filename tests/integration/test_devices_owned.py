"""linux.devices as runc and crun make them (issue 11, point 6): anywhere in the
container (parent directories created), with the fileMode and the uid/gid owners asked,
without a user namespace and with one — there mknod is refused, so the runtime makes the
node on the host, owned by the mapped ids, and binds it in (as crun precreates them)."""
from __future__ import annotations

import os
import subprocess

import pytest
from conftest import assert_nothing_left, make_reachable

FULL = [{"containerID": 0, "hostID": 0, "size": 4294967295}]
SHIFTED = [{"containerID": 0, "hostID": 200000, "size": 65536}]

DEVICES = [
    {"path": "/dev/foo", "type": "b", "major": 1, "minor": 5, "uid": 10, "gid": 11,
     "fileMode": 0o157},
    {"path": "/foo-dev", "type": "c", "major": 1, "minor": 3},
    {"path": "/subdir/deeper/null", "type": "c", "major": 1, "minor": 3, "uid": 3, "gid": 4,
     "fileMode": 0o606},
]


def userns(bundle, mapping):
    make_reachable(bundle.path)
    if mapping[0]["hostID"]:
        # the image as a shifted user namespace needs it: its root owns the files, and
        # may create /subdir
        subprocess.run(["chown", "-R", f"{mapping[0]['hostID']}:{mapping[0]['hostID']}",
                        bundle.rootfs], check=True)
    bundle.linux["namespaces"].append({"type": "user"})
    bundle.linux["uidMappings"] = [dict(m) for m in mapping]
    bundle.linux["gidMappings"] = [dict(m) for m in mapping]


@pytest.mark.parametrize("mapping", [None, FULL, SHIFTED], ids=["no-userns", "full", "shifted"])
def test_devices_anywhere_with_mode_and_owner(bundle, mapping):
    if mapping:
        userns(bundle, mapping)
    bundle.linux["devices"] = [dict(d) for d in DEVICES]
    bundle.config["root"]["readonly"] = False
    r = bundle.sh("for d in /dev/foo /foo-dev /subdir/deeper/null; do "
                  "stat -c '%n %F %a %u:%g %t:%T' $d; done; "
                  "echo x > /subdir/deeper/null && echo usable").run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "/dev/foo block special file 157 10:11 1:5",
        "/foo-dev character special file 666 0:0 1:3",
        "/subdir/deeper/null character special file 606 3:4 1:3",
        "usable",
    ]
    assert_nothing_left(bundle)


def test_device_owner_not_mapped_is_an_error(bundle):
    userns(bundle, SHIFTED)
    bundle.linux["devices"] = [{"path": "/dev/foo", "type": "c", "major": 1, "minor": 3,
                                "uid": 70000}]
    r = bundle.run()
    assert r.returncode == 1
    assert r.stderr == ("runner: linux.devices[0].uid: 70000 is not mapped in "
                        "linux.uidMappings\n"), r.stderr
    assert_nothing_left(bundle)


def test_device_path_must_be_absolute(bundle):
    bundle.linux["devices"] = [{"path": "dev/foo", "type": "c", "major": 1, "minor": 3}]
    r = bundle.run()
    assert r.returncode == 1 and r.stderr.startswith("runner: linux.devices[0].path:")
    assert_nothing_left(bundle)
    assert not os.path.exists(os.path.join(bundle.rootfs, "dev", "foo"))


def test_devices_in_alternating_directories_each_land_where_asked(bundle):
    """The child keeps the last device's directory open for the next one in the same
    directory (shim.c: entry_parent): devices that alternate between directories, one
    whose directory's name starts like another's, and one reached through a symlink in
    the rootfs each land where asked, and nothing is made outside the rootfs."""
    os.symlink("/devx", os.path.join(bundle.rootfs, "lnk"))
    paths = ["/devx/a", "/dev/b", "/devx/c", "/dev/d", "/de/e", "/dev/f", "/lnk/g"]
    bundle.linux["devices"] = [{"path": p, "type": "c", "major": 1, "minor": 3}
                               for p in paths]
    bundle.config["root"]["readonly"] = False
    r = bundle.sh("ls /devx /de; for d in /dev/b /dev/d /dev/f; do "
                  "stat -c '%n %t:%T' $d; done").run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["/de:", "e", "", "/devx:", "a", "c", "g",
                                     "/dev/b 1:3", "/dev/d 1:3", "/dev/f 1:3"]
    assert not os.path.exists("/devx") and not os.path.exists("/de")
    assert_nothing_left(bundle)
