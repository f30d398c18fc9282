"""Network namespaces made ahead (netpool.py): from a process's second container on, the
child enters a namespace a worker thread made, instead of CLONE_NEWNET. Seen from inside:
each container has a fresh network namespace, not the host's, with only a loopback device,
up, at its default MTU although the container before changed it in its own (namespace inode
numbers are reused once a namespace is freed, so they cannot tell); from outside: the pool
was used, the one-shot first start did not load it, and its namespaces are given back when
idle."""
import os
import subprocess
import sys
import textwrap

from conftest import REPO, leftovers, make_reachable, new_id

PROBE = ("echo ns=$(readlink /proc/self/ns/net) mtu=$(cat /sys/class/net/lo/mtu) "
         "flags=$(cat /sys/class/net/lo/flags) "
         "devs=$(ls /sys/class/net | tr '\\n' ,); ip link set lo mtu 1234 && echo set=yes")


def _run(code: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    assert r.returncode == 0, r.stderr
    return r


def _containers(bundle, ids, user_ns=False):
    bundle.sh(PROBE)
    for kind in ("bounding", "effective", "permitted"):  # to change lo's MTU
        bundle.process["capabilities"][kind].append("CAP_NET_ADMIN")
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


def _probes(r) -> list:
    """Each container's `key=value` words (PROBE's), in order."""
    out = []
    for line in r.stdout.splitlines():
        if line.startswith("OUT"):
            words = eval(line.split(None, 1)[1])
            out.append(dict(w.split("=", 1) for w in words if "=" in w))
    return out


def test_each_container_gets_a_fresh_network_namespace_made_ahead(bundle):
    ids = [new_id() for _ in range(5)]
    r = _containers(bundle, ids)
    seen = _probes(r)
    host = os.readlink("/proc/self/ns/net")
    assert len(seen) == 5 and all(p["ns"] != host for p in seen), seen
    assert all(p["devs"] == "lo," and p["mtu"] == "65536" and p["set"] == "yes"
               for p in seen), seen
    # lo up (IFF_UP) in each, the first made by the clone as in the ones made ahead
    assert all(int(p["flags"], 16) & 1 for p in seen), seen
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
    seen = _probes(r)
    assert len(seen) == 3 and all(p["devs"] == "lo," and p["mtu"] == "65536" for p in seen), seen
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path)


def test_a_forked_child_starts_without_the_parents_pool(bundle):
    """After fork the worker thread is the parent's alone: the child gives its copies of
    the namespaces' fds back and starts its own worker when it runs containers."""
    bundle.set_args("true")
    bundle.write()
    ids = [new_id() for _ in range(6)]
    r = _run(f"""
        import os, libcontainer
        from libcontainer import netpool
        for cid in {ids[:3]!r}:
            assert libcontainer.run({bundle.path!r}, cid, root={bundle.root!r}) == 0
        held = len(netpool._pool)
        pid = os.fork()
        if pid == 0:
            ok = netpool._pool == [] and netpool._state["thread"] is None
            nets = 0
            for n in os.listdir("/proc/self/fd"):
                try:
                    nets += os.readlink(f"/proc/self/fd/{{n}}").startswith("net:")
                except OSError:
                    pass  # listdir's own
            for cid in {ids[3:]!r}:
                ok = ok and libcontainer.run({bundle.path!r}, cid, root={bundle.root!r}) == 0
            os._exit(0 if ok and nets == 0 else 1)
        _, status = os.waitpid(pid, 0)
        print("HELD", held, "CHILD", os.waitstatus_to_exitcode(status))
        """)
    assert "CHILD 0" in r.stdout, r.stdout + r.stderr
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path)
