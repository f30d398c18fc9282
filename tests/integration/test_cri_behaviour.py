"""Behaviours found by driving the runner through containerd's CRI plugin (crictl, critest of
cri-tools, containerd 1.6 with a `runner` runtime handler; see spec/ENGINES.md) and comparing
what a container sees with the same pod under runc. Each is checked here on the runtime
itself, side by side with runc where it is installed."""
import os
import shutil
import subprocess

import pytest
from conftest import mountinfo_line


def per_mount_options(out: str, mount_point: str) -> set:
    """The per-mount options (mountinfo's sixth field) of the visible mount at a point."""
    return set(mountinfo_line(out, mount_point).split()[5].split(","))


def run_runc(bundle, tmp_path) -> subprocess.CompletedProcess:
    """The same bundle under runc, when it is installed (skips otherwise)."""
    runc = shutil.which("runc")
    if runc is None:
        pytest.skip("runc is not installed: `make test` installs it")
    bundle.write()
    return subprocess.run([runc, "--root", str(tmp_path / "runc-root"), "run", "--bundle",
                           bundle.path, "t-runc-" + os.urandom(4).hex()],
                          capture_output=True, text=True, timeout=60)


READONLY_SCRIPT = ("cat /proc/self/mountinfo; /bin/true && echo bin-runs; "
                   "/data/prog && echo data-runs; touch /bin/x /data/x 2>&1 | sort")


def _readonly_bundle(bundle):
    """/bin read-only (it holds the shell), and /data (a nosuid,noexec bind holding a
    program) made read-only."""
    data = os.path.join(os.path.dirname(bundle.path), "data")
    os.makedirs(data, exist_ok=True)
    shutil.copy(os.path.join(bundle.rootfs, "bin", "busybox"), os.path.join(data, "prog"))
    os.makedirs(os.path.join(bundle.rootfs, "data"), exist_ok=True)
    bundle.config["mounts"].append({"destination": "/data", "type": "bind", "source": data,
                                    "options": ["rbind", "nosuid", "noexec"]})
    bundle.linux["readonlyPaths"] += ["/bin", "/data"]
    return bundle.sh(READONLY_SCRIPT)


def test_readonly_paths_add_read_only_and_nothing_else(bundle):
    """A read-only path keeps the flags it had and gains `ro` only: CRI's readonlyPaths
    (and any user's, e.g. /usr/bin or /bin) made noexec,nosuid,nodev by the runner meant
    the container could not run its own programs (`exec: "sh": permission denied`)."""
    r = _readonly_bundle(bundle).run()
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "bin-runs" in out
    assert "data-runs" not in out
    assert "/bin/x: Read-only file system" in out and "/data/x: Read-only file system" in out
    bin_opts = per_mount_options(out, "/bin")
    assert "ro" in bin_opts
    assert not bin_opts & {"noexec", "nosuid", "nodev"}, bin_opts
    data_opts = per_mount_options(out, "/data")
    assert {"ro", "nosuid", "noexec"} <= data_opts
    assert "nodev" not in data_opts, data_opts
    # /proc/sys (a default read-only path) has proc's own flags, here none of the three
    assert per_mount_options(out, "/proc/sys") == {"ro", "relatime"}


def test_readonly_paths_as_runc(bundle, tmp_path):
    ours = _readonly_bundle(bundle).run()
    assert ours.returncode == 0, ours.stderr
    theirs = run_runc(bundle, tmp_path)
    assert theirs.returncode == 0, theirs.stderr
    for point in ("/bin", "/data", "/proc/sys"):
        assert per_mount_options(ours.stdout, point) == per_mount_options(theirs.stdout, point), point
    tail = lambda out: [l for l in out.splitlines() if not l[:1].isdigit()]
    assert tail(ours.stdout) == tail(theirs.stdout)
