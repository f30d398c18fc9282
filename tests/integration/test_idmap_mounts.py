"""Id-mapped bind mounts (mount options idmap/ridmap, a mount's uidMappings/gidMappings):
the owners seen through the mount, from inside the container, and the owners a file
written through it gets on disk. Bad input: the field named, nothing left."""
from __future__ import annotations

import os
import subprocess

import pytest
from conftest import assert_nothing_left, make_reachable

MAP = [{"containerID": 0, "hostID": 5000, "size": 2000}]
USERNS = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.fixture
def src(tmp_path):
    """A host directory with a file of root's and one of uid/gid 1000."""
    d = tmp_path / "src"
    d.mkdir()
    (d / "rootfile").write_text("r\n")
    (d / "userfile").write_text("u\n")
    os.chown(d / "userfile", 1000, 1000)
    os.chmod(d, 0o777)
    return d


def owners(listing: str) -> dict:
    """`ls -ln` lines → {name: (uid, gid)}."""
    out = {}
    for line in listing.splitlines():
        f = line.split()
        if len(f) >= 9 and not line.startswith("total"):
            out[f[-1]] = (int(f[2]), int(f[3]))
    return out


def bind(bundle, source, dest="/mnt", options=("bind", "idmap"), **maps):
    m = {"destination": dest, "type": "bind", "source": str(source), "options": list(options)}
    m.update(maps)
    bundle.config["mounts"].append(m)


def test_the_mounts_own_mapping(bundle, src):
    bind(bundle, src, uidMappings=MAP, gidMappings=MAP)
    bind(bundle, src, "/plain", options=("bind",))
    r = bundle.sh("ls -ln /mnt; echo ====; ls -ln /plain").run()
    assert r.returncode == 0, r.stderr
    mapped, plain = r.stdout.split("====")
    assert owners(mapped) == {"rootfile": (5000, 5000), "userfile": (6000, 6000)}
    assert owners(plain) == {"rootfile": (0, 0), "userfile": (1000, 1000)}
    assert_nothing_left(bundle)


def test_mappings_without_the_option_are_an_idmap_too(bundle, src):
    bind(bundle, src, options=("bind",), uidMappings=MAP, gidMappings=MAP)
    r = bundle.sh("ls -ln /mnt").run()
    assert r.returncode == 0, r.stderr
    assert owners(r.stdout)["rootfile"] == (5000, 5000)


def test_the_containers_user_namespace_mapping(bundle, src):
    """The use case: a container with a user namespace sees the host's files with their
    owners, and what its root writes is root's on disk."""
    make_reachable(bundle.path)
    make_reachable(str(src))
    for d in ("mnt", "plain"):  # the container's root cannot create them in root's rootfs
        os.mkdir(os.path.join(bundle.path, "rootfs", d))
    bundle.linux["namespaces"].append({"type": "user"})
    bundle.linux["uidMappings"] = USERNS
    bundle.linux["gidMappings"] = USERNS
    bundle.config["mounts"] = [m for m in bundle.config["mounts"]
                               if m["type"] not in ("sysfs", "cgroup")]
    bind(bundle, src)  # idmap, no mappings of its own: the container's
    bind(bundle, src, "/plain", options=("bind",))
    r = bundle.sh("ls -ln /mnt; echo ====; ls -ln /plain; echo new > /mnt/made; "
                  "echo plain > /plain/unmapped").run()
    assert "====" in r.stdout, (r.returncode, r.stdout, r.stderr)
    mapped, plain = r.stdout.split("====")
    assert owners(mapped) == {"rootfile": (0, 0), "userfile": (1000, 1000)}
    # without the idmap, host root's files belong to nobody in there (65534)
    assert owners(plain)["rootfile"] == (65534, 65534)
    st = os.stat(src / "made")
    assert (st.st_uid, st.st_gid) == (0, 0)
    # through the plain bind (the directory is 0777) the same root writes as host 100000
    st = os.stat(src / "unmapped")
    assert (st.st_uid, st.st_gid) == (100000, 100000)
    assert_nothing_left(bundle)


@pytest.mark.parametrize("option,sub_owner", [("ridmap", 5000), ("idmap", 0)])
def test_ridmap_reaches_the_mounts_below_and_idmap_does_not(bundle, src, option, sub_owner):
    sub = src / "sub"
    sub.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "idmaptest", str(sub)], check=True)
    try:
        (sub / "subfile").write_text("s\n")
        bind(bundle, src, options=("rbind", option), uidMappings=MAP, gidMappings=MAP)
        r = bundle.sh("ls -ln /mnt/sub; ls -ln /mnt | grep rootfile").run()
        assert r.returncode == 0, r.stderr
        got = owners(r.stdout)
        assert got["rootfile"] == (5000, 5000)
        assert got["subfile"] == (sub_owner, sub_owner)
    finally:
        subprocess.run(["umount", str(sub)], check=True)
    assert_nothing_left(bundle)


BAD = {
    "not a bind mount": ({"destination": "/mnt", "type": "tmpfs", "source": "tmpfs",
                          "options": ["idmap"], "uidMappings": MAP, "gidMappings": MAP},
                         "options", "only for bind mounts"),
    "no mappings and no user namespace": ({"options": ["bind", "idmap"]}, "options",
                                          "no user namespace mappings"),
    "uid without gid": ({"options": ["bind"], "uidMappings": MAP}, "gidMappings",
                        "go together"),
    "size 0": ({"options": ["bind", "idmap"], "uidMappings": [dict(MAP[0], size=0)],
                "gidMappings": MAP}, "uidMappings[0].size", "at least 1"),
    "idmap and ridmap": ({"options": ["bind", "idmap", "ridmap"], "uidMappings": MAP,
                          "gidMappings": MAP}, "options[2]", "exclude each other"),
    "a mapping the kernel refuses": ({"options": ["bind", "idmap"],
                                      "uidMappings": [MAP[0], MAP[0]], "gidMappings": MAP},
                                     "", "mounting an id-mapped copy"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_idmapped_mounts(bundle, src, case):
    entry, field, words = BAD[case]
    m = {"destination": "/mnt", "type": "bind", "source": str(src)}
    m.update(entry)
    bundle.config["mounts"].append(m)
    index = len(bundle.config["mounts"]) - 1
    r = bundle.sh("echo started").run()
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert f"mounts[{index}]" + (f".{field}" if field else "") in r.stderr, r.stderr
    assert words in r.stderr and "started" not in r.stdout
    assert_nothing_left(bundle)
