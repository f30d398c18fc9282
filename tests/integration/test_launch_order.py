"""The runner learns the pid of a process forked into a pid namespace before that process's
first message: an exec'd process (or a create's init) is always the one put in the cgroups."""
from __future__ import annotations

import tempfile

import libcontainer
from test_lifecycle import run_detached, state


def test_every_exec_lands_in_the_containers_cgroup(bundle):
    bundle.sh("sleep 60")
    cid = run_detached(bundle)
    try:
        init = state(bundle, cid)["pid"]
        with open(f"/proc/{init}/cgroup") as f:
            want = f.read()
        c = libcontainer.load(cid, bundle.root)
        for _ in range(20):  # the race this guards against lost about one time in four
            with tempfile.TemporaryFile("w+") as out:
                proc = libcontainer.Process(args=["cat", "/proc/self/cgroup"], cwd="/")
                assert c.exec(proc, stdio=(None, out, None)) == 0
                out.seek(0)
                assert out.read() == want
    finally:
        bundle.runner("delete", "--force", cid)
