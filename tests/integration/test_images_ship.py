"""Ship (issue 19): `runner push` to docker-registry on 127.0.0.1, pulled and run by podman
(runc) and copied by skopeo, with existence checks, cross-repository mounts, chunked uploads,
zstd; `runner save` loaded and run by Debian's docker (dockerd on private paths) and podman;
the reverse: images pushed by skopeo and buildah, saved by docker and podman, pulled or
loaded and run by the runner. Every image here is the umoci-built busybox image of
imagekit (whiteouts, an opaque dir, hard links, owners, a device), so each comparison is
of the whole tree too."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile

import pytest

import imagekit as kit
import shipkit
from conftest import need_root
from libcontainer import images

SCRIPT = "id -un; pwd; echo $FOO; ls /srv/data; test ! -e /opt/old/a && echo gone"
EXPECTED = ["app", "/srv", "bar baz", "new.txt", "gone"]


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    need_root()
    work = kit.image_workdir(tmp_path_factory, "shipimage")
    img = kit.build_image(work)
    img["umoci_tree"] = kit.tree(kit.umoci_unpack(img["layout"], "full", os.path.join(work, "u")))
    img["store"] = os.path.join(work, "store")
    r = kit.runner("pull", "--storage", img["store"], "--name", "ship/full:1", f"oci:{img['layout']}:full")
    assert r.returncode == 0, r.stderr
    img["id"] = r.stdout.strip()
    return img


@pytest.fixture(scope="module")
def registry(image, tmp_path_factory):
    reg = shipkit.registry(str(tmp_path_factory.mktemp("shipreg")))
    yield reg
    reg.stop()


@pytest.fixture(scope="module")
def podman(image):
    if shutil.which("podman") is None or shutil.which("runc") is None:
        pytest.skip("podman and runc are not installed: `make test` installs them")
    p = shipkit.Podman()
    yield p
    p.stop()


@pytest.fixture(scope="module")
def docker(image):
    try:
        d = shipkit.Dockerd()
    except FileNotFoundError as e:
        pytest.skip(str(e))
    yield d
    d.stop()


def _ok(*args, timeout=180):
    r = kit.runner(*args, timeout=timeout)
    assert r.returncode == 0, f"runner {args}: {r.stderr}"
    return r


def _inspect(ref: str, raw: bool = False):
    args = ["inspect", "--tls-verify=false"] + (["--raw"] if raw else []) + [ref]
    return json.loads(kit.skopeo(*args).stdout)


def _same_tree_as_umoci(layout_or_archive: str, image, tmp: str) -> None:
    dest = os.path.join(tmp, "unpacked")
    problems = kit.diff_trees(kit.tree(kit.umoci_unpack(layout_or_archive, "x", dest)), image["umoci_tree"])
    assert not problems, "\n".join(problems[:40])


# ---- push to a registry --------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["oci", "v2s2"])
def test_push_pulled_run_by_podman_copied_by_skopeo(image, registry, podman, tmp_path, fmt):
    dest = f"{registry.addr}/ship/full:{fmt}"
    _ok("push", "--storage", image["store"], "--tls-verify=false", "--format", fmt,
        "--digestfile", tmp_path / "digest", "ship/full:1", f"docker://{dest}")
    manifest = _inspect(f"docker://{dest}", raw=True)
    want = {"oci": "application/vnd.oci.image.manifest.v1+json",
            "v2s2": "application/vnd.docker.distribution.manifest.v2+json"}[fmt]
    assert manifest["mediaType"] == want
    assert manifest["config"]["digest"] == "sha256:" + image["id"]  # the same image id
    assert all(layer["mediaType"].endswith(("gzip", "+gzip")) for layer in manifest["layers"])
    assert _inspect(f"docker://{dest}")["Digest"] == (tmp_path / "digest").read_text()
    # podman pulls it and runs it (with runc), and sees the same image id
    podman.ok("pull", "--tls-verify=false", "-q", dest)
    assert set(podman.ok("images", "--format", "{{.ID}}", dest).stdout.split()) == {image["id"][:12]}
    out = podman.run_image(dest, "-c", SCRIPT)
    assert out.splitlines() == EXPECTED, out
    # skopeo copies it; umoci unpacks the copy into the tree umoci made
    layout = str(tmp_path / "copy")
    kit.skopeo("copy", "--quiet", "--src-tls-verify=false", f"docker://{dest}", f"oci:{layout}:x")
    _same_tree_as_umoci(layout, image, str(tmp_path))


def test_push_existing_blobs_mounts_and_chunks(image, tmp_path):
    registry = shipkit.registry(str(tmp_path / "reg"))
    try:
        _existing_blobs_mounts_and_chunks(image, registry, tmp_path)
    finally:
        registry.stop()


def _existing_blobs_mounts_and_chunks(image, registry, tmp_path):
    store = str(tmp_path / "store1")
    _ok("pull", "--storage", store, "--name", "ship/full:1", f"oci:{image['layout']}:full")
    rec = shipkit.Recorder()
    images.push("ship/full:1", f"docker://{registry.addr}/ship/a:1", storage=store,
                tls_verify=False, progress=rec)
    assert len(rec.notes) == 3 and not any("mounted" in n or "exists" in n for n in rec.notes), rec.notes
    # the same layers to another repository of the registry: mounted, not sent
    rec = shipkit.Recorder()
    images.push("ship/full:1", f"docker://{registry.addr}/ship/b:1", storage=store,
                tls_verify=False, progress=rec)
    assert rec.notes == ["mounted from ship/a"] * 3, rec.notes
    # and again to the same one: the registry has them (HEAD)
    rec = shipkit.Recorder()
    images.push("ship/full:1", f"docker://{registry.addr}/ship/b:2", storage=store,
                tls_verify=False, progress=rec)
    assert rec.notes == ["already exists"] * 3, rec.notes
    # chunked: a fresh store (no memory of blobs), PATCH chunks of 64 KiB
    store2 = str(tmp_path / "store2")
    _ok("pull", "--storage", store2, f"oci:{image['layout']}:full")
    _ok("push", "--storage", store2, "--tls-verify=false", "--chunk-size", "65536",
        "localhost/layout:full", f"docker://{registry.addr}/ship/chunked:1")
    with open(registry.dir + "/registry.log") as f:
        log = [line for line in f if '"runner/' in line and line.startswith("127.0.0.1")]
    patches = [line for line in log if '"PATCH /v2/ship/chunked/blobs/uploads/' in line]
    assert len(patches) > 3 and all('" 202 ' in line for line in patches), patches[:3]
    refused = [line for line in log if '" 4' in line and '"HEAD ' not in line or '" 5' in line]
    assert not refused, refused
    a = _inspect(f"docker://{registry.addr}/ship/a:1", raw=True)
    c = _inspect(f"docker://{registry.addr}/ship/chunked:1", raw=True)
    assert a == c  # the same layers compress to the same blobs, whatever the upload
    # what came back is the image that went
    store3 = str(tmp_path / "store3")
    r = _ok("pull", "--storage", store3, "--tls-verify=false", f"docker://{registry.addr}/ship/chunked:1")
    assert r.stdout.strip() == image["id"]
    out = shipkit.run_from_store(store3, f"{registry.addr}/ship/chunked:1", str(tmp_path), SCRIPT)
    assert out.splitlines() == EXPECTED


def test_push_zstd(image, registry, podman, tmp_path):
    dest = f"{registry.addr}/ship/zstd:1"
    _ok("push", "--storage", image["store"], "--tls-verify=false", "--compression-format", "zstd",
        "ship/full:1", f"docker://{dest}")
    m = _inspect(f"docker://{dest}", raw=True)
    assert [layer["mediaType"] for layer in m["layers"]] == ["application/vnd.oci.image.layer.v1.tar+zstd"] * 3
    for layer in m["layers"]:
        with open(registry.blob_file(layer["digest"]), "rb") as f:
            assert f.read(4) == b"\x28\xb5\x2f\xfd"
    # pulled back by the runner (zstandard), and by skopeo into a layout umoci unpacks
    store = str(tmp_path / "store")
    r = _ok("pull", "--storage", store, "--tls-verify=false", f"docker://{dest}")
    assert r.stdout.strip() == image["id"]
    out = shipkit.run_from_store(store, dest, str(tmp_path), SCRIPT)
    assert out.splitlines() == EXPECTED
    podman.ok("pull", "--tls-verify=false", "-q", dest)
    assert podman.run_image(dest, "-c", SCRIPT).splitlines() == EXPECTED
    # zstd in a Docker schema 2 manifest does not exist: refused, naming the flags
    r = kit.runner("push", "--storage", image["store"], "--tls-verify=false", "--format", "v2s2",
                   "--compression-format", "zstd", "ship/full:1", f"docker://{dest}")
    assert r.returncode == 1 and "--compression-format zstd" in r.stderr and "--format oci" in r.stderr


def test_push_to_layouts_and_archives_read_by_skopeo_and_umoci(image, tmp_path):
    store = image["store"]
    layout = str(tmp_path / "layout")
    _ok("push", "--storage", store, "ship/full:1", f"oci:{layout}:x")
    _same_tree_as_umoci(layout, image, str(tmp_path))
    archive = str(tmp_path / "img.oci.tar")
    _ok("push", "--storage", store, "ship/full:1", f"oci-archive:{archive}:x")
    kit.skopeo("copy", "--quiet", f"oci-archive:{archive}:x", f"oci:{tmp_path}/from-archive:x")
    shutil.rmtree(tmp_path / "unpacked")
    _same_tree_as_umoci(f"{tmp_path}/from-archive", image, str(tmp_path))
    darchive = str(tmp_path / "img.docker.tar")
    _ok("push", "--storage", store, "ship/full:1", f"docker-archive:{darchive}:ship/other:7")
    with tarfile.open(darchive) as t:
        (entry,) = json.load(t.extractfile("manifest.json"))
    assert entry["RepoTags"] == ["ship/other:7"] and entry["Config"] == image["id"] + ".json"
    info = json.loads(kit.skopeo("inspect", f"docker-archive:{darchive}").stdout)
    assert len(info["Layers"]) == 3
    kit.skopeo("copy", "--quiet", f"docker-archive:{darchive}", f"oci:{tmp_path}/from-darchive:x")
    shutil.rmtree(tmp_path / "unpacked")
    _same_tree_as_umoci(f"{tmp_path}/from-darchive", image, str(tmp_path))


# ---- save / load with docker and podman --------------------------------------------------------

def test_save_loaded_and_run_by_docker_and_podman(image, docker, podman, tmp_path):
    archive = str(tmp_path / "full.tar")
    _ok("save", "--storage", image["store"], "-o", archive, "ship/full:1")
    r = docker.ok("load", "-i", archive)
    assert "ship/full:1" in r.stdout, r.stdout
    assert docker.ok("image", "inspect", "-f", "{{.Id}}", "ship/full:1").stdout.strip() == "sha256:" + image["id"]
    out = docker.ok("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", "ship/full:1",
                    "-c", SCRIPT).stdout
    assert out.splitlines() == EXPECTED, out
    # podman load of the same docker archive, and of an oci-archive
    podman.ok("load", "-q", "-i", archive)
    assert podman.run_image("ship/full:1", "-c", SCRIPT).splitlines() == EXPECTED
    oci = str(tmp_path / "full.oci.tar")
    _ok("tag", "--storage", image["store"], "ship/full:1", "ship/ocisaved:2")
    _ok("save", "--storage", image["store"], "--format", "oci-archive", "-o", oci, "ship/ocisaved:2")
    r = podman.ok("load", "-i", oci)
    assert "ship/ocisaved:2" in r.stdout, r.stdout
    assert podman.run_image("ship/ocisaved:2", "-c", "cat /srv/data/new.txt").strip() == "new"


def test_docker_and_podman_saves_loaded_and_run_by_the_runner(image, docker, podman, tmp_path):
    # docker's own image: imported from a tar of the busybox rootfs, then saved by docker
    tar = subprocess.Popen(["tar", "-C", kit.ROOTFS, "-c", "."], stdout=subprocess.PIPE)
    r = subprocess.run([shipkit.DOCKER, "-H", f"unix://{docker.sock}", "import", "-c",
                        "ENV GREETING=from-docker", "-", "dk/imported:1"], stdin=tar.stdout,
                       capture_output=True, text=True, timeout=120)
    tar.stdout.close()
    tar.wait()
    assert r.returncode == 0, r.stderr
    docker.ok("tag", "dk/imported:1", "dk/imported:also")
    saved = str(tmp_path / "docker-save.tar")
    docker.ok("save", "-o", saved, "dk/imported:1", "dk/imported:also")
    store = str(tmp_path / "store")
    r = _ok("load", "--storage", store, "-i", saved)
    assert {"Loaded image: dk/imported:1", "Loaded image: dk/imported:also"} <= set(r.stdout.splitlines()), r.stdout
    out = shipkit.run_from_store(store, "dk/imported:1", str(tmp_path), 'echo "$GREETING"; ls /bin/busybox')
    assert out.splitlines() == ["from-docker", "/bin/busybox"]
    want_id = docker.ok("image", "inspect", "-f", "{{.Id}}", "dk/imported:1").stdout.strip()
    listed = json.loads(_ok("images", "--storage", store, "--format", "json").stdout)
    assert [i["id"] for i in listed] == [want_id[7:]]
    # compressed, as docker load also takes it
    subprocess.run(["gzip", "-k", saved], check=True)
    store2 = str(tmp_path / "store2")
    _ok("load", "--storage", store2, "-i", saved + ".gz")
    assert json.loads(_ok("images", "--storage", store2, "--format", "json").stdout)[0]["id"] == want_id[7:]
    # podman save (docker-archive and oci-archive) of an image podman pulled from a layout
    podman.ok("pull", "-q", f"oci:{image['layout']}:full")
    pid = podman.ok("images", "-q", "--no-trunc").stdout.split()[0]
    for fmt in ("docker-archive", "oci-archive"):
        saved = str(tmp_path / f"podman-{fmt}.tar")
        podman.ok("tag", pid, f"localhost/pm/saved-{fmt}:1")
        podman.ok("save", "--format", fmt, "-o", saved, f"localhost/pm/saved-{fmt}:1")
        store = str(tmp_path / f"store-{fmt}")
        r = _ok("load", "--storage", store, "-i", saved)
        assert f"pm/saved-{fmt}:1" in r.stdout, r.stdout
        out = shipkit.run_from_store(store, f"localhost/pm/saved-{fmt}:1", str(tmp_path), SCRIPT)
        assert out.splitlines() == EXPECTED


def test_buildah_push_pulled_and_run_by_the_runner(image, registry, tmp_path):
    if shutil.which("buildah") is None:
        pytest.skip("buildah is not installed")
    base = str(tmp_path / "buildah")
    flags = ["--root", f"{base}/root", "--runroot", f"{base}/runroot", "--storage-driver", "vfs"]
    env = dict(os.environ, BUILDAH_ISOLATION="chroot", CONTAINERS_CONF=os.path.join(base, "c.conf"))
    os.makedirs(base)
    open(env["CONTAINERS_CONF"], "w").close()
    with kit.host_dirs_removed():  # buildah makes /run/containers
        try:
            def bh(*args):
                r = shipkit.run(["buildah", *flags, *args], env=env)
                assert r.returncode == 0, f"buildah {args}: {r.stderr}"
                return r.stdout.strip()

            ctr = bh("from", "scratch")
            bh("copy", ctr, kit.ROOTFS + "/", "/")
            bh("config", "--env", "MADE_BY=buildah", "--cmd", "/bin/sh", ctr)
            bh("commit", "-q", ctr, "localhost/bh/img:1")
            bh("push", "--tls-verify=false", "localhost/bh/img:1", f"docker://{registry.addr}/bh/img:1")
            bh("rm", ctr)
        finally:
            shipkit.run(["buildah", *flags, "rmi", "--all", "--force"], env=env)
            shipkit.run(["umount", "-R", f"{base}/root"])
            shutil.rmtree(base, ignore_errors=True)
    store = str(tmp_path / "store")
    _ok("pull", "--storage", store, "--tls-verify=false", f"docker://{registry.addr}/bh/img:1")
    out = shipkit.run_from_store(store, f"{registry.addr}/bh/img:1", str(tmp_path), 'echo "$MADE_BY"')
    assert out.strip() == "buildah"
    # and the runner pushes it on, to a repository podman could pull: blob mounts from bh/img
    rec = shipkit.Recorder()
    images.push(f"{registry.addr}/bh/img:1", f"docker://{registry.addr}/bh/again:1", storage=store,
                tls_verify=False, progress=rec)
    assert rec.notes == ["mounted from bh/img"], rec.notes


def test_built_image_pushed_and_saved_keeps_its_id(image, registry, podman, docker, tmp_path):
    """Layers `runner build` made (no tar-split: their tar is written again by layerdiff):
    pushed and saved with the same id, pulled and run by podman, loaded and run by docker."""
    store = str(tmp_path / "store")
    _ok("pull", "--storage", store, "--name", "ship/full:1", f"oci:{image['layout']}:full")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "f").write_text("copied\n")
    (ctx / "Dockerfile").write_text(
        "FROM ship/full:1\nUSER root\nCOPY f /srv/f\n"
        "RUN rm -rf /srv/data && echo built > /srv/built && ln /srv/built /srv/built2\n")
    built = _ok("build", "--storage", store, "-q", "-t", "ship/built:1", str(ctx), timeout=300).stdout.strip()
    built = built.splitlines()[-1].removeprefix("sha256:")
    dest = f"{registry.addr}/ship/built:1"
    _ok("push", "--storage", store, "--tls-verify=false", "ship/built:1", f"docker://{dest}")
    assert _inspect(f"docker://{dest}", raw=True)["config"]["digest"] == "sha256:" + built
    script = "cat /srv/f /srv/built2; test -e /srv/data || echo no-data; id -un"
    podman.ok("pull", "--tls-verify=false", "-q", dest)
    assert podman.run_image(dest, "-c", script).splitlines() == ["copied", "built", "no-data", "root"]
    archive = str(tmp_path / "built.tar")
    _ok("save", "--storage", store, "-o", archive, "ship/built:1")
    docker.ok("load", "-i", archive)
    assert docker.ok("image", "inspect", "-f", "{{.Id}}", "ship/built:1").stdout.strip() == "sha256:" + built
    out = docker.ok("run", "--rm", "--network", "none", "--entrypoint", "/bin/sh", "ship/built:1",
                    "-c", script).stdout
    assert out.splitlines() == ["copied", "built", "no-data", "root"]
