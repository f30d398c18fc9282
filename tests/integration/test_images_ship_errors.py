"""Ship, bad input and interruption (issue 19): a push interrupted (SIGINT, SIGTERM) cancels its
upload sessions and leaves no temporary file; one SIGKILLed leaves what the next command
removes (tmp/) and a session the next push or `system prune` cancels (DELETE); a rerun
succeeds. Errors name the argument or field. And the same image id has the same SIZE
whether pulled from an OCI layout or a docker archive."""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import signal
import subprocess
import time

import pytest

import imagekit as kit
import shipkit
from conftest import need_root


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A store with one image of a 24 MiB incompressible layer (many PATCH chunks)."""
    need_root()
    work = str(tmp_path_factory.mktemp("shipbig"))
    layout = os.path.join(work, "layout")
    files = [("d/", "dir")] + [(f"d/f{i}", "file", {"data": os.urandom(1 << 20)}) for i in range(24)]
    kit.write_layout(layout, "t", [kit.layer_tar(files)], gzip_layers=True)
    store = os.path.join(work, "store")
    r = kit.runner("pull", "--storage", store, "--name", "ship/big:1", f"oci:{layout}:t")
    assert r.returncode == 0, r.stderr
    reg = shipkit.registry(os.path.join(work, "reg"))
    yield {"store": store, "id": r.stdout.strip(), "reg": reg, "layout": layout}
    reg.stop()


def _uploads(reg, repo: str) -> list:
    """The registry's open upload sessions of `repo`. (A cancelled one may leave an empty
    `hashstates` directory behind: docker-registry writes it while closing the session.)"""
    d = os.path.join(reg.dir, "data", "docker", "registry", "v2", "repositories", repo, "_uploads")
    return [n for n in (os.listdir(d) if os.path.isdir(d) else [])
            if os.path.exists(os.path.join(d, n, "startedat"))]


def _journals(store: str) -> list:
    d = os.path.join(store, "uploads")
    out = []
    for n in os.listdir(d) if os.path.isdir(d) else []:
        with open(os.path.join(d, n)) as f:
            try:
                out.append(json.load(f))
            except ValueError:
                out.append({})
    return out


def _deleted(reg, session: str) -> bool:
    """The session was cancelled: gone from the registry's storage, or, when the kill came
    in the middle of a chunk, asked for (docker-registry then refuses the DELETE: the
    session's state token, which only it makes, is behind the bytes it kept; it purges such
    sessions itself after a while)."""
    with open(os.path.join(reg.dir, "registry.log")) as f:
        return any('"DELETE /v2/' in line and session in line for line in f)


def _push_until_uploading(big, repo: str, sig: int) -> subprocess.CompletedProcess:
    """Start a chunked push and send `sig` once the layer's upload session is open; → its
    result. What the store remembers of blobs pushed before is forgotten first, so the layer
    is not mounted from another repository of the registry, but sent."""
    layers = os.path.join(big["store"], "layers")
    for n in os.listdir(layers):
        if os.path.exists(os.path.join(layers, n, "blobs.json")):
            os.unlink(os.path.join(layers, n, "blobs.json"))
    p = subprocess.Popen(kit.RUNNER + ["push", "--storage", big["store"], "--tls-verify=false",
                                       "--chunk-size", "131072", "ship/big:1",
                                       f"docker://{big['reg'].addr}/{repo}:1"],
                         cwd=kit.REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and p.poll() is None:
        if any(j.get("urls") for j in _journals(big["store"])) and _uploads(big["reg"], repo):
            break
        time.sleep(0.01)
    assert p.poll() is None, "the push ended before it was interrupted: " + p.stderr.read()
    time.sleep(0.2)  # some chunks in
    p.send_signal(sig)
    out, err = p.communicate(timeout=60)
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_push_interrupted_cancels_its_upload(big, sig):
    repo = f"ship/int{int(sig)}"
    r = _push_until_uploading(big, repo, sig)
    assert r.returncode == 130, r.stderr
    assert _uploads(big["reg"], repo) == []  # cancelled with DELETE
    assert os.listdir(os.path.join(big["store"], "tmp")) == []
    assert _journals(big["store"]) == []
    # a rerun pushes it whole
    r = kit.runner("push", "--storage", big["store"], "--tls-verify=false", "ship/big:1",
                   f"docker://{big['reg'].addr}/{repo}:1")
    assert r.returncode == 0, r.stderr
    m = json.loads(kit.skopeo("inspect", "--tls-verify=false", "--raw", f"docker://{big['reg'].addr}/{repo}:1").stdout)
    assert m["config"]["digest"] == "sha256:" + big["id"]


def test_push_killed_leaves_what_the_next_command_removes(big, tmp_path):
    repo = "ship/killed"
    _push_until_uploading(big, repo, signal.SIGKILL)
    tmp = os.path.join(big["store"], "tmp")
    assert [n for n in os.listdir(tmp) if n.startswith("push-")]
    assert len(_uploads(big["reg"], repo)) == 1
    assert [j["registry"] for j in _journals(big["store"])] == [big["reg"].addr]
    # any command removes the temporary files; system prune cancels the open session
    assert kit.runner("images", "--storage", big["store"]).returncode == 0
    assert os.listdir(tmp) == []
    (session,) = _uploads(big["reg"], repo)
    r = kit.runner("system", "prune", "--storage", big["store"])
    assert r.returncode == 0 and "Deleted: upload session http://" in r.stdout, r.stdout + r.stderr
    assert _journals(big["store"]) == []
    assert _deleted(big["reg"], session)
    # killed again: this time the next push to that registry cancels it, and succeeds
    _push_until_uploading(big, repo, signal.SIGKILL)
    (session,) = set(_uploads(big["reg"], repo)) - {session}
    r = kit.runner("push", "--storage", big["store"], "--tls-verify=false", "ship/big:1",
                   f"docker://{big['reg'].addr}/{repo}:1")
    assert r.returncode == 0, r.stderr
    assert _deleted(big["reg"], session) and _journals(big["store"]) == []
    assert os.listdir(tmp) == []
    # what the registry has is the image: pulled back, the same id
    r = kit.runner("pull", "--storage", str(tmp_path / "s"), "--tls-verify=false",
                   f"docker://{big['reg'].addr}/{repo}:1")
    assert r.returncode == 0 and r.stdout.strip() == big["id"], r.stderr


def test_bad_input_names_the_argument_and_leaves_nothing(big, tmp_path):
    store, addr = big["store"], big["reg"].addr
    cases = [
        (["push", "--storage", store, "ship/nope:1", f"docker://{addr}/x/y:1"], "image 'ship/nope:1'"),
        (["push", "--storage", store, "ship/big:1", "ftp://x/y"], "unknown transport"),
        (["push", "--storage", store, "ship/big:1", f"docker://{addr}/Bad_Name:1"], "invalid repository name"),
        (["push", "--storage", store, "ship/big:1", f"docker://{addr}/x/y@sha256:" + "0" * 64], "needs a tag"),
        (["push", "--storage", store, "--format", "v3", "ship/big:1", f"docker://{addr}/x/y:1"], "--format: 'v3'"),
        (["push", "--storage", store, "--compression-format", "lz4", "ship/big:1", f"docker://{addr}/x/y:1"],
         "--compression-format: 'lz4'"),
        (["push", "--storage", store, "--chunk-size", "big", "ship/big:1", f"docker://{addr}/x/y:1"], "--chunk-size"),
        (["push", "--storage", store, "ship/big:1", "docker://127.0.0.1:1/x/y:1"], "cannot reach 127.0.0.1:1"),
        (["push", "--storage", store, "ship/big:1", f"oci-archive:{tmp_path}/no/such/dir/x.tar"], "no such directory"),
        (["save", "--storage", store, "ship/big:1"], "--output"),
        (["save", "--storage", store, "--format", "tgz", "-o", f"{tmp_path}/x.tar", "ship/big:1"], "--format: 'tgz'"),
        (["load", "--storage", store, "-i", f"{tmp_path}/missing.tar"], "--input: no such file"),
        (["load", "--storage", store, "-i", __file__], "not a tar archive"),
        (["tag", "--storage", store, "ship/big:1", "bad name"], "image name 'bad name'"),
        (["search", "--tls-verify=false", "justaword"], "name the registry"),
        (["search", "--tls-verify=false", "--limit", "-2", f"{addr}/x"], "--limit"),
    ]
    for args, want in cases:
        r = kit.runner(*args)
        assert r.returncode != 0 and want in r.stderr, f"{args}: {r.stderr}"
    assert os.listdir(os.path.join(store, "tmp")) == []
    assert _journals(store) == []
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tar") or ".tmp-" in n]
    assert not os.path.exists(os.path.join(big["reg"].dir, "data", "docker", "registry", "v2",
                                           "repositories", "x"))


def test_a_changed_layer_is_not_pushed(tmp_path):
    """A stored layer whose files were changed would make another tar stream than its diff
    id: refused before anything is sent, naming the layer."""
    need_root()
    layout = str(tmp_path / "layout")
    tar = kit.layer_tar([("etc/", "dir"), ("etc/f", "file", {"data": b"hello\n"})])
    kit.write_layout(layout, "t", [tar])
    store = str(tmp_path / "store")
    assert kit.runner("pull", "--storage", store, f"oci:{layout}:t").returncode == 0
    diff_id = "sha256:" + hashlib.sha256(tar).hexdigest()
    with open(os.path.join(store, "layers", diff_id[7:], "diff", "etc", "f"), "wb") as f:
        f.write(b"HELLO\n")
    r = kit.runner("push", "--storage", store, "localhost/layout:t", f"oci:{tmp_path}/out:x")
    assert r.returncode == 1 and f"layer {diff_id}" in r.stderr and "changed" in r.stderr, r.stderr
    assert os.listdir(os.path.join(store, "tmp")) == []


def test_size_is_the_unpacked_layers_whatever_the_source(tmp_path):
    need_root()
    layout = str(tmp_path / "layout")
    tars = [kit.layer_tar([("a/", "dir"), ("a/x", "file", {"data": b"x" * 200000})]),
            kit.layer_tar([("b/", "dir"), ("b/y", "file", {"data": b"y" * 300000})])]
    kit.write_layout(layout, "t", tars, gzip_layers=True)
    archive = str(tmp_path / "d.tar")
    kit.skopeo("copy", "--quiet", f"oci:{layout}:t", f"docker-archive:{archive}:d/d:1")
    sizes = {}
    for src in (f"oci:{layout}:t", f"docker-archive:{archive}"):
        store = str(tmp_path / ("s-" + src.split(":")[0]))
        r = kit.runner("pull", "--storage", store, src)
        assert r.returncode == 0, r.stderr
        (img,) = json.loads(kit.runner("images", "--storage", store, "--format", "json").stdout)
        sizes[src] = (img["id"], img["size"])
        table = kit.runner("images", "--storage", store).stdout
        assert " 512 kB " in table, table
    assert len(set(sizes.values())) == 1, sizes
    assert list(sizes.values())[0][1] == sum(len(t) for t in tars)
    assert all(len(gzip.compress(t)) < len(t) for t in tars)  # the blobs were smaller


def test_save_killed_leaves_what_the_next_save_removes(big, tmp_path):
    out = str(tmp_path / "big.tar")
    p = subprocess.Popen(kit.RUNNER + ["save", "--storage", big["store"], "-o", out, "ship/big:1"],
                         cwd=kit.REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    partial = str(tmp_path / f".big.tar.tmp-{p.pid}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and p.poll() is None:
        if os.path.exists(partial) and os.path.getsize(partial) > (1 << 20):
            break
        time.sleep(0.005)
    p.kill()
    p.wait()
    assert os.path.exists(partial) and not os.path.exists(out), "the save ended before it was killed"
    r = kit.runner("save", "--storage", big["store"], "-o", out, "ship/big:1")
    assert r.returncode == 0, r.stderr
    assert os.listdir(tmp_path) == ["big.tar"]
    assert os.listdir(os.path.join(big["store"], "tmp")) == []
