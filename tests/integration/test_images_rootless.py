"""Images without root: a user this test creates pulls into its default store (its data
dir), device nodes are not made, whiteouts and opaque dirs take the forms an unprivileged
overlay reads (0/0 char devices, user.overlay.opaque), `runner bundle` copies (vfs), and a
rootless container runs from it. The user and everything it made are removed after."""
from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid

import pytest

import imagekit as kit
from conftest import need_root


@pytest.fixture
def user():
    need_root()
    top = tempfile.mkdtemp(prefix="runner-img-rootless-", dir="/tmp")
    os.chmod(top, 0o755)
    name = "ri" + uuid.uuid4().hex[:8]
    home = os.path.join(top, "home")
    subprocess.run(["useradd", "--no-create-home", "--home-dir", home, "--shell", "/bin/sh", name],
                   check=True, capture_output=True)
    try:
        pw = pwd.getpwnam(name)
        os.mkdir(home, 0o700)
        os.chown(home, pw.pw_uid, pw.pw_gid)
        yield top, pw
    finally:
        for pid in _pids_of(pwd.getpwnam(name).pw_uid):  # only this test's user's
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        subprocess.run(["userdel", name], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def _pids_of(uid: int) -> list:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    out.append(int(entry))
            except OSError:
                pass
    return out


def _as(pw, *args):
    env = {"PATH": "/usr/bin:/bin", "HOME": pw.pw_dir, "LANG": "C.UTF-8"}
    return subprocess.run(kit.RUNNER + [str(a) for a in args], capture_output=True, text=True,
                          user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=env,
                          cwd=kit.REPO, timeout=120)


def test_rootless_pull_bundle_run(user):
    top, pw = user
    layout = os.path.join(top, "layout")
    base = kit.layer_tar([("bin/", "dir"), ("bin/busybox", "file",
                                             {"data": open(os.path.join(kit.ROOTFS, "bin", "busybox"), "rb").read(),
                                              "mode": 0o755}),
                          ("bin/sh", "symlink", {"target": "busybox"}),
                          ("dev/", "dir"), ("dev/null", "char", {"major": 1, "minor": 3}),
                          ("old/", "dir"), ("old/a", "file", {"data": b"a\n"}),
                          ("keep/", "dir"), ("keep/gone", "file", {"data": b"x\n"}),
                          ("owned", "file", {"data": b"o\n", "uid": 1234, "gid": 1234})])
    top_layer = kit.layer_tar([("old/", "dir"), ("old/.wh..wh..opq", "file"), ("old/b", "file", {"data": b"b\n"}),
                               ("keep/", "dir"), ("keep/.wh.gone", "file")])
    kit.write_layout(layout, "t", [base, top_layer], gzip_layers=True,
                     config={"config": {"Cmd": ["sh", "-c", "ls /old /keep; echo ok"]}})
    kit.sh("chmod", "-R", "a+rX", layout)
    r = _as(pw, "pull", f"oci:{layout}:t")
    assert r.returncode == 0, r.stderr
    store = os.path.join(pw.pw_dir, ".local", "share", "runner")  # the user's data dir
    assert os.stat(os.path.join(store, "images.json")).st_uid == pw.pw_uid
    layers = [os.path.join(store, "layers", n, "diff") for n in os.listdir(os.path.join(store, "layers"))
              if not n.startswith(".")]
    assert len(layers) == 2
    lower = next(d for d in layers if os.path.exists(os.path.join(d, "bin")))
    upper = next(d for d in layers if d != lower)
    assert not os.path.lexists(os.path.join(lower, "dev", "null"))  # no device without root
    st = os.lstat(os.path.join(upper, "keep", "gone"))
    assert (st.st_mode & 0o170000) == 0o020000 and st.st_rdev == 0  # an overlay whiteout
    assert os.getxattr(os.path.join(upper, "old"), "user.overlay.opaque") == b"y"
    assert os.stat(os.path.join(lower, "owned")).st_uid == pw.pw_uid
    bundle = os.path.join(pw.pw_dir, "bundle")
    r = _as(pw, "bundle", "localhost/layout:t", bundle)
    assert r.returncode == 0, r.stderr
    assert not os.path.ismount(os.path.join(bundle, "rootfs"))  # vfs: a copy
    assert sorted(os.listdir(os.path.join(bundle, "rootfs", "old"))) == ["b"]
    assert os.listdir(os.path.join(bundle, "rootfs", "keep")) == []
    r = _as(pw, "--root", os.path.join(pw.pw_dir, "state"), "run", "--bundle", bundle, "c" + uuid.uuid4().hex[:8])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["/keep:", "/old:", "b", "ok"], r.stdout
    assert _as(pw, "bundle", "--remove", bundle).returncode == 0
    assert not os.path.exists(bundle)
    assert _as(pw, "rmi", "localhost/layout:t").returncode == 0
    assert kit.store_leftovers(store) == []


def test_rootless_push_and_save_give_back_the_image(user, tmp_path):
    """Unpacked without root the layer differs from its tar (no device, the user's owners),
    yet its tar-split gives the exact stream: what the user pushes and saves is the image
    it pulled, same id, device and owners included."""
    import shipkit

    top, pw = user
    layout = os.path.join(top, "layout")
    tar = kit.layer_tar([("dev/", "dir"), ("dev/null", "char", {"major": 1, "minor": 3}),
                         ("owned", "file", {"data": b"o\n", "uid": 1234, "gid": 1234}),
                         ("gone/", "dir"), ("gone/.wh.x", "file")])
    kit.write_layout(layout, "t", [tar], gzip_layers=True)
    kit.sh("chmod", "-R", "a+rX", layout)
    r = _as(pw, "pull", "-q", f"oci:{layout}:t")
    assert r.returncode == 0, r.stderr
    image_id = r.stdout.strip()
    reg = shipkit.registry(str(tmp_path / "reg"))
    try:
        r = _as(pw, "push", "--tls-verify=false", "localhost/layout:t", f"docker://{reg.addr}/rl/img:1")
        assert r.returncode == 0, r.stderr
        out = os.path.join(pw.pw_dir, "saved.tar")
        r = _as(pw, "save", "-o", out, "localhost/layout:t")
        assert r.returncode == 0, r.stderr
        for src in (f"docker://{reg.addr}/rl/img:1", f"docker-archive:{out}"):
            store = str(tmp_path / ("s" + uuid.uuid4().hex[:6]))
            r = kit.runner("pull", "--storage", store, "--tls-verify=false", src)
            assert r.returncode == 0 and r.stdout.strip() == image_id, r.stderr
            (diff,) = [os.path.join(store, "layers", n, "diff") for n in os.listdir(os.path.join(store, "layers"))
                       if not n.startswith(".")]
            assert os.stat(os.path.join(diff, "owned")).st_uid == 1234
            assert os.major(os.lstat(os.path.join(diff, "dev", "null")).st_rdev) == 1
    finally:
        reg.stop()
