"""Rootless: an unprivileged user runs `runner spec --rootless`'s config with its own
--root. The test creates that user (useradd) and keeps everything under /tmp, reachable."""
import os
import pwd
import shutil
import subprocess
import tempfile

import pytest
from conftest import REPO, RUNNER, leftovers, need_root, new_id, status_fields

USER = "runner-rootless"


@pytest.fixture(scope="module")
def user():
    need_root()
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=True, capture_output=True)
        pw = pwd.getpwnam(USER)
    return pw


@pytest.fixture
def rl_bundle(user, rootfs_template):
    top = tempfile.mkdtemp(prefix="runner-rootless-", dir="/tmp")
    os.chmod(top, 0o755)
    path = os.path.join(top, "bundle")
    os.mkdir(path)
    subprocess.run(["cp", "-a", rootfs_template, os.path.join(path, "rootfs")], check=True)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", top], check=True)
    state = os.path.join(top, "state")
    ids = []
    yield path, state, ids
    left = [x for cid in ids for x in leftovers(state, cid, path)]
    shutil.rmtree(top, ignore_errors=True)
    assert not left, f"left behind: {left}"


def as_user(user, *args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, cwd=REPO, user=user.pw_uid,
                          group=user.pw_gid, extra_groups=[], timeout=60,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"}, **kw)


def edit_config(path, **changes):
    import json

    cfg_path = os.path.join(path, "config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["process"].update(changes)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    return cfg


def test_rootless_spec_runs_as_an_unprivileged_user(user, rl_bundle):
    path, state, ids = rl_bundle
    r = as_user(user, *RUNNER, "spec", "--rootless", "--bundle", path)
    assert r.returncode == 0, r.stderr
    edit_config(path, terminal=False, args=["sh", "-c", "id -u; cat /proc/self/uid_map; "
                                            "cat /proc/self/gid_map; hostname; grep CapEff /proc/self/status; "
                                            "touch /x 2>&1; ls /proc | grep -c '^[0-9]'"])
    cid = new_id()
    ids.append(cid)
    r = as_user(user, *RUNNER, "--root", state, "run", "--bundle", path, cid)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", str(user.pw_uid), "1"]
    assert lines[2].split() == ["0", str(user.pw_gid), "1"]
    assert lines[3] == "runner"
    assert status_fields(lines[4])["CapEff"] != "0" * 16
    assert "Read-only file system" in lines[5]
    assert int(lines[6]) <= 3
    assert not os.path.exists(os.path.join(state, cid))


def test_rootless_exit_status_and_bad_input(user, rl_bundle):
    path, state, ids = rl_bundle
    assert as_user(user, *RUNNER, "spec", "--rootless", "--bundle", path).returncode == 0
    edit_config(path, terminal=False, args=["sh", "-c", "exit 3"])
    cid = new_id()
    ids.append(cid)
    r = as_user(user, *RUNNER, "--root", state, "run", "--bundle", path, cid)
    assert r.returncode == 3, r.stderr
    edit_config(path, args=["nosuch"])
    cid = new_id()
    ids.append(cid)
    r = as_user(user, *RUNNER, "--root", state, "run", "--bundle", path, cid)
    assert r.returncode == 127, r.stderr


def test_unprivileged_user_without_user_namespace_is_refused(user, rl_bundle):
    path, state, ids = rl_bundle
    r = as_user(user, *RUNNER, "spec", "--bundle", path)  # not --rootless
    assert r.returncode == 0
    edit_config(path, terminal=False, args=["true"])
    cid = new_id()
    ids.append(cid)
    r = as_user(user, *RUNNER, "--root", state, "run", "--bundle", path, cid)
    assert r.returncode == 1
    assert r.stderr.startswith("runner: linux.namespaces:") and "user namespace" in r.stderr
