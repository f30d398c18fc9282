"""spec/examples/*.json are configs we claim to support: each runs on the busybox rootfs."""
from __future__ import annotations

import glob
import json
import os

import pytest
from conftest import REPO, assert_nothing_left

EXAMPLES = sorted(glob.glob(os.path.join(REPO, "spec", "examples", "*.json")))


@pytest.mark.parametrize("path", EXAMPLES, ids=[os.path.basename(p) for p in EXAMPLES])
def test_example_config_runs(bundle, path):
    with open(path) as f:
        bundle.config = json.load(f)
    bundle.config["process"]["env"].append(bundle.mark)
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout
    assert_nothing_left(bundle)


def test_limited_example_is_limited(bundle):
    with open(os.path.join(REPO, "spec", "examples", "limited.json")) as f:
        bundle.config = json.load(f)
    bundle.sh("cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max")
    bundle.config["linux"]["namespaces"].append({"type": "cgroup"})
    r = bundle.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "64"
    assert_nothing_left(bundle)


def test_job_example_offsets_boottime(bundle):
    with open(os.path.join(REPO, "spec", "examples", "job.json")) as f:
        bundle.config = json.load(f)
    before = _uptime()
    r = bundle.run()
    after = _uptime()
    assert r.returncode == 0, r.stderr
    uid, uptime = r.stdout.split()
    # the container read its uptime between the two host readings, one day ahead
    assert uid == "1000" and int(before) + 86400 <= int(uptime) <= after + 86400


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])
