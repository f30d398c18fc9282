"""linux.rootfsPropagation as engines use it (issue 17, point 4): a host directory that is
a shared mount, bound into the container with "rshared" (what containerd's CRI does for
a Kubernetes Bidirectional volume, with rootfsPropagation "rshared"). A mount made in the
container must reach the host, and one made on the host the container, as critest's
"mount with 'rshared' should support propagation from host to container and vice versa"
checks; every other value must keep the container's mounts where runc keeps them.

Each case runs in a mount namespace made for it with every mount shared (as on a systemd
host; this machine's "/" is private), which stands for the host: what reaches it is seen
there and goes away with it. Side by side with runc on the same bundle, looking at
/proc/PID/mountinfo's optional fields and at mounts made both ways."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess

import pytest
from conftest import REPO, RUNNER, assert_nothing_left, need_root, new_id

SCRIPT = r"""
set -u
VOL=$1; ID=$2; OUT=$3; shift 3
mount --bind "$VOL" "$VOL" && mount --make-shared "$VOL" || exit 90
mkdir -p "$VOL/in" "$VOL/out"
cat /proc/self/mountinfo > "$OUT/host-before"
"$@" run -d $NOPIVOT --bundle "$BUNDLE" "$ID" </dev/null >/dev/null 2>"$OUT/err" || exit 91
pid=$("$@" state "$ID" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
for i in $(seq 100); do [ -e "/proc/$pid/root/vol/in/x" ] && break; sleep 0.05; done
mount -t tmpfs hostside "$VOL/out"
sleep 0.1
cat /proc/self/mountinfo > "$OUT/host"
cat "/proc/$pid/mountinfo" > "$OUT/ctr"
"$@" kill "$ID" KILL
for i in $(seq 100); do "$@" state "$ID" | grep -q '"stopped"' && break; sleep 0.05; done
"$@" delete --force "$ID"
"""

# value → (a container mount reaches the host, a host mount reaches the container,
#          the optional fields of the container's "/", of its /vol), numbers normalised:
#          H is the host directory's peer group, N any other
EXPECTED = {
    "": (False, True, "master:N", "shared:N master:H"),
    "shared": (True, True, "shared:N", "shared:H"),
    "rshared": (True, True, "shared:N", "shared:H"),
    "slave": (True, True, "master:N", "shared:H"),
    "rslave": (False, True, "master:N", "shared:N master:H"),
    "private": (True, True, "", "shared:H"),
    "rprivate": (False, False, "", "shared:N"),
    "unbindable": (False, False, "unbindable", "shared:N"),
    "runbindable": (False, False, "unbindable", "unbindable"),
}
# Where runc 1.1 differs, on purpose: rshared/shared leave its "/" private (runc 1.2 and
# the spec: the rootfs gets the propagation asked for), and [r]unbindable fails to start
# at all (it makes "/" unbindable, then cannot bind the rootfs on itself: EINVAL).
RUNC_ROOT = {"shared": "", "rshared": ""}
RUNC_FAILS = ("unbindable", "runbindable")


def mounts(path: str) -> dict:
    """mount point → optional fields (the last mount at each point)."""
    return {m[1]: m[2] for m in mount_list(path)}


def mount_list(path: str) -> list:
    """[(mount id, mount point, optional fields, fstype)] of a mountinfo file."""
    out = []
    with open(path) as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            out.append((fields[0], fields[4], fields[6:], right.split()[0]))
    return out


def host_changes(out, tmp_path) -> tuple:
    """(what the host lost of its "/", /proc and /sys mounts, what it gained under the
    test's directory or at "/"). Other mounts of this busy machine come and go meanwhile,
    seen here too: the namespace's mounts are the host's peers."""
    before, after = mount_list(out / "host-before"), mount_list(out / "host")
    watched = {(i, p) for i, p, _, t in before
               if p == "/" or (t in ("proc", "sysfs") and p.startswith(("/proc", "/sys")))}
    lost = watched - {(i, p) for i, p, _, _ in after}
    mine = str(tmp_path)
    gained = {p for _, p, _, _ in after if p == "/" or p.startswith(mine)} - \
        {p for _, p, _, _ in before}
    extra_roots = [p for _, p, _, _ in after if p == "/"][1:]
    return lost, gained | set(extra_roots)


def normalise(optional: list, host_group: str) -> str:
    """'shared:12 master:3' → 'shared:H master:N' (H: host_group)."""
    return " ".join(re.sub(r":(\d+)$", lambda m: ":H" if m.group(1) == host_group else ":N", o)
                    for o in optional)


def probe(bundle, tmp_path, cmd: list, cid: str, prop: str, no_pivot=False) -> tuple | str:
    """Run the container under `cmd` in a fresh all-shared mount namespace; → (up, down,
    "/" fields, /vol fields, the host's mounts after, before), or the runtime's error."""
    vol, out = tmp_path / "vol", tmp_path / ("out-" + cid)
    vol.mkdir(exist_ok=True)
    out.mkdir()
    for d in ("in", "out"):
        shutil.rmtree(vol / d, ignore_errors=True)
    if prop:
        bundle.linux["rootfsPropagation"] = prop
    else:
        bundle.linux.pop("rootfsPropagation", None)
    bundle.write()
    env = dict(os.environ, BUNDLE=bundle.path, NOPIVOT="--no-pivot" if no_pivot else "")
    r = subprocess.run(["unshare", "--mount", "--propagation", "shared", "sh", "-c", SCRIPT,
                        "probe", str(vol), cid, str(out), *cmd], capture_output=True,
                       text=True, timeout=120, cwd=REPO, env=env)
    if r.returncode == 91:
        return (out / "err").read_text()
    assert r.returncode == 0, (r.returncode, r.stderr)
    host, ctr = mounts(out / "host"), mounts(out / "ctr")
    group = next(o for o in host[str(vol)] if o.startswith("shared:")).split(":")[1]
    # "/": a slave of whatever mount the bundle is on (host layouts differ): any group is N
    return (f"{vol}/in" in host, "/vol/out" in ctr, normalise(ctr["/"], ""),
            normalise(ctr["/vol"], group), host, host_changes(out, tmp_path))


@pytest.fixture
def pbundle(bundle):
    """A container that mounts a tmpfs on /vol/in (the host directory) and waits."""
    bundle.config["root"]["readonly"] = False
    bundle.process["capabilities"] = {k: ["CAP_SYS_ADMIN"] for k in
                                      ("bounding", "effective", "permitted")}
    bundle.sh("mount -t tmpfs ctrside /vol/in && touch /vol/in/x; sleep 20")
    bundle.config["mounts"].append({"destination": "/vol", "type": "bind",
                                    "source": os.path.join(os.path.dirname(bundle.path), "vol"),
                                    "options": ["rbind", "rshared"]})
    return bundle


def ours(bundle) -> list:
    return RUNNER + ["--root", bundle.root]


@pytest.mark.parametrize("prop", list(EXPECTED), ids=lambda p: p or "unset")
def test_rootfs_propagation_both_ways_as_runc(pbundle, tmp_path, prop):
    cid = new_id()
    pbundle.last_id = cid
    got = probe(pbundle, tmp_path, ours(pbundle), cid, prop)
    assert not isinstance(got, str), got
    up, down, root, vol, host, (lost, gained) = got
    assert (up, down, root, vol) == EXPECTED[prop]
    # nothing of the container's own reached the host: its rootfs bind, its /proc, /dev…
    assert not [m for m in host if m.startswith(pbundle.path)]
    assert lost == set()
    assert gained <= {str(tmp_path / "vol" / d) for d in ("in", "out")}
    assert_nothing_left(pbundle)
    runc = shutil.which("runc")
    if runc is None:
        return
    theirs = probe(pbundle, tmp_path, [runc, "--root", str(tmp_path / "runc")], "runc-" + cid,
                   prop)
    if prop in RUNC_FAILS:
        assert isinstance(theirs, str) and "invalid argument" in theirs, theirs
        return
    assert not isinstance(theirs, str), theirs
    want = EXPECTED[prop][:2] + (RUNC_ROOT.get(prop, EXPECTED[prop][2]),) + EXPECTED[prop][3:]
    assert theirs[:4] == want


@pytest.mark.parametrize("prop", ["shared", "rshared", "rslave"])
def test_no_pivot_propagates_the_volume_and_leaves_the_host_alone(pbundle, tmp_path, prop):
    """MS_MOVE of the rootfs onto a shared "/" would propagate it onto the host's root, and
    unmounting the host's /proc and /sys there would reach the host's: neither may."""
    cid = new_id()
    pbundle.last_id = cid
    got = probe(pbundle, tmp_path, ours(pbundle), cid, prop, no_pivot=True)
    assert not isinstance(got, str), got
    up, down, root, vol, host, (lost, gained) = got
    assert (up, down, vol) == (EXPECTED[prop][0], EXPECTED[prop][1], EXPECTED[prop][3])
    assert lost == set()  # the host's "/", /proc, /sys… are all still there
    assert gained <= {str(tmp_path / "vol" / d) for d in ("in", "out")}  # nothing on "/"
    assert_nothing_left(pbundle)


@pytest.mark.parametrize("prop", ["private", "rprivate"])
def test_no_pivot_refuses_private_as_runc(bundle, prop):
    """runc: "rootfsPropagation of [r]private is not safe without pivot_root"."""
    bundle.linux["rootfsPropagation"] = prop
    r = bundle.run(None, "--no-pivot")
    assert r.returncode == 1
    assert r.stderr.startswith("runner: linux.rootfsPropagation:") and "pivot" in r.stderr
    assert_nothing_left(bundle)


def test_the_probe_sees_propagation(tmp_path):
    """The probe's own check: in such a namespace, a mount under the shared directory made
    in a second namespace that is its peer does show (else 'up' proves nothing)."""
    need_root()
    vol = tmp_path / "v"
    vol.mkdir()
    script = (f"mount --bind {vol} {vol} && mount --make-shared {vol} && mkdir {vol}/in && "
              f"unshare -m --propagation unchanged mount -t tmpfs t {vol}/in && "
              f"grep -c ' {vol}/in ' /proc/self/mountinfo")  # on the bind, and on "/" below it
    r = subprocess.run(["unshare", "--mount", "--propagation", "shared", "sh", "-c", script],
                       capture_output=True, text=True, timeout=30)
    assert int(r.stdout.strip() or 0) >= 1, (r.stdout, r.stderr, shlex.join(["sh", "-c", script]))
