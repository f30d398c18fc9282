"""Network namespaces made ahead (netpool.py): from a process's second container on, the
child enters a namespace a worker thread made, instead of CLONE_NEWNET. Seen from inside:
each container still has a network namespace of its own, not the host's, not another
container's, with only a loopback device; from outside: the pool was used, the one-shot
first start did not load it, and its namespaces are given back when idle."""
import os
import subprocess
import sys
import textwrap

from conftest import REPO, leftovers, make_reachable, new_id

PROBE = "readlink /proc/self/ns/net; cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"


def _run(code: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    assert r.returncode == 0, r.stderr
    return r


def _containers(bundle, ids, user_ns=False):
    bundle.sh(PROBE)
    if user_ns:
        make_reachable(bundle.path)
        bundle.linux["namespaces"].append({"type": "user"})
        bundle.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
        bundle.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    bundle.write()
    return _run(f"""
        import os, sys, libcontainer
        taken = []
        loaded_first = None
        for i, cid in enumerate({ids!r}):
            if i == 1:
                loaded_first = "libcontainer.netpool" in sys.modules
                from libcontainer import netpool
                real = netpool.take
                def take():
                    fd = real(); taken.append(fd >= 0); return fd
                netpool.take = take
            r, w = os.pipe()
            code = libcontainer.run({bundle.path!r}, cid, root={bundle.root!r},
                                    stdio=(None, w, w))
            os.close(w)
            out = b""
            while chunk := os.read(r, 65536):
                out += chunk
            os.close(r)
            assert code == 0, out
            print("OUT", out.decode().split())
        print("TAKEN", sum(taken), "LOADED_FIRST", loaded_first)
        def fds():
            out = []
            for n in os.listdir("/proc/self/fd"):
                try:
                    out.append(os.readlink(f"/proc/self/fd/{{n}}"))
                except OSError:
                    pass  # listdir's own
            return out
        import time
        from libcontainer import netpool
        held = [f for f in fds() if f.startswith("net:")]
        time.sleep(netpool.IDLE + 0.5)
        print("HELD", len(held), "AFTER_IDLE", len([f for f in fds() if f.startswith("net:")]))
        """)


def test_each_container_gets_a_fresh_network_namespace_made_ahead(bundle):
    ids = [new_id() for _ in range(5)]
    r = _containers(bundle, ids)
    outs = [line.split(None, 1)[1] for line in r.stdout.splitlines() if line.startswith("OUT")]
    namespaces = [eval(o)[0] for o in outs]
    devices = [eval(o)[1:] for o in outs]
    host = os.readlink("/proc/self/ns/net")
    assert len(set(namespaces)) == 5 and host not in namespaces, namespaces
    assert all(d == ["lo"] for d in devices), devices
    stats = r.stdout.split("TAKEN", 1)[1].split()
    # the first start only counts (a `runner run` never loads the pool); from the third
    # on the worker has had the previous container's lifetime to make one
    assert stats[2] == "False", r.stdout
    assert int(stats[0]) >= 2, r.stdout
    # kept while starts come, given back once idle
    assert int(r.stdout.split("HELD")[1].split()[0]) >= 1, r.stdout
    assert r.stdout.split("AFTER_IDLE")[1].split()[0] == "0", r.stdout
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path)


def test_not_with_a_user_namespace(bundle):
    """The network namespace must belong to the container's user namespace, which does not
    exist before the clone: such a config never takes one."""
    ids = [new_id() for _ in range(3)]
    r = _containers(bundle, ids, user_ns=True)
    assert "TAKEN 0" in r.stdout, r.stdout
    outs = [line for line in r.stdout.splitlines() if line.startswith("OUT")]
    assert len(outs) == 3 and all("'lo']" in o for o in outs), r.stdout
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path)
