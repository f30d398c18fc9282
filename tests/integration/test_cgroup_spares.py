"""Cgroup directories made ahead (cgroups/spares.py): from a process's second container on,
its v1 directories are spares a worker thread made, renamed in. Seen from outside: the
container's directory is the spare itself (the same inode), which held nothing (counters
at zero) when it was taken; the limits of the config are in it; spares go when idle, at
exit, after a fork only from the parent, and a dead owner's are removed by the next pool
while a live one's stay; a config the kernel refuses after the rename leaves nothing."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO, leftovers, new_id

from libcontainer.cgroups import detect
from libcontainer.cgroups.spares import PREFIX
from libcontainer.state import proc_stat

LIMIT = 64 << 20


def _parents() -> list:
    """Where this process's (and so its children's) containers get their v1 directories."""
    h = detect()
    return sorted({os.path.normpath(m + h.own.get(c, "/")) for c, m in h.v1.items()})


def _spares(pid=None) -> list:
    out = []
    for p in _parents():
        out += [f"{p}/{n}" for n in os.listdir(p)
                if n.startswith(PREFIX) and (pid is None or n.startswith(f"{PREFIX}{pid}-"))]
    return out


@pytest.fixture(autouse=True)
def _v1_root():
    if os.geteuid() != 0 or not detect().v1:
        pytest.skip("spares are for root on a host with v1 hierarchies (v2 refuses rename)")


def _script(code: str, bundle) -> str:
    return textwrap.dedent(f"""
        import json, os, sys, time, libcontainer
        from libcontainer.cgroups.host import detect
        B, ROOT = {bundle.path!r}, {bundle.root!r}
        PARENTS = {_parents()!r}
        def mine():
            pre = "{PREFIX}%d-" % os.getpid()
            return [n for p in PARENTS for n in os.listdir(p) if n.startswith(pre)]
        """) + textwrap.dedent(code)


def _run(code: str, bundle) -> dict:
    r = subprocess.run([sys.executable, "-c", _script(code, bundle)], capture_output=True,
                       text=True, cwd=REPO, timeout=120, env={**os.environ, "PYTHONPATH": REPO})
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_a_loops_containers_get_spares_renamed_in_with_their_limits(bundle):
    bundle.set_args("sleep", "30")
    bundle.linux["resources"] = {"memory": {"limit": LIMIT}, "pids": {"limit": 50}}
    bundle.write()
    ids = [new_id() for _ in range(5)]
    out = _run(f"""
        import libcontainer.cgroups.manager  # (spares.py loads with the second make)
        taken, seen = [], []
        loaded_first = None
        def counters(d):
            out = {{}}
            for f in ("memory.usage_in_bytes", "memory.max_usage_in_bytes", "cpuacct.usage",
                      "pids.current", "tasks"):
                if os.path.exists(f"{{d}}/{{f}}"):
                    with open(f"{{d}}/{{f}}") as fh:
                        out[f] = fh.read().strip()
            return out
        for i, cid in enumerate({ids!r}):
            if i == 2:
                loaded_first = "libcontainer.cgroups.spares" in sys.modules
                from libcontainer.cgroups import spares
                real = spares.take
                def take(shape):
                    name = real(shape)
                    if name:
                        taken.append({{p: [os.stat(f"{{p}}/{{name}}").st_ino,
                                          counters(f"{{p}}/{{name}}")] for p in shape}})
                    else:
                        taken.append(None)
                    return name
                spares.take = take
                time.sleep(0.2)  # the worker, started by the second make, makes some
            before = len(taken)
            c = libcontainer.run(B, cid, root=ROOT, detach=True)
            cg = c._state["cgroups"]
            dirs = sorted(set(cg["paths"].values()))
            got = taken[-1] if len(taken) > before else None
            row = {{"taken": got is not None, "same": [], "limits": {{}}}}
            for d in dirs:
                if got and os.path.dirname(d) in got:
                    row["same"].append(os.stat(d).st_ino == got[os.path.dirname(d)][0])
            mem, pids = cg["paths"]["memory"], cg["paths"]["pids"]
            with open(mem + "/memory.limit_in_bytes") as f:
                row["limits"]["memory"] = int(f.read())
            with open(pids + "/pids.max") as f:
                row["limits"]["pids"] = f.read().strip()
            with open(pids + "/pids.current") as f:
                row["limits"]["pids_now"] = int(f.read())
            with open(f"/proc/{{c.pid}}/cgroup") as f:
                row["in"] = sorted(l.split(":", 2)[2].strip() for l in f if "memory" in l)
            row["dir"] = mem
            seen.append(row)
            c.delete(force=True)
        held = len(mine())
        time.sleep(spares.IDLE + 0.6)
        print(json.dumps({{"seen": seen, "taken": [t for t in taken if t], "held": held,
                          "after_idle": mine(), "loaded_first": loaded_first}}))
        """, bundle)
    seen = out["seen"]
    assert out["loaded_first"] is True  # loaded by the second make: the worker runs
    assert sum(r["taken"] for r in seen) >= 2, seen
    for row in seen:
        assert row["limits"] == {"memory": LIMIT, "pids": "50", "pids_now": 1}, row
        if row["taken"]:
            # the container's directory in every v1 hierarchy is the spare itself
            assert row["same"] and all(row["same"]), row
    for t in out["taken"]:
        for parent, (_, c) in t.items():
            # nothing had ever run in it
            assert c.get("tasks", "") == "" and c.get("pids.current", "0") == "0", (parent, c)
            assert c.get("memory.max_usage_in_bytes", "0") == "0", (parent, c)
            assert c.get("cpuacct.usage", "0") == "0", (parent, c)
    assert out["held"] >= 1 and out["after_idle"] == [], out
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path)


def test_spares_are_removed_at_exit_and_a_fork_leaves_the_parents_alone(bundle):
    bundle.write()
    ids = [new_id() for _ in range(6)]
    out = _run(f"""
        from libcontainer.cgroups import spares
        for cid in {ids[:3]!r}:
            assert libcontainer.run(B, cid, root=ROOT) == 0
        time.sleep(0.2)
        held = mine()
        pid = os.fork()
        if pid == 0:
            ok = spares._pool == [] and spares._state["thread"] is None
            for cid in {ids[3:]!r}:
                ok = ok and libcontainer.run(B, cid, root=ROOT) == 0
            sys.exit(0 if ok else 1)  # atexit handlers run: the parent's spares stay
        _, status = os.waitpid(pid, 0)
        child = "{PREFIX}%d-" % pid
        print(json.dumps({{"held": held, "after_child": [n for n in mine() if n in held],
                          "child": os.waitstatus_to_exitcode(status),
                          "childs_left": [n for p in PARENTS for n in os.listdir(p)
                                          if n.startswith(child)]}}))
        """, bundle)
    assert out["child"] == 0 and out["childs_left"] == [], out
    assert out["held"] and sorted(out["after_child"]) == sorted(out["held"]), out
    assert not _spares(), "spares left after the process exited"
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path)


def test_a_dead_owners_spares_are_swept_a_live_ones_stay(bundle):
    bundle.write()
    ids = [new_id() for _ in range(6)]
    holder = subprocess.Popen(
        [sys.executable, "-c", _script(f"""
            for cid in {ids[:3]!r}:
                assert libcontainer.run(B, cid, root=ROOT) == 0
            time.sleep(0.2)
            print(json.dumps(mine()), flush=True)
            time.sleep(60)
            """, bundle)], stdout=subprocess.PIPE, text=True, cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO})
    me, start = os.getpid(), proc_stat(os.getpid())[1]
    live = [f"{p}/{PREFIX}{me}-{start}-1" for p in _parents()]
    reused = [f"{p}/{PREFIX}{me}-{start + 1}-2" for p in _parents()]  # pid now someone else's
    try:
        held = json.loads(holder.stdout.readline())
        assert held, "the holder kept no spares"
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        for d in live + reused:
            os.mkdir(d)
        dead = _spares(holder.pid)
        assert len(dead) == len(held), (dead, held)  # SIGKILLed: nothing removed them
        _run(f"""
            for cid in {ids[3:]!r}:
                assert libcontainer.run(B, cid, root=ROOT) == 0
            time.sleep(0.2)
            print("{{}}")
            """, bundle)
        assert _spares(holder.pid) == []
        assert all(not os.path.exists(d) for d in reused)
        assert all(os.path.isdir(d) for d in live)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        for d in live + reused:
            try:
                os.rmdir(d)
            except FileNotFoundError:
                pass
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path)


def test_a_config_refused_after_the_rename_leaves_nothing(bundle):
    """cpuset.cpus naming a CPU this host lacks passes validation and is refused by the
    kernel once the spare is the container's: the error names the field, and the
    container's directories go like made ones."""
    bundle.write()
    ids = [new_id() for _ in range(5)]
    out = _run(f"""
        from libcontainer.errors import ConfigError
        with open(B + "/config.json") as f:
            good = f.read()
        bad = json.loads(good)
        bad["linux"]["resources"] = {{"cpu": {{"cpus": "{os.cpu_count() + 5}"}}}}
        errors, took = [], []
        for i, cid in enumerate({ids!r}):
            if i == 3:
                with open(B + "/config.json", "w") as f:
                    json.dump(bad, f)
                time.sleep(0.2)  # spares made: the bad one takes one
                from libcontainer.cgroups import spares
                real = spares.take
                spares.take = lambda shape: took.append(real(shape)) or took[-1]
                try:
                    libcontainer.run(B, cid, root=ROOT)
                except ConfigError as e:
                    errors.append(str(e))
                spares.take = real
                with open(B + "/config.json", "w") as f:
                    f.write(good)
                continue
            assert libcontainer.run(B, cid, root=ROOT) == 0
        from libcontainer.cgroups import spares
        time.sleep(spares.IDLE + 0.6)
        print(json.dumps({{"errors": errors, "left": mine(), "took": took}}))
        """, bundle)
    assert len(out["took"]) == 1 and out["took"][0], out
    assert len(out["errors"]) == 1 and "linux.resources.cpu.cpus" in out["errors"][0], out
    assert out["left"] == [], out
    for cid in ids:
        assert not leftovers(bundle.root, cid, bundle.path)
