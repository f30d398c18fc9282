"""The same umoci-built image through each other source: a docker archive that skopeo wrote,
and docker-registry on 127.0.0.1 (OCI and Docker schema 2 manifests, by tag and by digest,
an index with two platforms, basic auth). For each: pull, the same tree as `umoci unpack`,
a container that sees what the image says. Registry errors (404, 401, a corrupt or short
blob, plain HTTP without --tls-verify=false): a clear error, exit 1, nothing stored."""
from __future__ import annotations

import hashlib
import json
import os
import warnings

import pytest

import imagekit as kit
from conftest import need_root, new_id
from libcontainer.images.manifest import this_platform


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    need_root()
    work = kit.image_workdir(tmp_path_factory, "srcimage")
    img = kit.build_image(work)
    img["umoci_tree"] = kit.tree(kit.umoci_unpack(img["layout"], "full", os.path.join(work, "u")))
    _add_index(img["layout"])
    return img


def _add_index(layout: str) -> None:
    """Tag `multi`: an index whose entry for this machine is `full`, and another platform's
    entry is `base`."""
    with open(os.path.join(layout, "index.json")) as f:
        index = json.load(f)
    by_tag = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    here = this_platform()
    other = {"os": "linux", "architecture": "arm64" if here["architecture"] != "arm64" else "amd64"}
    entries = [dict(by_tag["base"], platform=other), dict(by_tag["full"], platform=here)]
    for e in entries:
        e.pop("annotations")
    blob = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                       "manifests": entries}).encode()
    digest = hashlib.sha256(blob).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", digest), "wb") as f:
        f.write(blob)
    index["manifests"].append({"mediaType": "application/vnd.oci.image.index.v1+json",
                               "digest": "sha256:" + digest, "size": len(blob),
                               "annotations": {"org.opencontainers.image.ref.name": "multi"}})
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump(index, f)


@pytest.fixture(scope="module")
def registry(image, tmp_path_factory):
    reg = kit.Registry(str(tmp_path_factory.mktemp("registry")))
    try:
        layout = image["layout"]
        reg.push(f"oci:{layout}:full", "test/full:oci")
        reg.push(f"oci:{layout}:full", "test/full:v2s2", "--format", "v2s2")
        reg.push(f"oci:{layout}:multi", "test/multi:1", "--all")
        yield reg
    finally:
        reg.stop()


def _pull(store, source, *extra):
    r = kit.runner("pull", "--storage", store, *extra, source)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def _check_image(store, name, image, tmp_path):
    """Bundle it, compare with umoci's tree, and run it: what the image says, from inside."""
    bundle = str(tmp_path / "bundle")
    r = kit.runner("bundle", "--storage", store, "--entrypoint", "/bin/sh", name, bundle, "-c",
                   "id -un; pwd; echo $FOO; ls /srv/data; test ! -e /opt/old/a && echo gone")
    assert r.returncode == 0, r.stderr
    try:
        problems = kit.diff_trees(kit.tree(os.path.join(bundle, "rootfs")), image["umoci_tree"])
        assert not problems, "\n".join(problems[:40])
        r = kit.runner("--root", str(tmp_path / "state"), "run", "--bundle", bundle, new_id())
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["app", "/srv", "bar baz", "new.txt", "gone"]
    finally:
        assert kit.runner("bundle", "--storage", store, "--remove", bundle).returncode == 0


def test_docker_archive_from_skopeo(image, tmp_path):
    archive = str(tmp_path / "full.tar")
    kit.skopeo("copy", "--quiet", f"oci:{image['layout']}:full",
           f"docker-archive:{archive}:test/archived:1")
    store = str(tmp_path / "store")
    image_id = _pull(store, f"docker-archive:{archive}")
    r = kit.runner("images", "--storage", store)
    assert "test/archived:1" in r.stdout and image_id[:12] in r.stdout, r.stdout
    _check_image(store, "test/archived:1", image, tmp_path)
    r = kit.runner("pull", "--storage", store, f"docker-archive:{archive}:other:2")
    assert r.returncode == 1 and "no image tagged 'other:2'" in r.stderr


@pytest.mark.parametrize("tag", ["oci", "v2s2"])
def test_registry_pull_by_tag_and_digest(image, registry, tmp_path, tag):
    store = str(tmp_path / "store")
    src = f"docker://{registry.addr}/test/full:{tag}"
    r = kit.runner("pull", "--storage", store, src)
    assert r.returncode == 1 and "--tls-verify=false" in r.stderr, r.stderr
    assert kit.store_leftovers(store) == []
    image_id = _pull(store, src, "--tls-verify=false")
    _check_image(store, f"{registry.addr}/test/full:{tag}", image, tmp_path)
    inspect = json.loads(kit.skopeo("inspect", "--tls-verify=false", f"docker://{registry.addr}/test/full:{tag}").stdout)
    by_digest = f"docker://{registry.addr}/test/full@{inspect['Digest']}"
    assert _pull(store, by_digest, "--tls-verify=false") == image_id
    r = kit.runner("images", "--storage", store, "--format", "json")
    (img,) = json.loads(r.stdout)
    assert img["manifest"] == inspect["Digest"]
    assert f"{registry.addr}/test/full@{inspect['Digest']}" in img["names"]


def test_index_picks_this_platform(image, registry, tmp_path):
    store = str(tmp_path / "store")
    full_id = _pull(store, f"oci:{image['layout']}:full")
    assert _pull(store, f"oci:{image['layout']}:multi") == full_id
    assert _pull(store, f"docker://{registry.addr}/test/multi:1", "--tls-verify=false", "-q") == full_id


def test_registry_errors_leave_nothing(image, registry, tmp_path):
    store = str(tmp_path / "store")
    for ref, want in [("test/nothing:1", "404 not found"), ("test/full:nosuchtag", "404 not found")]:
        r = kit.runner("pull", "--storage", store, "--tls-verify=false", f"docker://{registry.addr}/{ref}")
        assert r.returncode == 1 and want in r.stderr and "MANIFEST_UNKNOWN" in r.stderr.upper(), r.stderr
    # a blob the registry serves with other bytes, then one it serves short
    for damage in ("corrupt", "short"):
        layout = str(tmp_path / f"layout-{damage}")
        tar = kit.layer_tar([("etc/", "dir"), ("etc/" + damage, "file", {"data": os.urandom(4096)})])
        d = kit.write_layout(layout, "t", [tar], gzip_layers=True)
        registry.push(f"oci:{layout}:t", f"test/{damage}:1")
        blob = registry.blob_file(d["layers"][0])
        if damage == "corrupt":
            with open(blob, "r+b") as f:
                data = bytearray(f.read())
                data[-20] ^= 0xFF
                f.seek(0)
                f.write(data)
            want = "digest mismatch"
        else:
            os.truncate(blob, os.path.getsize(blob) // 2)
            want = "truncated"
        r = kit.runner("pull", "--storage", store, "--tls-verify=false",
                       f"docker://{registry.addr}/test/{damage}:1")
        assert r.returncode == 1 and f"layer {d['layers'][0]}: {want}" in r.stderr, r.stderr
    r = kit.runner("pull", "--storage", store, "--tls-verify=false", "docker://127.0.0.1:1/x:1")
    assert r.returncode == 1 and "cannot reach 127.0.0.1:1" in r.stderr, r.stderr
    assert kit.store_leftovers(store) == []


def test_registry_basic_auth(image, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt
    htpasswd = str(tmp_path / "htpasswd")
    with open(htpasswd, "w") as f:
        f.write("tester:" + crypt.crypt("s3cret", crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)) + "\n")
    reg = kit.Registry(str(tmp_path / "reg"), htpasswd=htpasswd)
    try:
        layout = str(tmp_path / "layout")
        tar = kit.layer_tar([("etc/", "dir"), ("etc/secret", "file", {"data": b"s\n"})])
        kit.write_layout(layout, "t", [tar])
        reg.push(f"oci:{layout}:t", "private/img:1", "--dest-creds", "tester:s3cret")
        store = str(tmp_path / "store")
        src = f"docker://{reg.addr}/private/img:1"
        r = kit.runner("pull", "--storage", store, "--tls-verify=false", src)
        assert r.returncode == 1 and "401 unauthorized" in r.stderr and "--creds" in r.stderr, r.stderr
        r = kit.runner("pull", "--storage", store, "--tls-verify=false", "--creds", "tester:wrong", src)
        assert r.returncode == 1 and "401 unauthorized (credentials rejected)" in r.stderr, r.stderr
        assert kit.store_leftovers(store) == []
        _pull(store, src, "--tls-verify=false", "--creds", "tester:s3cret")
    finally:
        reg.stop()


def test_registry_bearer_token_auth(tmp_path):
    """The registry answers 401 with `Bearer realm=…,service=…,scope=…`; the client gets a
    token from the token server (with the credentials, if any) and comes back with it."""
    need_root()
    tokens = kit.TokenServer(str(tmp_path), "tester", "s3cret")
    reg = None
    try:
        reg = kit.Registry(str(tmp_path / "reg"), token=tokens.registry_auth())
        layout = str(tmp_path / "layout")
        tar = kit.layer_tar([("etc/", "dir"), ("etc/token", "file", {"data": b"t\n"})])
        kit.write_layout(layout, "t", [tar], gzip_layers=True)
        reg.push(f"oci:{layout}:t", "private/img:1", "--dest-creds", "tester:s3cret")
        store = str(tmp_path / "store")
        src = f"docker://{reg.addr}/private/img:1"
        del tokens.requests[:]
        r = kit.runner("pull", "--storage", store, "--tls-verify=false", src)
        assert r.returncode == 1 and "401 unauthorized (authentication required" in r.stderr, r.stderr
        assert tokens.requests == [("anonymous", "repository:private/img:pull")]
        r = kit.runner("pull", "--storage", store, "--tls-verify=false", "--creds", "tester:nope", src)
        assert r.returncode == 1 and "token server answered 401 (credentials rejected)" in r.stderr, r.stderr
        assert kit.store_leftovers(store) == []
        del tokens.requests[:]
        _pull(store, src, "--tls-verify=false", "--creds", "tester:s3cret")
        assert tokens.requests == [("tester", "repository:private/img:pull")]
    finally:
        if reg:
            reg.stop()
        tokens.stop()
