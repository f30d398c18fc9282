"""Images, the parts that need no root: source references, registry challenges, index
platforms, layer path cleaning; and `runner run` importing none of the image code."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from libcontainer.errors import InvalidArgument
from libcontainer.images import manifest, reference
from libcontainer.images.errors import ImageError, LayerRefused
from libcontainer.images.layer import clean_path
from libcontainer.images.registry import parse_challenge

D = "sha256:" + "ab" * 32


@pytest.mark.parametrize("source,want", [
    ("docker://busybox", ("docker", "docker.io", "library/busybox", "latest", "")),
    ("docker://127.0.0.1:5000/a/b:1.2", ("docker", "127.0.0.1:5000", "a/b", "1.2", "")),
    ("docker://localhost/x@" + D, ("docker", "localhost", "x", "", D)),
    ("docker://quay.io/org/img:t@" + D, ("docker", "quay.io", "org/img", "t", D)),
    ("docker://user/repo", ("docker", "docker.io", "user/repo", "latest", "")),
])
def test_docker_references(source, want):
    r = reference.parse(source)
    assert (r.transport, r.registry, r.repository, r.tag, r.digest) == want


def test_other_references_and_names():
    r = reference.parse("oci:/srv/layout:v1")
    assert (r.transport, r.path, r.tag, r.default_name()) == ("oci", "/srv/layout", "v1", "localhost/layout:v1")
    r = reference.parse("docker-archive:/tmp/img.tar")
    assert r.default_name() == "localhost/img:latest"
    assert reference.parse("docker://127.0.0.1:5000/a:1").default_name() == "127.0.0.1:5000/a:1"
    assert reference.normalize_name("x/y") == "x/y:latest"
    for bad, what in [("docker://Upper/x", "invalid repository"), ("docker://a/b:bad tag", "invalid tag"),
                      ("docker://a/b@sha256:12", "not a sha256 digest"), ("ftp:x", "unknown transport"),
                      ("oci:", "needs a directory")]:
        with pytest.raises(InvalidArgument, match=what):
            reference.parse(bad)


def test_challenges():
    assert parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                           'scope="repository:a/b:pull"') == (
        "bearer", {"realm": "https://auth.example/token", "service": "registry.example",
                   "scope": "repository:a/b:pull"})
    assert parse_challenge('Basic realm="test"') == ("basic", {"realm": "test"})
    assert parse_challenge("Bearer realm=http://x/t,service=s") == (
        "bearer", {"realm": "http://x/t", "service": "s"})


def test_index_picks_the_platform():
    entries = [{"mediaType": manifest.OCI_MANIFEST, "digest": "sha256:" + c * 64, "size": 1,
                "platform": p} for c, p in
               (("1", {"os": "linux", "architecture": "arm", "variant": "v6"}),
                ("2", {"os": "linux", "architecture": "arm", "variant": "v7"}),
                ("3", {"os": "windows", "architecture": "amd64"}),
                ("4", {"os": "linux", "architecture": "amd64"}))]
    data = json.dumps({"schemaVersion": 2, "manifests": entries}).encode()
    assert manifest.pick_platform(data, want={"os": "linux", "architecture": "amd64"}).digest[7] == "4"
    assert manifest.pick_platform(data, want={"os": "linux", "architecture": "arm",
                                              "variant": "v7"}).digest[7] == "2"
    with pytest.raises(ImageError, match="no image for linux/s390x .*linux/arm/v6, linux/arm/v7, "
                                         "windows/amd64, linux/amd64"):
        manifest.pick_platform(data, want={"os": "linux", "architecture": "s390x"})
    with pytest.raises(ImageError, match="schema 1"):
        manifest.parse_manifest(b'{"schemaVersion": 1, "fsLayers": []}')


def test_layer_paths():
    assert clean_path("./a//b/./c", "e") == ["a", "b", "c"]
    assert clean_path("./", "e") == []
    for bad in ("../a", "a/../../b", "a/..", "/etc/passwd"):
        with pytest.raises(LayerRefused):
            clean_path(bad, bad)


def test_runner_run_imports_no_image_code():
    code = ("import sys, runner.cli, runner.lifecycle, libcontainer.container\n"
            "print([m for m in sys.modules if 'images' in m or m in ('tarfile', 'http.client', 'ssl')])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
