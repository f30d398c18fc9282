"""config.md: `process` is REQUIRED only when `start` is called. `create` of a config
without one sets the container up (namespaces, cgroups, mounts) with an init that holds it;
`start` is then an error naming the field, and the container is stopped; `run` needs a
process at once."""
from __future__ import annotations

import json
import os

from conftest import assert_nothing_left

from test_lifecycle import create


def test_create_without_process_then_start_fails_and_delete_cleans(bundle):
    del bundle.config["process"]
    cid = create(bundle)
    state = json.loads(bundle.runner("state", cid, check=True).stdout)
    assert state["status"] == "created" and state["pid"] > 0
    # the container exists: its own namespaces, held by the init
    assert os.readlink(f"/proc/{state['pid']}/ns/pid") != os.readlink("/proc/self/ns/pid")
    r = bundle.runner("start", cid)
    assert r.returncode == 1
    assert r.stderr.startswith("runner: process: is not set"), r.stderr
    state = json.loads(bundle.runner("state", cid, check=True).stdout)
    assert state["status"] == "stopped"
    bundle.runner("delete", cid, check=True)
    assert_nothing_left(bundle)


def test_run_without_process_is_an_error(bundle):
    del bundle.config["process"]
    r = bundle.run()
    assert r.returncode == 1 and r.stderr.startswith("runner: process: is required"), r.stderr
    assert_nothing_left(bundle)
