"""`state` and `list --format json` print the fields runc prints, in the same JSON types
(issue 11, point 16): engines and scripts written against runc read them. Checked side by
side with runc on the same bundle."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest
from conftest import assert_nothing_left

from test_lifecycle import create

# time.Time as Go marshals it (RFC 3339 with nanoseconds, trailing zeros trimmed)
RFC3339NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def shape(obj: dict) -> dict:
    return {k: type(v).__name__ for k, v in obj.items()}


@pytest.fixture
def runc(bundle, tmp_path):
    exe = shutil.which("runc")
    if exe is None:
        pytest.skip("runc is not installed (the Makefile's test packages install it)")
    root = str(tmp_path / "runc-state")

    def call(*args):
        # files, not pipes: a created container's init keeps its stdio open
        with open(tmp_path / "runc.out", "w+") as out, open(tmp_path / "runc.err", "w+") as err:
            r = subprocess.run([exe, "--root", root, *args], stdout=out, stderr=err,
                               stdin=subprocess.DEVNULL, timeout=30)
            out.seek(0)
            err.seek(0)
            r.stdout, r.stderr = out.read(), err.read()
        return r
    return call


def test_state_and_list_fields_as_runc(bundle, runc):
    bundle.config["annotations"] = {"org.example.k": "v"}
    bundle.sh("sleep 30")
    cid = create(bundle)
    theirs = "runc-" + cid
    try:
        r = runc("create", "--bundle", bundle.path, theirs)
        assert r.returncode == 0, r.stderr
        ours_state = json.loads(bundle.runner("state", cid, check=True).stdout)
        runc_state = json.loads(runc("state", theirs).stdout)
        assert shape(ours_state) == shape(runc_state)
        ours_list = json.loads(bundle.runner("list", "--format", "json", check=True).stdout)
        runc_list = json.loads(runc("list", "--format", "json").stdout)
        assert [shape(s) for s in ours_list] == [shape(s) for s in runc_list]

        assert ours_state["rootfs"] == runc_state["rootfs"] == bundle.rootfs
        assert ours_state["annotations"] == {"org.example.k": "v"}
        for s in (ours_state, ours_list[0]):
            assert RFC3339NANO.match(s["created"]), s["created"]
        # the owner by name, as runc's list (the state dir's owner)
        assert ours_list[0]["owner"] == runc_list[0]["owner"] == "root"
        table = bundle.runner("list", check=True).stdout.splitlines()
        assert table[1].split()[-1] == "root"
    finally:
        runc("delete", "--force", theirs)
        bundle.runner("delete", "--force", cid)
    assert_nothing_left(bundle)


def test_state_without_annotations_omits_them_as_runc(bundle, runc):
    bundle.config.pop("annotations", None)
    bundle.sh("sleep 30")
    cid = create(bundle)
    try:
        state = json.loads(bundle.runner("state", cid, check=True).stdout)
        assert "annotations" not in state
        assert list(state) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs",
                               "created", "owner"]
    finally:
        bundle.runner("delete", "--force", cid)
    assert_nothing_left(bundle)
