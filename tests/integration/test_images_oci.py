"""Images from an OCI layout that umoci built: pull into a store, bundle (overlay and vfs),
run a container, and compare the tree with `umoci unpack` of the same image; the config with
umoci's; layers shared between images; rmi and garbage collection; two pulls at once."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

import imagekit as kit
from conftest import need_root, new_id


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    need_root()
    for tool in ("umoci", "skopeo"):
        if not os.path.exists(f"/usr/bin/{tool}"):
            pytest.fail(f"{tool} is not installed (make test installs it)")
    work = kit.image_workdir(tmp_path_factory, "image")
    img = kit.build_image(work)
    img["umoci_rootfs"] = kit.umoci_unpack(img["layout"], "full", os.path.join(work, "umoci-full"))
    with open(os.path.join(work, "umoci-full", "config.json")) as f:
        img["umoci_config"] = json.load(f)
    return img


@pytest.fixture
def store(tmp_path):
    os.chmod(tmp_path, 0o755)
    path = str(tmp_path / "store")
    yield path
    # every test leaves no mount behind under its tmp dir
    mounts = kit.unmount_left(tmp_path)
    assert not mounts, f"left mounted: {mounts}"


def pull(store, source, *extra):
    r = kit.runner("pull", "--storage", store, *extra, source)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def run_bundle(bundle: str, state: str, *args: str) -> subprocess.CompletedProcess:
    return kit.runner("--root", state, "run", "--bundle", bundle, new_id(), *args)


INSIDE = ("id; pwd; echo \"FOO=$FOO\"; echo \"HOME=$HOME\"; ls /srv/data; cat /opt/old/c; "
          "test ! -e /opt/old/a && test ! -e /bin/vi && test ! -e /srv/data/keep.txt "
          "&& echo whiteouts-ok; touch /srv/new-file && echo writable")


@pytest.mark.parametrize("driver", ["overlay", "vfs"])
def test_pull_bundle_run_and_same_tree_as_umoci(image, store, tmp_path, driver):
    image_id = pull(store, f"oci:{image['layout']}:full")
    r = kit.runner("images", "--storage", store)
    assert "localhost/layout:full" in r.stdout and image_id[:12] in r.stdout, r.stdout
    bundle = str(tmp_path / "bundle")
    r = kit.runner("bundle", "--storage", store, "--driver", driver, "localhost/layout:full", bundle)
    assert r.returncode == 0, r.stderr
    rootfs = os.path.join(bundle, "rootfs")
    assert os.path.ismount(rootfs) == (driver == "overlay")
    # the merged view (overlay) or the copy (vfs) is umoci's rootfs, entry for entry
    problems = kit.diff_trees(kit.tree(rootfs), kit.tree(image["umoci_rootfs"]))
    assert not problems, "\n".join(problems[:40])
    state = str(tmp_path / "state")
    # the image's own Entrypoint + Cmd
    r = run_bundle(bundle, state)
    assert r.returncode == 0 and r.stdout == "ep hello world\n", r.stderr
    kit.runner("bundle", "--storage", store, "--remove", bundle)
    # what the image says, seen from inside: user (with the group from /etc/group), cwd, env
    r = kit.runner("bundle", "--storage", store, "--driver", driver, "--entrypoint", "/bin/sh",
                   "localhost/layout:full", bundle, "-c", INSIDE)
    assert r.returncode == 0, r.stderr
    r = run_bundle(bundle, state)
    assert r.returncode == 1  # /srv is root's: user app cannot write there
    lines = r.stdout.splitlines()
    assert lines[0] == "uid=1234(app) gid=1234(app) groups=50(staff)", r.stdout
    assert lines[1:7] == ["/srv", "FOO=bar baz", "HOME=/home/app", "new.txt", "c", "whiteouts-ok"]
    assert "Permission denied" in r.stderr
    kit.runner("bundle", "--storage", store, "--remove", bundle)
    # overrides: user, env, cwd; root can write, and the write stays in the bundle
    r = kit.runner("bundle", "--storage", store, "--driver", driver, "--user", "0:0",
                   "--env", "FOO=over", "--cwd", "/tmp", "--entrypoint", "/bin/sh",
                   "localhost/layout:full", bundle, "-c", INSIDE)
    assert r.returncode == 0, r.stderr
    r = run_bundle(bundle, state)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:3] == ["uid=0(root) gid=0(root)", "/tmp", "FOO=over"]
    assert r.stdout.endswith("writable\n")
    assert os.path.exists(os.path.join(rootfs, "srv", "new-file"))
    r = kit.runner("bundle", "--storage", store, "--remove", bundle)
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(bundle), "bundle --remove leaves the directory it made"
    assert os.listdir(os.path.join(store, "containers")) == []
    assert os.listdir(os.path.join(store, "mounts")) == []
    # nothing written in a container reached the image's layers
    for layer in os.listdir(os.path.join(store, "layers")):
        assert not os.path.exists(os.path.join(store, "layers", layer, "diff", "srv", "new-file"))


def test_config_as_umoci_makes_it(image, store, tmp_path):
    pull(store, f"oci:{image['layout']}:full")
    bundle = str(tmp_path / "b")
    r = kit.runner("bundle", "--storage", store, "--tty", "localhost/layout:full", bundle)
    assert r.returncode == 0, r.stderr
    try:
        with open(os.path.join(bundle, "config.json")) as f:
            ours = json.load(f)
        theirs = image["umoci_config"]
        for key in ("args", "cwd", "user", "terminal"):
            assert ours["process"][key] == theirs["process"][key], key
        assert sorted(ours["process"]["env"]) == sorted(theirs["process"]["env"])
        want = {k: v for k, v in theirs["annotations"].items() if v}
        assert ours["annotations"] == want
        assert ours["annotations"]["org.opencontainers.image.stopSignal"] == "SIGUSR1"
        assert ours["root"] == {"path": "rootfs", "readonly": False}
    finally:
        kit.runner("bundle", "--storage", store, "--remove", bundle)


def test_layers_shared_rmi_and_gc(image, store, tmp_path):
    layout = image["layout"]
    base = pull(store, f"oci:{layout}:base")
    full = pull(store, f"oci:{layout}:full")
    layers = os.path.join(store, "layers")
    assert len([n for n in os.listdir(layers) if not n.startswith(".")]) == 3  # not 1 + 3
    # a second name for the same image is a name, not a copy
    assert pull(store, f"oci:{layout}:full", "--name", "other:tag") == full
    r = kit.runner("images", "--storage", store, "--format", "json")
    imgs = {i["id"]: i for i in json.loads(r.stdout)}
    assert sorted(imgs[full]["names"]) == ["localhost/layout:full", "other:tag"]
    assert imgs[base]["layers"][0] == imgs[full]["layers"][0]
    # an image a bundle uses is not removed
    bundle = str(tmp_path / "b")
    assert kit.runner("bundle", "--storage", store, "other:tag", bundle).returncode == 0
    r = kit.runner("rmi", "--storage", store, "other:tag")
    assert r.returncode == 0 and r.stdout == "Untagged: other:tag\n"
    r = kit.runner("rmi", "--storage", store, "localhost/layout:full")
    assert r.returncode == 1 and f"in use by the bundle {bundle}" in r.stderr, r.stderr
    assert kit.runner("bundle", "--storage", store, "--remove", bundle).returncode == 0
    r = kit.runner("rmi", "--storage", store, full[:12])
    assert r.returncode == 0 and f"Deleted: sha256:{full}" in r.stdout, r.stderr
    # base's layer stays, full's own two go with their blobs
    left = [n for n in os.listdir(layers) if not n.startswith(".")]
    assert left == [imgs[base]["layers"][0][7:]]
    blobs = sorted(os.listdir(os.path.join(store, "blobs", "sha256")))
    assert blobs == sorted([imgs[base]["manifest"][7:], imgs[base]["config"][7:]])
    # a bundle removed by hand (vfs: no mount in the way) no longer pins its layers
    vfs = str(tmp_path / "vfs")
    assert kit.runner("bundle", "--storage", store, "--driver", "vfs", "localhost/layout:base", vfs, "true").returncode == 0
    subprocess.run(["rm", "-rf", vfs], check=True)
    r = kit.runner("rmi", "--storage", store, "--prune")
    assert r.returncode == 0 and f"Deleted: bundle record {vfs}" in r.stdout, r.stdout
    r = kit.runner("rmi", "--storage", store, "nosuch:image")
    assert r.returncode == 1 and "no such image" in r.stderr
    assert kit.runner("rmi", "--storage", store, "localhost/layout:base").returncode == 0
    assert kit.store_leftovers(store) == []


def test_two_pulls_of_the_same_layers_at_once(image, store):
    procs = [subprocess.Popen(kit.RUNNER + ["pull", "--storage", store, f"oci:{image['layout']}:full"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=kit.REPO)
             for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert len({o[0] for o in outs}) == 1
    layers = [n for n in os.listdir(os.path.join(store, "layers")) if not n.startswith(".")]
    assert len(layers) == 3
    assert os.listdir(os.path.join(store, "tmp")) == []
    r = kit.runner("images", "--storage", store, "-q")
    assert r.stdout.splitlines() == [outs[0][0].strip()[:12]]


def test_progress_on_a_terminal_quiet_in_a_pipe(image, store):
    import pty

    src = f"oci:{image['layout']}:full"
    r = kit.runner("pull", "--storage", store, src)
    assert r.returncode == 0 and r.stderr == "" and len(r.stdout.strip()) == 64
    subprocess.run(["rm", "-rf", store])
    master, slave = pty.openpty()
    try:
        p = subprocess.run(kit.RUNNER + ["pull", "--storage", store, src], stdout=subprocess.PIPE,
                           stderr=slave, cwd=kit.REPO, timeout=60)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert p.returncode == 0
    text = out.decode()
    with open(os.path.join(image["layout"], "index.json")) as f:
        index = json.load(f)
    full = next(m for m in index["manifests"]
                if m["annotations"]["org.opencontainers.image.ref.name"] == "full")
    with open(os.path.join(image["layout"], "blobs", "sha256", full["digest"][7:])) as f:
        layers = json.load(f)["layers"]
    for layer in layers:  # a line per layer, by its digest, with its size when done
        assert f"layer {layer['digest'][7:19]}" in text, text
    assert "1.0 MiB done" in text and "\x1b[K" in text, text
    # pulled again: every layer is already there; --quiet: nothing at all
    p = subprocess.run(kit.RUNNER + ["pull", "--quiet", "--storage", store, src],
                       capture_output=True, cwd=kit.REPO, timeout=60)
    assert p.returncode == 0 and p.stderr == b""


def test_readme_image_example_runs(image, tmp_path):
    """The README's Python example for images, as written, against a registry here."""
    import re

    with open(os.path.join(kit.REPO, "README.md")) as f:
        text = f.read()
    code = re.search(r"## Then: run an image.*?```python\n(.*?)```", text, re.S).group(1)
    reg = kit.Registry(str(tmp_path / "registry"))
    try:
        reg.push(f"oci:{image['layout']}:full", "tools:1")
        store, state = str(tmp_path / "store"), str(tmp_path / "state")
        code = (code.replace("127.0.0.1:5000", reg.addr)
                .replace("/srv/bundles/tools", str(tmp_path / "tools"))
                .replace('"tools1"', f'"{new_id()}", root={state!r}'))
        # the example uses the default store: this test's own instead
        code = (f"import libcontainer.images.store as _s\n_s.default_root = lambda: {store!r}\n"
                + code)
        r = subprocess.run([kit.sys.executable, "-c", code], capture_output=True, text=True,
                           cwd=kit.REPO, timeout=120)
        assert r.returncode == 0, code + r.stderr
        # args replace the image's Cmd; its Entrypoint (/bin/echo ep) stays, as with docker run
        assert r.stdout.startswith("ep sh -c id\n"), r.stdout
        assert f"[['{reg.addr}/tools:1']]" in r.stdout, r.stdout
        assert kit.store_leftovers(store) == []
    finally:
        reg.stop()
        if os.path.exists(str(tmp_path / "tools")):  # the example failed half-way
            kit.runner("bundle", "--storage", store, "--remove", str(tmp_path / "tools"))


def _meta(root: str) -> dict:
    out = {}
    for base, dirs, files in os.walk(root):
        for n in dirs + files:
            p = os.path.join(base, n)
            st = os.lstat(p)
            xattrs = {}
            if not os.path.islink(p):
                xattrs = {k: os.getxattr(p, k) for k in os.listxattr(p) if not k.startswith("trusted.overlay.")}
            out[os.path.relpath(p, root)] = (st.st_mtime_ns, xattrs)
    return out


def test_times_and_xattrs_as_umoci(store, tmp_path):
    """mtimes (files, dirs, symlinks) and xattrs (user.*, security.capability) as umoci
    unpacks them, in the overlay view and in the vfs copy."""
    need_root()
    layout = str(tmp_path / "layout")
    cap = "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
    tar = kit.layer_tar([("d/", "dir"), ("d/f", "file", {"data": b"f\n", "pax": {
                            "SCHILY.xattr.user.note": "hello", "SCHILY.xattr.security.capability": cap}}),
                         ("d/l", "symlink", {"target": "f"}), ("e/", "dir")])
    kit.write_layout(layout, "t", [tar], gzip_layers=True)
    theirs = _meta(kit.umoci_unpack(layout, "t", str(tmp_path / "umoci")))
    assert theirs["d/f"][1]["user.note"] == b"hello"
    assert theirs["d/f"][1]["security.capability"] == cap.encode("latin-1")
    pull(store, f"oci:{layout}:t")
    for driver in ("overlay", "vfs"):
        bundle = str(tmp_path / driver)
        assert kit.runner("bundle", "--storage", store, "--driver", driver, "localhost/layout:t",
                          bundle).returncode == 0
        try:
            ours = _meta(os.path.join(bundle, "rootfs"))
            assert ours == theirs, driver
        finally:
            kit.runner("bundle", "--storage", store, "--remove", bundle)


def test_run_image_and_delete_tears_down(image, store, tmp_path):
    """`runner run --image`: foreground (its own delete removes the bundle) and detached
    (`runner delete` does, through the poststop hook)."""
    pull(store, f"oci:{image['layout']}:full")
    state = str(tmp_path / "state")
    r = kit.runner("--root", state, "run", "--image", "localhost/layout:full", "--storage", store, new_id())
    assert r.returncode == 0 and r.stdout == "ep hello world\n", r.stderr
    assert os.listdir(os.path.join(store, "bundles")) == []
    assert os.listdir(os.path.join(store, "mounts")) == []
    cid = new_id()
    r = kit.runner("--root", state, "run", "-d", "--image", "layout:full", "--storage", store, cid)
    assert r.returncode == 0, r.stderr
    assert os.path.ismount(os.path.join(store, "bundles", cid, "rootfs"))
    r = kit.runner("--root", state, "run", "--image", "layout:full", "--storage", store, cid)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert os.path.ismount(os.path.join(store, "bundles", cid, "rootfs"))
    r = kit.runner("--root", state, "delete", "--force", cid)
    assert r.returncode == 0, r.stderr
    assert os.listdir(os.path.join(store, "bundles")) == []
    assert os.listdir(os.path.join(store, "containers")) == []
    r = kit.runner("--root", state, "run", "--image", "nosuch", "--storage", store, new_id())
    assert r.returncode == 1 and "no such image" in r.stderr
    assert os.listdir(os.path.join(store, "bundles")) == []
