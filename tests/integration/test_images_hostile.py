"""An image is hostile input. Layers crafted to escape the layer directory (each trick of the
image-extraction CVE class) are refused with an error naming the entry; nothing outside the
store changes and nothing is left in the store. Broken blobs (digest mismatch, truncated,
missing) are refused the same way."""
from __future__ import annotations

import os
import shutil

import pytest

import imagekit as kit
from conftest import need_root

OUT = "/tmp/runner-images-outside"  # replaced per test by the real path (a tmp dir)

TRICKS = {
    "dotdot": ([("../../OUT/pwned", "file", {"data": b"x"})], "'..' in the path"),
    "dotdot-inside": ([("a/", "dir"), ("a/../../OUT/pwned", "file")], "'..' in the path"),
    "absolute": ([("OUT/pwned", "file", {"abs": True})], "absolute path"),
    "symlink-then-file": ([("esc", "symlink", {"target": "OUT"}), ("esc/pwned", "file")],
                          "goes through the symlink 'esc'"),
    "relative-symlink-then-file": ([("esc", "symlink", {"target": "../../../../../../../OUT"}),
                                    ("esc/pwned", "file")], "goes through the symlink 'esc'"),
    "symlink-then-dir": ([("d/", "dir"), ("d/esc", "symlink", {"target": "OUT"}),
                          ("d/esc/sub/", "dir")], "goes through the symlink 'd/esc'"),
    "hardlink-dotdot": ([("h", "hardlink", {"target": "../../OUT/victim"})], "'..' in the hard link target"),
    "hardlink-absolute": ([("h", "hardlink", {"target": "OUT/victim", "abs": True})],
                          "absolute hard link target"),
    "hardlink-through-symlink": ([("esc", "symlink", {"target": "OUT"}),
                                  ("h", "hardlink", {"target": "esc/victim"})],
                                 "goes through the symlink 'esc'"),
    "hardlink-missing": ([("h", "hardlink", {"target": "nothere"})], "is not in this layer"),
    "whiteout-through-symlink": ([("esc", "symlink", {"target": "OUT"}), ("esc/.wh.victim", "file")],
                                 "goes through the symlink 'esc'"),
    "opaque-through-symlink": ([("esc", "symlink", {"target": "OUT"}), ("esc/.wh..wh..opq", "file")],
                               "goes through the symlink 'esc'"),
    "whiteout-dotdot": ([("../.wh.victim", "file")], "'..' in the path"),
    "overlay-xattr": ([("f", "file", {"pax": {"SCHILY.xattr.trusted.overlay.redirect": "/etc"}})],
                      "xattr trusted.overlay.redirect"),
}


def _entries(spec: list, out: str) -> list:
    entries = []
    for e in spec:
        name, kind = e[0], e[1]
        opts = dict(e[2]) if len(e) > 2 else {}
        rel_out = out.lstrip("/")
        name = name.replace("OUT", out if opts.get("abs") and kind != "hardlink" else rel_out)
        if "target" in opts:
            t = opts["target"]
            opts["target"] = t.replace("OUT", out if (opts.get("abs") or kind == "symlink") else rel_out)
            if kind == "symlink" and t.startswith("../"):
                opts["target"] = t.replace("OUT", rel_out)
        entries.append((name, kind, opts))
    return entries


@pytest.fixture
def outside(tmp_path):
    need_root()
    out = tmp_path / "outside"
    out.mkdir()
    (out / "victim").write_text("original\n")
    return str(out)


def _snapshot(path: str) -> dict:
    return kit.tree(path)


@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_hostile_layer_is_refused(tmp_path, outside, trick):
    spec, message = TRICKS[trick]
    layout = str(tmp_path / "layout")
    entries = _entries(spec, outside)
    kit.write_layout(layout, "evil", [kit.layer_tar(entries)], gzip_layers=trick.startswith("s"))
    before = _snapshot(outside)
    store = str(tmp_path / "store")
    r = kit.runner("pull", "--storage", store, f"oci:{layout}:evil")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "layer entry '" in r.stderr and message in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert _snapshot(outside) == before
    assert not os.path.exists(os.path.join(os.path.dirname(outside), "pwned"))
    assert kit.store_leftovers(store) == []


def test_an_entry_replaces_a_symlink_without_writing_through_it(tmp_path, outside):
    """A later entry of the same name replaces the symlink; the file it pointed at is untouched."""
    victim = os.path.join(outside, "victim")
    layout = str(tmp_path / "layout")
    tar = kit.layer_tar([("s", "symlink", {"target": victim}), ("s", "file", {"data": b"pwned\n"}),
                         ("d", "symlink", {"target": outside}), ("d/", "dir"),
                         ("d/inside", "file", {"data": b"in\n"})])
    kit.write_layout(layout, "t", [tar])
    store = str(tmp_path / "store")
    r = kit.runner("pull", "--storage", store, f"oci:{layout}:t")
    assert r.returncode == 0, r.stderr
    with open(victim) as f:
        assert f.read() == "original\n"
    assert sorted(os.listdir(outside)) == ["victim"]
    (name,) = [n for n in os.listdir(os.path.join(store, "layers")) if not n.startswith(".")]
    layer = os.path.join(store, "layers", name, "diff")
    assert not os.path.islink(os.path.join(layer, "s"))
    with open(os.path.join(layer, "d", "inside")) as f:
        assert f.read() == "in\n"
    assert kit.runner("rmi", "--storage", store, "localhost/layout:t").returncode == 0


def _good_layout(tmp_path) -> tuple:
    layout = str(tmp_path / "layout")
    tar = kit.layer_tar([("etc/", "dir"), ("etc/hello", "file", {"data": b"hello\n" * 1000})])
    d = kit.write_layout(layout, "t", [tar])
    return layout, d


@pytest.mark.parametrize("damage", ["flipped-byte", "truncated", "missing", "bad-config"])
def test_damaged_blob_is_refused_and_nothing_is_kept(tmp_path, damage):
    need_root()
    layout, d = _good_layout(tmp_path)
    blob = os.path.join(layout, "blobs", "sha256", d["layers"][0][7:])
    if damage == "flipped-byte":
        with open(blob, "r+b") as f:
            f.seek(1024)
            f.write(b"X")  # still a valid tar: only the digest can tell
        want = f"layer {d['layers'][0]}: digest mismatch"
    elif damage == "truncated":
        os.truncate(blob, 1500)
        want = f"layer {d['layers'][0]}: truncated: 1500 of"
    elif damage == "missing":
        os.unlink(blob)
        want = f"blob {d['layers'][0]} is missing"
    else:
        cfg = os.path.join(layout, "blobs", "sha256", d["config"][7:])
        with open(cfg, "ab") as f:
            f.write(b" ")
        want = f"config {d['config']}: digest mismatch"
    store = str(tmp_path / "store")
    r = kit.runner("pull", "--storage", store, f"oci:{layout}:t")
    assert r.returncode == 1, r.stderr
    assert want in r.stderr, r.stderr
    assert kit.store_leftovers(store) == []


def test_bad_source_arguments(tmp_path):
    need_root()
    store = str(tmp_path / "store")
    for source, want in [("nosuch:x", "unknown transport"),
                         (f"oci:{tmp_path}/none:t", "not an OCI image layout"),
                         ("docker://127.0.0.1:1/UPPER:t", "invalid repository name"),
                         (f"docker-archive:{tmp_path}/none.tar", "no such file")]:
        r = kit.runner("pull", "--storage", store, source)
        assert r.returncode == 1 and want in r.stderr, (source, r.stderr)
    layout, _ = _good_layout(tmp_path)
    r = kit.runner("pull", "--storage", store, f"oci:{layout}:nosuchtag")
    assert r.returncode == 1 and "no tag 'nosuchtag'" in r.stderr and "tags: t" in r.stderr
    assert kit.store_leftovers(store) == []
    shutil.rmtree(store)


def _pull_killed_half_way(layout: str, store: str, before_kill=None) -> None:
    import signal
    import subprocess
    import time

    p = subprocess.Popen(kit.RUNNER + ["pull", "--storage", store, f"oci:{layout}:t"], cwd=kit.REPO,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = os.path.join(store, "tmp")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        d = [os.path.join(tmp, n, "diff", "d") for n in (os.listdir(tmp) if os.path.isdir(tmp) else [])]
        if d and os.path.isdir(d[0]) and len(os.listdir(d[0])) > 5:
            break
        time.sleep(0.005)
    if before_kill:
        before_kill(p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert [n for n in os.listdir(tmp) if n.startswith("layer-")], \
        "the pull finished before it was killed: make the layer bigger"


def test_a_pull_killed_half_way_leaves_no_layer_under_its_name(tmp_path):
    """SIGKILL during an unpack: nothing under layers/ or in images.json; what it left in
    tmp/ (its owner is gone) is removed by the next store operation, or by system prune,
    while the temporary directory of a pull still running is left alone."""
    need_root()
    layout = str(tmp_path / "layout")
    files = [("d/", "dir")] + [(f"d/f{i}", "file", {"data": os.urandom(256 << 10)}) for i in range(160)]
    kit.write_layout(layout, "t", [kit.layer_tar(files)], gzip_layers=True)
    store = str(tmp_path / "store")
    tmp = os.path.join(store, "tmp")

    def others_leave_it_alone(p):
        assert kit.runner("images", "--storage", store).returncode == 0
        if p.poll() is None:  # still unpacking: its directory is still there
            assert [n for n in os.listdir(tmp) if n.startswith("layer-")]

    _pull_killed_half_way(layout, store, others_leave_it_alone)
    assert [n for n in os.listdir(os.path.join(store, "layers")) if not n.startswith(".")] == []
    assert not os.path.exists(os.path.join(store, "images.json"))
    # the next operation, whatever it is, removes it
    assert kit.runner("images", "--storage", store).returncode == 0
    assert os.listdir(tmp) == []
    _pull_killed_half_way(layout, store)
    r = kit.runner("system", "prune", "--storage", store)
    assert r.returncode == 0 and "Deleted: temporary layer-" in r.stdout, r.stdout
    assert os.listdir(tmp) == []
    assert kit.runner("pull", "--storage", store, f"oci:{layout}:t").returncode == 0
    assert os.listdir(tmp) == []
    assert kit.runner("rmi", "--storage", store, "localhost/layout:t").returncode == 0
    assert kit.store_leftovers(store) == []
